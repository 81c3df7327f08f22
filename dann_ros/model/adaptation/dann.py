"""DANN: a discriminator behind a gradient reversal layer (Ganin et al., JMLR 2016).

Minimising this loss trains the discriminator to tell source (label 1) from
target (label 0), while the reversed gradient trains the feature extractor to
make them indistinguishable: the total objective is L_task - lambda L_domain
for the extractor. Works on pooled features (N, F) with ``DomainDiscriminator``
and on feature maps with ``PixelDomainDiscriminator`` (one decision per location).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dann_ros.model.grl import GradientReverseLayer


class DomainAdversarialLoss(nn.Module):
    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.grl = GradientReverseLayer(0.0)
        self.discriminator = discriminator
        self.last_accuracy = torch.tensor(float("nan"))

    @property
    def domain_accuracy(self) -> float:
        """Discriminator accuracy on the last batch (source and target weighted equally)."""
        return float(self.last_accuracy)

    @property
    def coeff(self) -> float:
        return self.grl.coeff

    @coeff.setter
    def coeff(self, value: float) -> None:
        self.grl.coeff = value

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s=None, logits_t=None,
                targets=None) -> torch.Tensor:
        """``logits_*``: the task outputs (a detector's are dicts), ``targets`` the source's task targets,
        unused by DANN: one signature for all adversarial losses (CDAN conditions on the logits, the
        instance-level loss reads object centres from the targets)."""
        d = self.discriminator(self.grl(torch.cat([f_s, f_t], dim=0))).float()
        return self._bce(d, f_s.shape[0])

    def _bce(self, d: torch.Tensor, n_source: int, weight: torch.Tensor | None = None) -> torch.Tensor:
        """0.5 (BCE(source, 1) + BCE(target, 0)); ``weight`` per sample (CDAN+E), mean 1 per domain."""
        d_s, d_t = d[:n_source], d[n_source:]
        w_s = w_t = None
        if weight is not None:
            w_s, w_t = weight[:n_source].view(-1, *[1] * (d.dim() - 1)), weight[n_source:].view(-1, *[1] * (d.dim() - 1))
        loss_s = F.binary_cross_entropy_with_logits(d_s, torch.ones_like(d_s), weight=w_s)
        loss_t = F.binary_cross_entropy_with_logits(d_t, torch.zeros_like(d_t), weight=w_t)
        with torch.no_grad():  # a tensor: reading it on every step would stall a GPU
            self.last_accuracy = ((d_s > 0).float().mean() + (d_t <= 0).float().mean()) / 2.0
        return 0.5 * (loss_s + loss_t)

    @torch.no_grad()
    def source_probability(self, features: torch.Tensor) -> torch.Tensor:
        """P(source | feature): 1 looks like the training renders, 0 like the real camera."""
        logits = self.discriminator(features).float()
        if logits.dim() > 1:
            logits = logits.mean(dim=1)
        return torch.sigmoid(logits.squeeze(-1) if logits.dim() > 1 else logits)
