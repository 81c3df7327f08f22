"""One training step's losses, as a module so DistributedDataParallel synchronises all of it."""

from __future__ import annotations

import torch
from torch import nn

from dann_ros.model.adaptation.dann import DomainAdversarialLoss


def _split(outputs, n: int):
    """(first n rows, the rest) of the task outputs: a classifier's logits or a detector's dict of maps."""
    if isinstance(outputs, dict):
        return {k: v[:n] for k, v in outputs.items()}, {k: v[n:] for k, v in outputs.items()}
    return outputs[:n], outputs[n:]


class StepModule(nn.Module):
    """Task model + adaptation losses as one module, so DistributedDataParallel syncs all of them.

    Source and target go through the model in one pass (shared BatchNorm statistics, as in
    tllib). Returns the unweighted losses by name: ``task`` on the source half, ``domain``
    from the adversarial loss (features of both halves, and the task outputs, which CDAN
    conditions on), and one entry per target regulariser (entropy, mcc, pseudo_label) on the
    target outputs (and the target images, which the pseudo-labelling teacher reads).
    ``targets`` are whatever the model's ``task_loss`` takes (class ids, or a detector's encoded maps).
    """

    def __init__(self, model: nn.Module, adversarial: DomainAdversarialLoss | None = None,
                 target_losses: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.model = model
        self.adversarial = adversarial
        self.target_losses = nn.ModuleDict(target_losses or {})

    @property
    def needs_target(self) -> bool:
        return self.adversarial is not None or len(self.target_losses) > 0

    def forward(self, x_s: torch.Tensor, targets, x_t: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if x_t is None or not self.needs_target:
            _, outputs = self.model.forward_train(x_s)
            return {"task": self.model.task_loss(outputs, targets)}
        n = x_s.shape[0]
        features, outputs = self.model.forward_train(torch.cat([x_s, x_t]))
        out_s, out_t = _split(outputs, n)
        losses = {"task": self.model.task_loss(out_s, targets)}
        if self.adversarial is not None:
            domain = self.adversarial(features[:n], features[n:], out_s, out_t, targets=targets)
            losses.update(domain if isinstance(domain, dict) else {"domain": domain})  # instance: its parts
        for name, loss in self.target_losses.items():
            losses[name] = loss(out_t, x_t)
        return losses
