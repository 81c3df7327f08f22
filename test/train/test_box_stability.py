"""Label-free checkpoint selection for detection: the box stability score on hand-made detections,
its seeded dropout pass on a real detector, the config rules, and a short run that selects by it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dann_ros.train.metrics import box_stability_between


def dets(boxes, scores, classes):
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
            np.asarray(classes, np.int64))


A = dets([[0, 0, 10, 10], [20, 20, 40, 30]], [0.9, 0.8], [1, 2])


def test_identical_detections_score_one_in_any_order():
    swapped = dets(A[0][::-1], A[1][::-1], A[2][::-1])
    assert box_stability_between([A, A], [A, swapped]) == pytest.approx(1.0)


def test_shifted_box_scores_its_iou():
    one = dets([[0, 0, 10, 10]], [0.9], [0])
    shifted = dets([[5, 0, 15, 10]], [0.9], [0])  # overlap 5 x 10 = 50, union 150
    assert box_stability_between([one], [shifted]) == pytest.approx(50 / 150)


def test_lost_and_spurious_boxes_count_as_zero():
    one = dets([[0, 0, 10, 10]], [0.9], [0])
    assert box_stability_between([A], [dets(A[0][:1], A[1][:1], A[2][:1])]) == pytest.approx(0.5)  # one of two kept
    assert box_stability_between([one], [dets([], [], [])]) == 0.0
    # the perturbed pass adds a far box: 1 matched IoU over max(1, 2) boxes
    extra = dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.9], [0, 0])
    assert box_stability_between([one], [extra]) == pytest.approx(0.5)


def test_class_change_and_low_scores():
    relabelled = dets([[0, 0, 10, 10]], [0.9], [3])
    assert box_stability_between([dets([[0, 0, 10, 10]], [0.9], [0])], [relabelled]) == 0.0
    faint = dets([[0, 0, 10, 10], [40, 40, 50, 50]], [0.9, 0.1], [0, 0])  # below 0.3: not counted
    strong = dets([[0, 0, 10, 10]], [0.9], [0])
    assert box_stability_between([faint], [strong]) == pytest.approx(1.0)
    assert box_stability_between([faint], [strong], score_threshold=0.05) == pytest.approx(0.5)


def test_no_detections_anywhere_is_zero_not_nan():
    empty = dets([], [], [])
    assert box_stability_between([], []) == 0.0
    assert box_stability_between([empty, empty], [empty, empty]) == 0.0
    degenerate = dets([[5, 5, 5, 5]], [0.9], [0])  # zero area: IoU 0, not NaN
    assert box_stability_between([degenerate], [degenerate]) == 0.0


def test_image_counts_must_match():
    with pytest.raises(ValueError, match="same images"):
        box_stability_between([A], [A, A])


@pytest.fixture(scope="module")
def detector():
    from dann_ros.data.preprocess import Preprocess
    from dann_ros.model.builders import build_model
    from dann_ros.model.config import ModelConfig

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="lenet"), "detection", 3, Preprocess(height=48, width=64))
    with torch.no_grad():  # untrained, but firing: peaks score about sigmoid(1) = 0.73, boxes about 4 cells wide
        model.heatmap[-1].bias.fill_(1.0)
        model.size[-1].bias.fill_(4.0)
    return model.eval()


def test_dropout_pass_is_seeded_and_perturbs(detector):
    from dann_ros.data.frame_store import MemoryStore
    from dann_ros.model.inference import predict_detections, predict_detections_with_dropout
    from dann_ros.train.tasks.detection import box_stability as store_stability

    images = np.random.default_rng(0).integers(0, 256, (10, 3, 48, 64), dtype=np.uint8)
    cpu = torch.device("cpu")
    runs = [predict_detections_with_dropout(detector, images, cpu, 0.15, torch.Generator().manual_seed(seed),
                                            batch_size=4) for seed in (0, 0, 1)]
    clean, perturbed = runs[0]
    deployed = predict_detections(detector, images, cpu)
    for i, (b, s, _) in enumerate(clean):  # the clean pass is the deployed model's output
        np.testing.assert_array_equal(b, deployed[0][i])
        np.testing.assert_array_equal(s, deployed[1][i])
    assert sum(int((s >= 0.3).sum()) for _, s, _ in clean) > 0
    assert box_stability_between(clean, clean) == pytest.approx(1.0)
    for (b0, s0, _), (b1, s1, _) in zip(perturbed, runs[1][1]):  # same seed: the same boxes
        np.testing.assert_array_equal(b0, b1)
        np.testing.assert_array_equal(s0, s1)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(perturbed, runs[2][1]))  # other seed: other masks
    assert 0.0 < box_stability_between(clean, perturbed) < 1.0  # dropout moves some boxes, keeps some
    # the training-side score over two stores of the frames: the same value on every call
    stores = [MemoryStore(images[:6], {}, {}, {}), MemoryStore(images[6:], {}, {}, {})]
    first = store_stability(detector, stores, cpu)
    assert first == store_stability(detector, stores, cpu) and 0.0 < first < 1.0
    with pytest.raises(ValueError, match="dropout"):
        predict_detections_with_dropout(detector, images, cpu, 1.0, torch.Generator())


def test_stability_selection_is_detection_only_and_needs_target_bags(tiny_domains, tiny_detection_domains,
                                                                      tmp_path):
    from test.train.conftest import tiny_config, tiny_detection_config

    with pytest.raises(ValueError, match="selection stability .*detection only"):
        tiny_config(tiny_domains, tmp_path, selection="stability")
    with pytest.raises(ValueError, match="selection stability scores target frames: set target.bags"):
        tiny_detection_config(tiny_detection_domains, tmp_path, selection="stability",
                              **{"target.bags": [], "adaptation.method": "none"})
    with pytest.raises(ValueError, match="selection im .*selects by stability"):
        tiny_detection_config(tiny_detection_domains, tmp_path, selection="im")


def test_detection_run_selects_by_stability(tiny_detection_domains, tmp_path):
    from dann_ros.train.trainer import train
    from test.train.conftest import tiny_detection_config

    # lr and steps where the tiny detector's peaks pass the 0.3 score threshold (else every score is 0)
    cfg = tiny_detection_config(tiny_detection_domains, tmp_path / "run", selection="stability",
                                **{"adaptation.method": "dann", "train.steps": 24, "optim.lr": 0.01,
                                   "train.eval_every": 6, "train.checkpoint_every": 6})
    train(cfg, show_progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    history = metrics["history"]
    assert [h["step"] for h in history] == [6, 12, 18, 24]
    assert all(0.0 <= h["stability"] <= 1.0 for h in history)
    assert len({h["stability"] for h in history}) > 1  # the choice is a real one
    best = max(history, key=lambda h: h["stability"])
    assert metrics["selection"] == "stability" and metrics["selected"] == best
    assert metrics["oracle"]["target_map50"] == max(h["target_map50"] for h in history)
    model = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert model["step"] == best["step"]
