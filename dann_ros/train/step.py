"""One training step's losses, as a module so DistributedDataParallel synchronises all of it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dann_ros.model.adaptation.dann import DomainAdversarialLoss


class StepModule(nn.Module):
    """Task model + adversarial loss as one module, so DistributedDataParallel syncs both."""

    def __init__(self, model: nn.Module, adversarial: DomainAdversarialLoss | None) -> None:
        super().__init__()
        self.model = model
        self.adversarial = adversarial

    def forward(self, x_s: torch.Tensor, y_s: torch.Tensor, x_t: torch.Tensor | None):
        if self.adversarial is None or x_t is None:
            _, logits = self.model.forward_train(x_s)
            return F.cross_entropy(logits.float(), y_s), logits.new_zeros(())
        features, logits = self.model.forward_train(torch.cat([x_s, x_t]))
        n = x_s.shape[0]
        task = F.cross_entropy(logits[:n].float(), y_s)
        return task, self.adversarial(features[:n], features[n:])
