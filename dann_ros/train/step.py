"""One training step's losses, as a module so DistributedDataParallel synchronises all of it."""

from __future__ import annotations

import torch
from torch import nn

from dann_ros.model.adaptation.dann import DomainAdversarialLoss


def _source_half(outputs, n: int):
    """The first ``n`` rows of the task outputs: a classifier's logits or a detector's dict of maps."""
    if isinstance(outputs, dict):
        return {k: v[:n] for k, v in outputs.items()}
    return outputs[:n]


class StepModule(nn.Module):
    """Task model + adversarial loss as one module, so DistributedDataParallel syncs both.

    ``targets`` are whatever the model's ``task_loss`` takes (class ids, or a detector's encoded maps).
    """

    def __init__(self, model: nn.Module, adversarial: DomainAdversarialLoss | None) -> None:
        super().__init__()
        self.model = model
        self.adversarial = adversarial

    def forward(self, x_s: torch.Tensor, targets, x_t: torch.Tensor | None):
        if self.adversarial is None or x_t is None:
            features, outputs = self.model.forward_train(x_s)
            return self.model.task_loss(outputs, targets), features.new_zeros(())
        features, outputs = self.model.forward_train(torch.cat([x_s, x_t]))
        n = x_s.shape[0]
        task = self.model.task_loss(_source_half(outputs, n), targets)
        return task, self.adversarial(features[:n], features[n:])
