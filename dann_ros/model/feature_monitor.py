"""Post-hoc domain-shift monitor on frozen pooled features, fitted after training.

Why: the GRL discriminator is trained to be fooled. At equilibrium it outputs about 0.5 on
everything (the demo detector's: 0.5000 +- 0.0001 on its synthetic renders and on real video
alike), so it cannot tell the robot that its camera now sees something new. This monitor is
fitted once the features are frozen: a Gaussian model of the pooled features (the image-level
features the discriminator saw, averaged over locations) of the adaptation-target frames, with
a shrunk covariance. A frame's squared Mahalanobis distance d2 to it is compared with the d2
of held-out target frames: ``score = 1 - exp(-max(0, d2 / threshold - 1))``, where
``threshold`` is the ``quantile`` of the held-out frames' d2. So frames like the adaptation
target score 0 (all but 1 - quantile of them), frames beyond it rise towards 1: source
renders, another scene, blur, sensor noise, night-like exposure.

A source-vs-target classifier (logistic regression on the same features) was measured as
the alternative on the demo detector: it flags source renders (0.995) and another scene
(0.955) but not blur (0.038) or noise (0.004, like the target's 0.005), since those move
frames off the source-target axis. The source frames are used here to report how well the
fitted monitor separates them (``MonitorFit.report``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class MonitorFit:
    mean: np.ndarray  # (F,) mean pooled feature of the target frames it was fitted on
    whiten: np.ndarray  # (F, F): d2 = |(f - mean) @ whiten|^2
    threshold: float  # d2 at ``quantile`` of the held-out target frames
    quantile: float
    report: dict = field(default_factory=dict)  # frames used and mean scores, for the export log and metadata


def pool(features: np.ndarray) -> np.ndarray:
    """(N, C, H, W) feature maps -> (N, C) by averaging over locations; (N, F) unchanged."""
    features = np.asarray(features, np.float64)
    return features.mean((2, 3)) if features.ndim == 4 else features.reshape(len(features), -1)


def fit_monitor(target: np.ndarray, source: np.ndarray | None = None, quantile: float = 0.95,
                holdout: float = 0.3) -> MonitorFit:
    """Fit on pooled ``target`` features (time order kept: the last ``holdout`` share calibrates)."""
    target = pool(target)
    n, dim = target.shape
    n_cal = int(round(n * holdout))
    if n - n_cal < 8 or n_cal < 4:
        raise ValueError(f"too few target frames to fit the shift monitor: {n} (need >= 12)")
    if not 0.5 <= quantile < 1.0:
        raise ValueError(f"quantile must be within [0.5, 1), got {quantile}")
    fit_set, cal_set = target[:n - n_cal], target[n - n_cal:]
    mean = fit_set.mean(0)
    cov = np.cov(fit_set - mean, rowvar=False).reshape(dim, dim)
    shrink = dim / (dim + len(fit_set))  # more shrinkage when frames are few for the dimension
    cov = (1 - shrink) * cov + shrink * (np.trace(cov) / dim + 1e-8) * np.eye(dim)
    vals, vecs = np.linalg.eigh(cov)
    whiten = vecs / np.sqrt(np.maximum(vals, 1e-12 * vals.max()))
    d2_cal = _d2(cal_set, mean, whiten)
    threshold = float(np.quantile(d2_cal, quantile))
    fit = MonitorFit(mean, whiten, threshold, quantile)
    report = {"target_frames": n, "calibration_frames": n_cal, "dim": dim,
              "target_holdout_mean_score": float(shift_scores(fit, cal_set).mean())}
    if source is not None and len(source):
        report.update(source_frames=len(source), source_mean_score=float(shift_scores(fit, source).mean()))
    return MonitorFit(mean, whiten, threshold, quantile, report)


def _d2(features: np.ndarray, mean: np.ndarray, whiten: np.ndarray) -> np.ndarray:
    z = (pool(features) - mean) @ whiten
    return (z * z).sum(1)


def shift_scores(fit: MonitorFit, features: np.ndarray) -> np.ndarray:
    """Per-frame shift score in [0, 1) (numpy; the graph computes the same in :class:`FeatureMonitor`)."""
    ratio = _d2(features, fit.mean, fit.whiten) / fit.threshold
    return 1.0 - np.exp(-np.maximum(ratio - 1.0, 0.0))


class FeatureMonitor(nn.Module):
    """The fitted monitor as part of the deployed graph: feature map in, shift score per image out."""

    def __init__(self, fit: MonitorFit) -> None:
        super().__init__()
        # folding 1/threshold into the projection keeps the graph to a subtract, a matmul and a sum
        scale = 1.0 / np.sqrt(fit.threshold)
        self.register_buffer("mean", torch.as_tensor(fit.mean, dtype=torch.float32))
        self.register_buffer("proj", torch.as_tensor(fit.whiten * scale, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.float().mean((2, 3)) if features.dim() == 4 else features.float().flatten(1)
        z = (pooled - self.mean.float()) @ self.proj.float()  # float32 also inside an fp16 graph
        return 1.0 - torch.exp(-torch.relu((z * z).sum(1) - 1.0))
