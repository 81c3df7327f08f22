"""Adaptation losses: adversarial ones own their gradient reversal layer and discriminator
(one file per method, as in tllib); target regularisers take the target logits (and images:
the pseudo-label teacher reads them)."""

from dann_ros.model.adaptation.cdan import ConditionalDomainAdversarialLoss
from dann_ros.model.adaptation.dann import DomainAdversarialLoss
from dann_ros.model.adaptation.entropy import EntropyLoss
from dann_ros.model.adaptation.instance import InstanceAdversarialLoss
from dann_ros.model.adaptation.mcc import MinimumClassConfusionLoss
from dann_ros.model.adaptation.pseudo_label import DetectionPseudoLabelLoss, PseudoLabelLoss

__all__ = ["ConditionalDomainAdversarialLoss", "DetectionPseudoLabelLoss", "DomainAdversarialLoss", "EntropyLoss",
           "InstanceAdversarialLoss", "MinimumClassConfusionLoss", "PseudoLabelLoss"]
