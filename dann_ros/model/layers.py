"""Small layers shared by the task models."""

from __future__ import annotations

import torch
from torch import nn


class InputNormalize(nn.Module):
    """(x / 255 - mean) / std inside the network, so the exported graph takes raw 0..255 pixels
    and normalisation can never be configured differently at deployment."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("inv_std", 1.0 / std_t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std
