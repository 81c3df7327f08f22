"""Training-progress schedules from Ganin et al. (JMLR 2016), as pure functions of progress p in [0, 1]."""

from __future__ import annotations

import math


def dann_lambda(progress: float, gamma: float = 10.0, max_value: float = 1.0) -> float:
    """lambda_p = max * (2 / (1 + exp(-gamma p)) - 1): 0 at the start, so early noisy
    discriminator gradients do not wreck the randomly initialised extractor."""
    p = min(max(progress, 0.0), 1.0)
    return max_value * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


def dann_lr_factor(progress: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """mu_p / mu_0 = 1 / (1 + alpha p)^beta."""
    p = min(max(progress, 0.0), 1.0)
    return 1.0 / (1.0 + alpha * p) ** beta
