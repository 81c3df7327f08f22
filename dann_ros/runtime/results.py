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
    shift_score: float | None = None  # post-hoc monitor: 0 like the adaptation target, -> 1 beyond; None without


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in input-image pixels, clipped to the image
    class_id: int
    class_name: str
    score: float


@dataclass(frozen=True)
class Detections:
    """One frame's detections above the threshold, best first."""

    items: tuple[Detection, ...]
    domain_score: float | None = None  # P(frame looks like the synthetic source); None without a monitor
    shift_score: float | None = None  # post-hoc monitor: 0 like the adaptation target, -> 1 beyond; None without

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)
