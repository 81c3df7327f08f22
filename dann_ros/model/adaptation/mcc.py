"""Minimum Class Confusion (Jin et al., ECCV 2020), as tllib's MinimumClassConfusionLoss.

On the target batch: softmax(logits / T), per-sample weights 1 + exp(-entropy)
(confident samples count more, normalised to mean 1), the class correlation
matrix C = Y^T diag(w) Y, each column divided by its sum; the loss is the
off-diagonal mass of C divided by the number of classes: how often two classes
are predicted together for the same sample. Unlike entropy minimisation it
penalises confusion between classes, not uncertainty as such, so it does not
collapse onto one class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MinimumClassConfusionLoss(nn.Module):
    def __init__(self, temperature: float = 2.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("MCC temperature must be positive")
        self.temperature = temperature

    def forward(self, logits: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        n, num_classes = logits.shape
        y = F.softmax(logits.float() / self.temperature, dim=1)
        h = -(y * y.clamp_min(1e-12).log()).sum(1).detach()
        w = 1.0 + torch.exp(-h)
        w = (n * w / w.sum()).unsqueeze(1)
        confusion = (y * w).t() @ y
        confusion = confusion / confusion.sum(dim=1)  # broadcasts over rows: column j / sum_j (C is symmetric)
        return (confusion.sum() - confusion.trace()) / num_classes
