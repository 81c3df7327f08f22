"""Build the task model and its adversarial loss from configuration (torchvision-style builders)."""

from __future__ import annotations

from torch import nn

from dann_ros.data.preprocess import Preprocess
from dann_ros.model.adaptation.cdan import ConditionalDomainAdversarialLoss
from dann_ros.model.adaptation.dann import DomainAdversarialLoss
from dann_ros.model.adaptation.instance import InstanceAdversarialLoss
from dann_ros.model.classifier import build_classifier  # noqa: F401  (builders: the public entry point)
from dann_ros.model.config import ModelConfig
from dann_ros.model.discriminator import DomainDiscriminator, GlobalDomainDiscriminator, PixelDomainDiscriminator
from dann_ros.model.tasks import TASKS, has_class_scores_per_image, has_feature_map


def build_model(cfg: ModelConfig, task: str, num_classes: int, preprocess: Preprocess) -> nn.Module:
    """The task model (its entry in model/tasks.py builds it); every kind offers forward_train, task_loss
    and encode_targets to the one trainer."""
    return TASKS[task].build(cfg, num_classes, preprocess)


def build_discriminator(cfg: ModelConfig, features: int | nn.Module) -> nn.Module:
    """``features``: a classifier's feature width, or the task model itself. A detector's feature map
    gets one decision per location (image-level alignment, as in DA-Faster R-CNN)."""
    if isinstance(features, nn.Module):
        if has_feature_map(features):
            if cfg.detection_discriminator == "global":
                return GlobalDomainDiscriminator(features.feature_channels, cfg.discriminator_hidden,
                                                 max(cfg.discriminator_layers, 1))
            return PixelDomainDiscriminator(features.feature_channels, cfg.discriminator_hidden)
        features = features.feature_dim
    return DomainDiscriminator(features, cfg.discriminator_hidden, cfg.discriminator_layers,
                               cfg.discriminator_dropout)


def build_domain_loss(cfg: ModelConfig, features: int | nn.Module, method: str = "dann",
                      num_classes: int | None = None, entropy_conditioning: bool = False,
                      instance: bool = False, consistency: bool = False, top_k: int = 8,
                      center_aware: bool = False, adversary: str = "reversal") -> DomainAdversarialLoss:
    """``method`` dann, or cdan (the discriminator sees features x predictions: ``num_classes`` times wider).
    ``instance`` (a detector, dann): DA-Faster's instance-level discriminator on the features at object
    centres (the ``top_k`` predicted peaks per image, both domains), and with ``consistency`` its consistency
    term. ``center_aware``: a detector's per-location decisions weighted by its heatmap (EPM). ``adversary``:
    reversal (GRL) or confusion (model/adaptation/dann.py), dann only."""
    if adversary != "reversal" and (method != "dann" or instance):
        raise ValueError(f"adaptation.adversary.objective {adversary} is implemented for method dann without "
                         "instance alignment")
    if method == "dann" and instance:
        if not has_feature_map(features):
            raise ValueError("instance-level alignment reads object centres: detection only")
        inst = DomainDiscriminator(features.feature_channels, cfg.discriminator_hidden, cfg.discriminator_layers,
                                   cfg.discriminator_dropout)
        return InstanceAdversarialLoss(build_discriminator(cfg, features), inst, top_k, consistency)
    if consistency:
        raise ValueError("the consistency term pairs image- and instance-level discriminators: set instance")
    if center_aware and (method != "dann" or not has_feature_map(features)
                         or cfg.detection_discriminator != "pixel"):
        raise ValueError("adaptation.adversary.center_aware weights a detector's per-location decisions: method dann, "
                         "model.detection_discriminator pixel")
    if method == "dann":
        return DomainAdversarialLoss(build_discriminator(cfg, features), center_aware, adversary)
    if method == "cdan":
        if isinstance(features, nn.Module):
            if not has_class_scores_per_image(features):
                raise ValueError("adaptation.method cdan conditions on class predictions: classification only")
            features = features.feature_dim
        if not num_classes:
            raise ValueError("cdan needs num_classes")
        return ConditionalDomainAdversarialLoss(build_discriminator(cfg, features * num_classes),
                                                entropy_conditioning)
    raise ValueError(f"adaptation.method {method!r} is not one of dann, cdan")
