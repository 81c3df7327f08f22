"""Post-hoc domain-shift monitor on frozen pooled features, fitted after training (at export).

Why: the GRL discriminator is trained to be fooled. At equilibrium it outputs about 0.5 on
everything (the demo detector's: 0.4949-0.4988 on its real test bag, on blurred, noisy and
night-like copies of it, on another scene and on its synthetic renders), so it cannot tell the
robot that its camera now sees something new. This monitor is fitted once the features are
frozen, on the pooled features (the image-level features the discriminator saw, averaged over
locations) of the adaptation-target frames, with two terms:

- density: a Gaussian model (shrunk covariance) of the target features; a frame's squared
  Mahalanobis distance d2 over ``threshold``, the d2 of held-out target frames at ``quantile``.
  It flags whatever leaves the target's cloud: another scene, blur, noise, exposure, renders.
- source classifier: a logistic regression source vs target on the same features; its logit
  above the held-out target's at ``quantile``, in units of their spread. Adapted features are
  aligned, so frames can move towards the source while staying inside the target's cloud
  (the demo classifier's blurred and night-like frames); this term sees that.

``score = 1 - exp(-max(0, d2 / threshold - 1, (logit - t) / s))``: 0 on frames like the
adaptation target (all but about 2 x (1 - quantile) of them), towards 1 beyond it. On its
own the classifier term misses shifts off the source-target axis (demo detector: noise 0.004,
blur 0.038 against the target's 0.005), hence the density term.
"""

from __future__ import annotations

import dataclasses
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
    # source-vs-target logistic regression on the same features (zeros without source frames):
    # its excess over the held-out target's logits at ``quantile``, in units of their spread
    weights: np.ndarray | None = None  # (F,) logit = f @ weights + bias
    bias: float = 0.0
    logit_threshold: float = 0.0
    logit_scale: float = 0.0  # 0: the classifier term is off
    report: dict = field(default_factory=dict)  # frames used and mean scores, for the export log and metadata


def pool(features: np.ndarray) -> np.ndarray:
    """(N, C, H, W) feature maps -> (N, C) by averaging over locations; (N, F) unchanged."""
    features = np.asarray(features, np.float64)
    return features.mean((2, 3)) if features.ndim == 4 else features.reshape(len(features), -1)


def fit_monitor(target: np.ndarray, source: np.ndarray | None = None, quantile: float = 0.95,
                holdout: float = 0.3, seed: int = 0) -> MonitorFit:
    """Fit on pooled ``target`` features; a random ``holdout`` share of them calibrates the threshold.

    Random, not the last part of the bag: a bag may be ordered by content (the demo's real digits
    play class by class), and a held-out tail would then be a shift of its own.
    """
    target = pool(target)
    n, dim = target.shape
    n_cal = int(round(n * holdout))
    if n - n_cal < 8 or n_cal < 4:
        raise ValueError(f"too few target frames to fit the shift monitor: {n} (need >= 12)")
    if not 0.5 <= quantile < 1.0:
        raise ValueError(f"quantile must be within [0.5, 1), got {quantile}")
    order = np.random.default_rng(seed).permutation(n)
    fit_set, cal_set = target[order[n_cal:]], target[order[:n_cal]]
    mean = fit_set.mean(0)
    cov = np.cov(fit_set - mean, rowvar=False).reshape(dim, dim)
    shrink = dim / (dim + len(fit_set))  # more shrinkage when frames are few for the dimension
    cov = (1 - shrink) * cov + shrink * (np.trace(cov) / dim + 1e-8) * np.eye(dim)
    vals, vecs = np.linalg.eigh(cov)
    whiten = vecs / np.sqrt(np.maximum(vals, 1e-12 * vals.max()))
    d2_cal = _d2(cal_set, mean, whiten)
    threshold = float(np.quantile(d2_cal, quantile))
    weights, bias, logit_threshold, logit_scale = None, 0.0, 0.0, 0.0
    if source is not None and len(source) >= 4:
        weights, bias = _logistic(pool(source), fit_set)
        cal_logits = cal_set @ weights + bias
        lo, logit_threshold = np.quantile(cal_logits, [1 - quantile, quantile])
        logit_scale = float(max(logit_threshold - lo, 1e-6) / 2)
    fit = MonitorFit(mean, whiten, threshold, quantile, weights, float(bias), float(logit_threshold), logit_scale)
    report = {"target_frames": n, "calibration_frames": n_cal, "dim": dim,
              "target_holdout_mean_score": float(shift_scores(fit, cal_set).mean())}
    if source is not None and len(source):
        report.update(source_frames=len(source), source_mean_score=float(shift_scores(fit, source).mean()))
    return dataclasses.replace(fit, report=report)


def _logistic(source: np.ndarray, target: np.ndarray, l2: float = 1e-2, steps: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression, source = 1, target = 0, classes weighted equally (Newton)."""
    x = np.concatenate([source, target])
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    y = np.r_[np.ones(len(source)), np.zeros(len(target))]
    sw = np.where(y == 1, 0.5 / len(source), 0.5 / len(target))
    w = np.zeros(z.shape[1])
    reg = l2 * np.eye(z.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (sw * (p - y)) + reg @ w
        hess = (z.T * (sw * p * (1 - p))) @ z + reg
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    weights = w[:-1] / sd  # back to raw features: logit = f @ weights + bias
    return weights, float(w[-1] - mu @ weights)


def _d2(features: np.ndarray, mean: np.ndarray, whiten: np.ndarray) -> np.ndarray:
    z = (pool(features) - mean) @ whiten
    return (z * z).sum(1)


def shift_scores(fit: MonitorFit, features: np.ndarray) -> np.ndarray:
    """Per-frame shift score in [0, 1) (numpy; the graph computes the same in :class:`FeatureMonitor`)."""
    excess = np.maximum(_d2(features, fit.mean, fit.whiten) / fit.threshold - 1.0, 0.0)
    if fit.logit_scale > 0:
        logits = pool(features) @ fit.weights + fit.bias
        excess = np.maximum(excess, (logits - fit.logit_threshold) / fit.logit_scale)
    return 1.0 - np.exp(-excess)


class FeatureMonitor(nn.Module):
    """The fitted monitor as part of the deployed graph: feature map in, shift score per image out."""

    def __init__(self, fit: MonitorFit) -> None:
        super().__init__()
        # folding 1/threshold into the projection keeps the graph to a subtract, a matmul and a sum
        scale = 1.0 / np.sqrt(fit.threshold)
        self.register_buffer("mean", torch.as_tensor(fit.mean, dtype=torch.float32))
        self.register_buffer("proj", torch.as_tensor(fit.whiten * scale, dtype=torch.float32))
        # the classifier term, already in threshold/scale units: (f @ w + b - t) / s
        on = fit.logit_scale > 0
        w = fit.weights / fit.logit_scale if on else np.zeros(len(fit.mean))
        b = (fit.bias - fit.logit_threshold) / fit.logit_scale if on else -1.0
        self.register_buffer("lr_weights", torch.as_tensor(w, dtype=torch.float32))
        self.register_buffer("lr_bias", torch.tensor(float(b), dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.float().mean((2, 3)) if features.dim() == 4 else features.float().flatten(1)
        z = (pooled - self.mean.float()) @ self.proj.float()  # float32 also inside an fp16 graph
        excess = torch.maximum((z * z).sum(1) - 1.0, pooled @ self.lr_weights.float() + self.lr_bias.float())
        return 1.0 - torch.exp(-torch.relu(excess))
