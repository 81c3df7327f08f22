"""Label-free and labelled measures of a model on source and target data.

Label-free checkpoint selection matters: picking checkpoints by target labels
(as several published DANN results do) is not possible on a robot, and
Musgrave et al. (2021) show the difference is larger than between methods.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    mask = labels >= 0
    return float((pred[mask] == labels[mask]).mean()) if mask.any() else float("nan")


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float | None]:
    out: list[float | None] = []
    for c in range(num_classes):
        mask = labels == c
        out.append(float((pred[mask] == c).mean()) if mask.any() else None)
    return out


def information_maximization(probs: torch.Tensor) -> float:
    """IM = H(mean prediction) - mean H(prediction): confident yet diverse predictions score high."""
    probs = probs.float().clamp_min(1e-12)
    mean = probs.mean(0)
    marginal = -(mean * mean.log()).sum()
    conditional = -(probs * probs.log()).sum(1).mean()
    return float(marginal - conditional)


def soft_neighborhood_density(probs: torch.Tensor, temperature: float = 0.05, max_samples: int = 2000) -> float:
    """SND (Saito et al., ICCV 2021): entropy of the soft neighbourhood of each target
    prediction; well-clustered target predictions give high density."""
    probs = probs.float()[:max_samples]
    z = F.normalize(probs, dim=1)
    sim = z @ z.t()
    sim.fill_diagonal_(float("-inf"))
    p = torch.softmax(sim / temperature, dim=1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())


def proxy_a_distance(source_features: np.ndarray, target_features: np.ndarray, seed: int = 0) -> float:
    """PAD = 2 (1 - 2 err) of a linear domain classifier on held-out halves (Ben-David et al.).
    0: domains indistinguishable in feature space; 2: perfectly separable."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(source_features), len(target_features))
    s = source_features[rng.permutation(len(source_features))[:n]]
    t = target_features[rng.permutation(len(target_features))[:n]]
    x = np.concatenate([s, t]).astype(np.float64)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    order = rng.permutation(2 * n)
    x, y = x[order], y[order]
    half = n
    scaler = StandardScaler().fit(x[:half])
    clf = LogisticRegression(max_iter=500, C=1.0).fit(scaler.transform(x[:half]), y[:half])
    err = 1.0 - clf.score(scaler.transform(x[half:]), y[half:])
    return float(2.0 * (1.0 - 2.0 * min(err, 0.5)))
