"""Evaluation of models on labelled images and logged bags, and the reports."""
