"""The post-hoc shift monitor: fitted on target features, 0 on held-out target frames, -> 1 beyond."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dann_ros.model.feature_monitor import FeatureMonitor, fit_monitor, shift_scores


def _features(n: int, rng: np.random.Generator, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """Correlated 16-d features (a low-rank part plus noise), like pooled CNN features."""
    mix = np.random.default_rng(0).normal(size=(4, 16))
    return (rng.normal(size=(n, 4)) @ mix + 0.3 * rng.normal(size=(n, 16))) * scale + shift + 5.0


def test_held_out_target_scores_near_zero_and_shifted_frames_near_one():
    rng = np.random.default_rng(1)
    fit = fit_monitor(_features(400, rng), source=_features(100, rng, shift=2.0))
    assert fit.report["target_frames"] == 400 and fit.report["calibration_frames"] == 120
    assert fit.report["target_holdout_mean_score"] < 0.05
    assert fit.report["source_mean_score"] > 0.95
    fresh = shift_scores(fit, _features(300, rng))
    assert np.mean(fresh == 0.0) > 0.85 and fresh.mean() < 0.05  # about the calibration quantile
    # off the low-rank structure (noise), bigger (exposure), moved (another scene): all flagged
    noisy = _features(300, rng) + rng.normal(0, 1.0, (300, 16))
    for other in (noisy, _features(300, rng, scale=2.5), _features(300, rng, shift=1.5)):
        assert shift_scores(fit, other).mean() > 0.6


@pytest.mark.parametrize("with_source", [False, True])
def test_graph_module_matches_numpy_and_pools_feature_maps(with_source):
    rng = np.random.default_rng(2)
    fit = fit_monitor(_features(200, rng), source=_features(60, rng, shift=0.8) if with_source else None)
    assert (fit.logit_scale > 0) == with_source
    flat = _features(50, rng, shift=rng.uniform(0, 1.0, (50, 1)))
    maps = np.repeat(np.repeat(flat[:, :, None, None], 3, 2), 5, 3)  # constant maps: their mean is `flat`
    module = FeatureMonitor(fit).eval()
    with torch.no_grad():
        got = module(torch.from_numpy(maps).float()).numpy()
        got_flat = module(torch.from_numpy(flat).float()).numpy()
    want = shift_scores(fit, flat)
    np.testing.assert_allclose(got, want, atol=2e-4)
    np.testing.assert_allclose(got_flat, want, atol=2e-4)
    assert 0.0 < want.mean() < 1.0 and want.min() == 0.0


def test_high_dimensional_features_with_few_frames_still_fit():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(60, 512))  # resnet-size pooled features, fewer frames than dimensions
    fit = fit_monitor(target)
    assert np.isfinite(fit.threshold) and fit.threshold > 0
    assert shift_scores(fit, rng.normal(size=(100, 512))).mean() < 0.2
    assert shift_scores(fit, rng.normal(size=(100, 512)) * 2).mean() > 0.9


def test_too_few_frames_is_a_clear_error():
    with pytest.raises(ValueError, match="too few target frames"):
        fit_monitor(np.zeros((10, 4)))


def test_source_classifier_term_flags_frames_moved_towards_the_source():
    """Frames moved along the source-target axis by less than the Gaussian term notices still count."""
    rng = np.random.default_rng(4)
    target, source = _features(400, rng), _features(200, rng, shift=0.6)
    with_clf, gaussian_only = fit_monitor(target, source), fit_monitor(target)
    halfway = _features(300, rng, shift=0.45)
    assert shift_scores(with_clf, halfway).mean() > shift_scores(gaussian_only, halfway).mean() + 0.2
    assert shift_scores(with_clf, _features(300, rng)).mean() < 0.1
