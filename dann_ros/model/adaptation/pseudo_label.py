"""Pseudo-label self-training on target with a mean teacher (French et al., "Self-ensembling
for visual domain adaptation", ICLR 2018; thresholded as in FixMatch).

A teacher, the exponential moving average of the model's weights, labels each target
batch; the model is trained with cross-entropy on the labels the teacher is confident
about (max probability >= ``threshold``), the others are masked out. The average
over many steps is steadier than the model itself, so its confident labels are
mostly right where the model's own (entropy minimisation) would reinforce its
mistakes. Off until ``start_step`` (set by the trainer: self-training after
adaptation has aligned the domains); the teacher tracks the model from the first
step either way. Loss = sum over confident samples of CE / batch size (FixMatch's
normalisation: few confident samples give a small loss, not a noisy large one).

The teacher's weights are state (``state_dict``) so a resumed run continues exactly;
they take no gradient and are not in the optimizer.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class PseudoLabelLoss(nn.Module):
    def __init__(self, model: nn.Module, threshold: float = 0.95, ema_decay: float = 0.99) -> None:
        super().__init__()
        if not 0.0 < threshold <= 1.0 or not 0.0 <= ema_decay < 1.0:
            raise ValueError("pseudo-label threshold must be in (0, 1] and ema_decay in [0, 1)")
        self.threshold = threshold
        self.ema_decay = ema_decay
        self._student = [model]  # a list: not a submodule (its weights are the model's, saved there)
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)
        self.active = False
        self.last_mask_rate = torch.zeros(())  # share of the target batch above the threshold

    def train(self, mode: bool = True) -> "PseudoLabelLoss":
        super().train(mode)
        self.teacher.eval()  # no dropout in the labels
        return self

    @torch.no_grad()
    def update_teacher(self) -> None:
        student = self._student[0]
        for t, s in zip(self.teacher.parameters(), student.parameters()):
            t.lerp_(s.detach(), 1.0 - self.ema_decay)
        for t, s in zip(self.teacher.buffers(), student.buffers()):
            t.copy_(s)

    def forward(self, logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.update_teacher()
        if not self.active:
            return logits.sum() * 0.0
        with torch.no_grad():
            probs = F.softmax(self.teacher(images).float(), dim=1)
            confidence, labels = probs.max(1)
            mask = (confidence >= self.threshold).float()
        self.last_mask_rate = mask.mean()
        return (F.cross_entropy(logits.float(), labels, reduction="none") * mask).sum() / logits.shape[0]
