"""CDAN: the discriminator judges features conditioned on the predictions (Long et al., NeurIPS 2018).

DANN aligns the marginal feature distributions, so a source "3" may be aligned with
a target "8". CDAN feeds the discriminator the multilinear map f (x) g (the outer
product of the features and the softmax predictions, flattened), so alignment happens
per predicted class. The predictions are detached (as in the paper and tllib): the
reversed gradient reaches the extractor through f only. ``entropy_conditioning``
(CDAN+E) weights each sample by 1 + exp(-H(g)), trusting confident predictions more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dann_ros.model.adaptation.dann import DomainAdversarialLoss


def multilinear_map(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(N, F) features, (N, C) probabilities -> (N, C * F), row i = vec(g_i f_i^T)."""
    return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(1)


class ConditionalDomainAdversarialLoss(DomainAdversarialLoss):
    """``discriminator`` takes ``num_classes * feature_dim`` inputs."""

    def __init__(self, discriminator: nn.Module, entropy_conditioning: bool = False) -> None:
        super().__init__(discriminator)
        self.entropy_conditioning = entropy_conditioning

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s=None, logits_t=None,
                targets=None) -> torch.Tensor:
        if logits_s is None or logits_t is None:
            raise ValueError("CDAN conditions on the task predictions: pass logits_s and logits_t")
        f = torch.cat([f_s, f_t], dim=0)
        logits = torch.cat([logits_s, logits_t], dim=0)
        g = F.softmax(logits.float(), dim=1).detach().to(f.dtype)
        d = self.discriminator(self.grl(multilinear_map(f, g))).float()
        weight = None
        if self.entropy_conditioning:
            with torch.no_grad():
                w = 1.0 + torch.exp(-entropy(F.softmax(logits.float(), dim=1)))
                n = f_s.shape[0]
                weight = torch.cat([w[:n] / w[:n].mean(), w[n:] / w[n:].mean()])
        return self._bce(d, f_s.shape[0], weight)
