"""Image classifier: backbone -> bottleneck features -> class logits.

The bottleneck output is the feature the domain discriminator sees (tllib's
layout), so adaptation shapes exactly the representation the head reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from dann_ros.model.backbones import SMALL_BACKBONES, Backbone, build_backbone
from dann_ros.model.layers import InputNormalize

if TYPE_CHECKING:
    from dann_ros.data.preprocess import Preprocess
    from dann_ros.model.config import ModelConfig


class ImageClassifier(nn.Module):
    task = "classification"

    def __init__(self, backbone: Backbone, num_classes: int, input_shape: tuple[int, int, int],
                 mean: tuple[float, ...], std: tuple[float, ...], bottleneck_dim: int = 256,
                 pool: Literal["flatten", "avg"] = "flatten", dropout: float = 0.5,
                 head_hidden: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.normalize = InputNormalize(mean, std)
        self.backbone = backbone
        self.pool = nn.Flatten() if pool == "flatten" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        with torch.no_grad():
            was_training = backbone.training
            backbone.eval()
            in_features = self.pool(backbone(torch.zeros(1, *input_shape))).shape[1]
            backbone.train(was_training)
        if bottleneck_dim:
            self.bottleneck: nn.Module = nn.Sequential(nn.Linear(in_features, bottleneck_dim),
                                                       nn.BatchNorm1d(bottleneck_dim), nn.ReLU(inplace=True))
        else:  # the discriminator sees the backbone's own features (Ganin et al.'s digit networks)
            self.bottleneck, bottleneck_dim = nn.Identity(), in_features
        # dropout only on the way to the head: the discriminator must see the features the
        # deployed model computes, or the extractor can "fool" it with dropout noise alone
        layers: list[nn.Module] = []
        width = bottleneck_dim
        for h in head_hidden:
            layers += [nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.head = nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(width, num_classes))
        self.feature_dim = bottleneck_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.pool(self.backbone(self.normalize(x))))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(domain features, task outputs) in one pass."""
        f = self.features(x)
        return f, self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def task_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The model owns its loss, so the trainer runs classifiers and detectors alike."""
        return F.cross_entropy(logits.float(), labels)


def build_classifier(cfg: ModelConfig, num_classes: int, preprocess: Preprocess) -> ImageClassifier:
    if cfg.neck != "conv":
        raise ValueError(f"model.neck {cfg.neck!r} is a detection neck; a classifier pools the backbone's last map")
    backbone = build_backbone(cfg.backbone, preprocess.num_channels, weights_path=cfg.backbone_weights)
    pool = cfg.pool if cfg.pool != "auto" else ("flatten" if cfg.backbone in SMALL_BACKBONES else "avg")
    return ImageClassifier(backbone, num_classes, preprocess.input_shape, preprocess.mean, preprocess.std,
                           bottleneck_dim=cfg.bottleneck_dim, pool=pool, dropout=cfg.dropout,
                           head_hidden=cfg.head_hidden)
