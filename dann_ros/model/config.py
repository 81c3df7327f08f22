"""Model configuration (the ``model:`` section of a training YAML)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


def check_strides(strides) -> None:
    """The feature pyramid's levels: powers of two >= 2, each twice the previous (e.g. 4, 8, 16)."""
    if not strides or any(s < 2 or s & (s - 1) for s in strides) or \
            any(b != 2 * a for a, b in zip(strides, strides[1:])):
        raise ValueError(f"model.fpn_strides: {list(strides)} must be powers of two >= 2, each twice the "
                         "previous (e.g. [4, 8, 16])")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "small_cnn"
    backbone_weights: Path | None = None  # a local state_dict file (torchvision's .pth); nothing is downloaded
    neck: Literal["conv", "fpn"] = "conv"  # detection: conv layers on the last map, or a feature pyramid
    fpn_strides: tuple[int, ...] = (4, 8, 16)  # neck fpn: levels fused; the heads read the finest
    pool: Literal["flatten", "avg", "auto"] = "auto"  # auto: flatten for small CNNs, avg otherwise
    bottleneck_dim: int = 256  # 0: the discriminator sees the backbone's pooled features directly
    head_hidden: tuple[int, ...] = ()  # hidden widths of the task head's MLP
    dropout: float = 0.5
    discriminator_hidden: int = 1024
    # detection's image-level discriminator: pixel (1x1 convs, one decision per location, DA-Faster) or
    # global (strided 3x3 convs + pooling, one decision per image, Strong-Weak DA; model/discriminator.py)
    detection_discriminator: Literal["pixel", "global"] = "pixel"
    discriminator_layers: int = 2
    discriminator_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.bottleneck_dim < 0 or self.discriminator_hidden < 1 or self.discriminator_layers < 0:
            raise ValueError("bottleneck_dim and discriminator_hidden must be positive")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.discriminator_dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.neck == "fpn":
            check_strides(self.fpn_strides)
