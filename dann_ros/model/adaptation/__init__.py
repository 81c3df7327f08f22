"""Adversarial alignment losses; each owns its gradient reversal layer and discriminator."""

from dann_ros.model.adaptation.dann import DomainAdversarialLoss

__all__ = ["DomainAdversarialLoss"]
