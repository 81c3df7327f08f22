"""The label-free measures against values worked out by hand: information maximization (IM), soft
neighbourhood density (SND) and the proxy A-distance (PAD)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dann_ros.train.metrics import information_maximization, proxy_a_distance, soft_neighborhood_density


def entropy(*p: float) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


@pytest.mark.parametrize("probs, expected", [
    ([[1.0, 0.0], [0.0, 1.0]], math.log(2)),  # confident and diverse: H(mean) = ln 2, mean H = 0
    ([[0.5, 0.5], [0.5, 0.5]], 0.0),  # diverse but unsure: ln 2 - ln 2
    ([[1.0, 0.0], [1.0, 0.0]], 0.0),  # sure but collapsed onto one class
    ([[0.9, 0.1], [0.1, 0.9]], math.log(2) - entropy(0.9, 0.1)),  # 0.693147 - 0.325083 = 0.368064
    ([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]], 0.0),  # identical predictions: H(mean) = mean H
])
def test_information_maximization(probs, expected):
    assert information_maximization(torch.tensor(probs)) == pytest.approx(expected, abs=1e-6)


def test_information_maximization_of_three_frames():
    probs = torch.tensor([[0.8, 0.2], [0.8, 0.2], [0.2, 0.8]])
    mean = (0.6, 0.4)  # (0.8 + 0.8 + 0.2) / 3, (0.2 + 0.2 + 0.8) / 3
    expected = entropy(*mean) - entropy(0.8, 0.2)  # 0.673012 - 0.500402 = 0.172610
    assert information_maximization(probs) == pytest.approx(expected, abs=1e-6)


def test_soft_neighborhood_density_by_hand():
    """Rows a = b = (1, 0), c = (0, 1); cosine similarities a.b = 1, a.c = b.c = 0, the diagonal left out.
    At temperature 1 a's neighbours get softmax(1, 0) = (e, 1) / (e + 1); c's get softmax(0, 0) = (1/2, 1/2)."""
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = math.e / (math.e + 1)
    expected = (2 * entropy(p, 1 - p) + math.log(2)) / 3  # (2 * 0.582204 + 0.693147) / 3 = 0.619185
    assert soft_neighborhood_density(probs, temperature=1.0) == pytest.approx(expected, abs=1e-6)
    # at the default temperature 0.05, a's neighbourhood is all b: entropy ~0; c's stays ln 2
    assert soft_neighborhood_density(probs) == pytest.approx(math.log(2) / 3, abs=1e-6)


def test_soft_neighborhood_density_uses_at_most_max_samples():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    # two rows: each has a single neighbour, a softmax over one value is 1, entropy 0
    assert soft_neighborhood_density(probs, temperature=1.0, max_samples=2) == pytest.approx(0.0, abs=1e-9)
    z = 1 / math.sqrt(2)  # cosine of (1, 0) or (0, 1) with (0.5, 0.5)
    pa = math.exp(0.0) / (math.exp(0.0) + math.exp(z))  # row (1, 0): neighbours (0, 1) and (0.5, 0.5)
    expected = (2 * entropy(pa, 1 - pa) + math.log(2)) / 3  # row (0.5, 0.5): two neighbours at z: ln 2
    assert soft_neighborhood_density(probs, temperature=1.0) == pytest.approx(expected, abs=1e-6)


def test_proxy_a_distance_of_separable_domains_is_two():
    rng = np.random.default_rng(0)
    source = rng.normal(+5.0, 1.0, (400, 3))
    target = rng.normal(-5.0, 1.0, (400, 3))
    assert proxy_a_distance(source, target) == 2.0  # err = 0: PAD = 2 (1 - 0)


def test_proxy_a_distance_of_a_known_overlap():
    """1-D features: every source frame at 0, half the target frames at 0 and half at 1. The best
    classifier calls 0 source and 1 target, so it errs on the target frames at 0: a quarter of all
    frames, err = 1/4, PAD = 2 (1 - 2/4) = 1 (up to the sampling of the held-out half)."""
    n = 4000
    source = np.zeros((n, 1))
    target = np.concatenate([np.zeros((n // 2, 1)), np.ones((n // 2, 1))])
    assert proxy_a_distance(source, target) == pytest.approx(1.0, abs=0.06)


def test_proxy_a_distance_of_one_domain_is_zero():
    """The same features on both sides: the classifier can only predict the majority domain of its
    training half, which is the minority of the held-out half (each domain has n frames in all), so
    err >= 1/2, clamped to 1/2: PAD = 0 whatever the split."""
    feats = np.zeros((300, 4))
    assert proxy_a_distance(feats, feats.copy()) == 0.0


def test_proxy_a_distance_over_splits_is_their_mean_and_steadier():
    """A few hundred samples a side: one random halving's PAD varies; the mean over ``splits`` is
    the mean of those halvings (seeds seed, seed + 1, ...) and varies less across seeds."""
    rng = np.random.default_rng(0)
    source = rng.normal(0.0, 1.0, (300, 8))
    target = rng.normal(0.0, 1.0, (300, 8)) + np.r_[0.6, np.zeros(7)]
    singles = [proxy_a_distance(source, target, s) for s in range(16)]
    assert proxy_a_distance(source, target, 3, splits=4) == pytest.approx(np.mean(singles[3:7]))
    means = [proxy_a_distance(source, target, 4 * k, splits=4) for k in range(4)]
    assert np.std(means) < np.std(singles)
