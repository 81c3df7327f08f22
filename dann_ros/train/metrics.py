"""Label-free and labelled measures of a model on source and target data.

Label-free checkpoint selection matters: picking checkpoints by target labels
(as several published DANN results do) is not possible on a robot, and
Musgrave et al. (2021) show the difference is larger than between methods.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dann_ros.model.detection_metrics import box_iou
from dann_ros.model.inference import Detections


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


def proxy_a_distance(source_features: np.ndarray, target_features: np.ndarray, seed: int = 0,
                     splits: int = 1) -> float:
    """PAD = 2 (1 - 2 err) of a linear domain classifier on held-out halves (Ben-David et al.).
    0: domains indistinguishable in feature space; 2: perfectly separable. ``splits`` > 1: the mean
    over that many random halvings (seeds ``seed``, ``seed + 1``, ...): one split of a few hundred
    samples a side varies by about 0.07."""
    if splits > 1:
        return float(np.mean([proxy_a_distance(source_features, target_features, seed + k)
                              for k in range(splits)]))
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


# Box Stability Score defaults: Yang et al. drop 15% of the features; 0.3 is the predictor's default
# score threshold (runtime/predictor.py), i.e. the boxes a robot would act on.
STABILITY_DROPOUT = 0.15
STABILITY_SCORE_THRESHOLD = 0.3


def box_stability_between(clean: Sequence[Detections], perturbed: Sequence[Detections],
                  score_threshold: float = STABILITY_SCORE_THRESHOLD) -> float:
    """Box Stability Score (BoS; Yang et al., ICCV 2023): how little a detector's boxes move when
    its features are perturbed (dropout), a label-free stand-in for mAP under distribution shift.

    ``clean`` and ``perturbed``: per image, (boxes (K, 4) x1 y1 x2 y2, scores (K,), class ids (K,))
    of the same images, without and with the perturbation. Per image the boxes scoring at least
    ``score_threshold`` are matched one-to-one (Hungarian, maximising IoU; a class mismatch is IoU 0);
    the score is the matched IoU summed over images divided by the boxes counted, each image counting
    max(K_clean, K_perturbed), so a box that vanishes or appears scores 0. 1: every box is kept exactly.
    No box above the threshold on any image gives 0.0 (a detector that finds nothing is not stable
    in any useful sense) rather than NaN.
    """
    from scipy.optimize import linear_sum_assignment

    if len(clean) != len(perturbed):
        raise ValueError(f"{len(clean)} clean but {len(perturbed)} perturbed images: give the same images")
    matched, counted = 0.0, 0
    for (b0, s0, c0), (b1, s1, c1) in zip(clean, perturbed):
        k0, k1 = np.asarray(s0) >= score_threshold, np.asarray(s1) >= score_threshold
        b0, c0 = np.asarray(b0, np.float64).reshape(-1, 4)[k0], np.asarray(c0)[k0]
        b1, c1 = np.asarray(b1, np.float64).reshape(-1, 4)[k1], np.asarray(c1)[k1]
        counted += max(len(b0), len(b1))
        if len(b0) and len(b1):
            iou = np.nan_to_num(box_iou(b0, b1)) * (c0[:, None] == c1[None, :])  # degenerate box: IoU 0
            rows, cols = linear_sum_assignment(iou, maximize=True)
            matched += float(iou[rows, cols].sum())
    return matched / counted if counted else 0.0
