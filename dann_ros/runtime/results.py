"""Typed inference results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Classification:
    class_id: int
    class_name: str
    score: float
    scores: np.ndarray  # (K,) probabilities
    domain_score: float | None = None  # P(frame looks like the synthetic source); None without a monitor
