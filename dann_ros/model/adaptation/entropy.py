"""Entropy minimisation on target predictions (Grandvalet & Bengio 2004; DANN+E, as in Long et al.).

Pushes target samples away from the decision boundaries, where an aligned but
ambiguous feature would otherwise sit. Alone it can collapse onto few classes;
next to the adversarial loss (which keeps the domains aligned) it sharpens the
target clusters. Loss = mean over the target batch of H(softmax(logits)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EntropyLoss(nn.Module):
    def forward(self, logits: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        return -(logp.exp() * logp).sum(1).mean()
