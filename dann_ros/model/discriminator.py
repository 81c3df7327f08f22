"""Domain discriminators: which domain (source = 1, target = 0) a feature came from."""

from __future__ import annotations

import torch
from torch import nn


class DomainDiscriminator(nn.Sequential):
    """Linear-BN-ReLU blocks then one logit (tllib / Ganin et al. layout)."""

    def __init__(self, in_features: int, hidden: int = 1024, layers: int = 2, dropout: float = 0.0) -> None:
        blocks: list[nn.Module] = []
        width = in_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            if dropout:
                blocks.append(nn.Dropout(dropout))
            width = hidden
        blocks.append(nn.Linear(width, 1))
        super().__init__(*blocks)


class PixelDomainDiscriminator(nn.Sequential):
    """1x1 convolutions scoring every feature-map location: image-level alignment (DA-Faster R-CNN)."""

    def __init__(self, in_channels: int, hidden: int = 256) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden // 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden // 2, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten(1)  # (N, H*W) logits
