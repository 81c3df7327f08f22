"""Offline training: typed config, data loading, the one training loop, checkpoints, selection."""
