"""Build the task model and its adversarial loss from configuration (torchvision-style builders)."""

from __future__ import annotations

from torch import nn

from dann_ros.data.preprocess import Preprocess
from dann_ros.model.adaptation.dann import DomainAdversarialLoss
from dann_ros.model.backbones import SMALL_BACKBONES, build_backbone
from dann_ros.model.classifier import ImageClassifier
from dann_ros.model.config import ModelConfig
from dann_ros.model.discriminator import DomainDiscriminator


def build_classifier(cfg: ModelConfig, num_classes: int, preprocess: Preprocess) -> ImageClassifier:
    backbone = build_backbone(cfg.backbone, preprocess.num_channels, weights_path=cfg.backbone_weights)
    pool = cfg.pool if cfg.pool != "auto" else ("flatten" if cfg.backbone in SMALL_BACKBONES else "avg")
    return ImageClassifier(backbone, num_classes, preprocess.input_shape, preprocess.mean, preprocess.std,
                           bottleneck_dim=cfg.bottleneck_dim, pool=pool, dropout=cfg.dropout,
                           head_hidden=cfg.head_hidden)


def build_domain_loss(cfg: ModelConfig, feature_dim: int) -> DomainAdversarialLoss:
    disc: nn.Module = DomainDiscriminator(feature_dim, cfg.discriminator_hidden, cfg.discriminator_layers,
                                          cfg.discriminator_dropout)
    return DomainAdversarialLoss(disc)
