"""Training schedules from Ganin et al. (JMLR 2016), as pure functions of progress p = step / horizon.

The horizon is the run's length by default (the paper's p in [0, 1]); tllib's digits recipe
counts in iterations instead (lambda: gamma 1 over 1,000 steps; lr: 1 + 0.001 i), which is the
same formula with another horizon and p allowed past 1.
"""

from __future__ import annotations

import math


def dann_lambda(progress: float, gamma: float = 10.0, max_value: float = 1.0) -> float:
    """lambda_p = max * (2 / (1 + exp(-gamma p)) - 1): 0 at the start, so early noisy
    discriminator gradients do not wreck the randomly initialised extractor; tends to max."""
    p = max(progress, 0.0)
    return max_value * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


def dann_lr_factor(progress: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """mu_p / mu_0 = 1 / (1 + alpha p)^beta."""
    p = max(progress, 0.0)
    return 1.0 / (1.0 + alpha * p) ** beta
