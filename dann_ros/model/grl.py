"""Gradient reversal: identity forward, -lambda * gradient backward (Ganin & Lempitsky, 2015)."""

from __future__ import annotations

import torch
from torch import nn


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    return _ReverseGrad.apply(x, coeff)


class GradientReverseLayer(nn.Module):
    """The trainer sets ``coeff`` from the lambda schedule each step.

    The coefficient is plain state set from training progress (not a step
    counter inside the layer), so a resumed run computes the same lambda.
    """

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.coeff = coeff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.coeff)

    def extra_repr(self) -> str:
        return f"coeff={self.coeff}"
