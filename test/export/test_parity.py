"""Detection parity matches candidates by identity (class, nearest box), not by place in the best-first list:
near-ties sorted differently by another runtime pass; a moved box, a changed score or class fails, named."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from dann_ros.export.parity import SCORE_FLOOR, TOLERANCES, compare, read_peak_px

ONNX = TOLERANCES["onnx"]


@pytest.fixture(scope="module")
def outputs(tiny_detector_onnx):
    """Real ONNX Runtime outputs of the random-weight detector: 100 candidates a frame, all near-tied (~0.10)."""
    sess = ort.InferenceSession(str(tiny_detector_onnx), providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(0).uniform(0, 255, (4, 3, 48, 64)).astype(np.float32)
    out = sess.run(None, {"images": frames})
    assert out[1].shape == (4, 100) and (out[1] >= SCORE_FLOOR).all()  # every candidate is compared
    assert np.diff(out[1][:, :2], axis=1).max() > -1e-3  # the two best are a near-tie
    return out


def _check(ref, got, peak_px=0.0):
    report = compare(ref, got, "detection", "test frames", ONNX.box_px, peak_px)
    return report, report.failures(ONNX)


def _copy(outputs):
    return [o.copy() for o in outputs]


def test_identical_outputs_pass(outputs):
    report, failures = _check(outputs, _copy(outputs))
    assert failures == [] and report.max_abs_diff == 0 and report.max_box_diff == 0
    assert report.top1_agreement == 1.0 and report.class_mismatches == 0


def test_near_ties_in_another_order_pass(outputs):
    boxes, scores, classes, domain = got = _copy(outputs)
    for i in range(len(scores)):  # the two best swap places, each score moved by a few ulp-like units
        for a in (boxes, classes):
            a[i, [0, 1]] = a[i, [1, 0]]
        scores[i, :2] = [scores[i, 0] + 2e-6, scores[i, 0] - 2e-6]
    # the last candidate of a full list is cut by a near-tie: another cell, just below it, takes its place
    boxes[0, -1] += 20.0
    scores[0, -1] -= 1e-6
    assert np.abs(got[0][:, 0] - outputs[0][:, 0]).max() > 1.0  # by position the best boxes differ
    report, failures = _check(outputs, got)
    assert failures == [], failures
    assert report.top1_agreement == 1.0 and report.max_box_diff == 0
    assert report.max_abs_diff < 1e-4  # the matched scores, not the positional ones


def test_a_tied_peak_at_the_neighbouring_cell_passes_within_the_peak_window(outputs):
    """Peak picking keeps one of two tied neighbour cells; rounding may keep the other (the export passes
    peak_px = 2 output strides; this detector's stride is 4 px)."""
    got = _copy(outputs)
    got[0][1, 2] += [4.0, 0.0, 4.0, 0.0]  # the next cell to the right, same score
    report, failures = _check(outputs, got, peak_px=8.0)
    assert failures == [] and report.peak_ties == 2  # seen from both sides
    assert _check(outputs, got)[1][0].startswith("box 4 px > 0.05 px (frame 1: ")  # without the window: a move
    got[1][1, 2] -= 0.01  # not tied: a moved box
    assert _check(outputs, got, peak_px=8.0)[1][0].startswith("box 4 px > 0.05 px (frame 1: ")


@pytest.mark.parametrize("move, peak_px", [(3.0, 0.0), (20.0, 8.0)])
def test_a_moved_box_fails_and_says_where(outputs, move, peak_px):
    got = _copy(outputs)
    got[0][2, 3] += [move, 0.0, move, 0.0]  # the 4th candidate of frame 2, not the best one
    report, failures = _check(outputs, got, peak_px)
    assert report.max_box_diff == pytest.approx(move, abs=0.05)
    assert len(failures) == 1 and failures[0].startswith(f"box {move:g} px > 0.05 px (frame 2: ")
    assert f"class {int(outputs[2][2, 3])} score" in failures[0]


def test_a_changed_score_fails_and_says_where(outputs):
    got = _copy(outputs)
    got[1][3, 5] -= 0.05
    report, failures = _check(outputs, got)
    assert report.max_abs_diff == pytest.approx(0.05, abs=1e-5)
    assert len(failures) == 1 and failures[0].startswith("max |diff| 0.05 > 0.001 (frame 3: ")
    assert f"score {outputs[1][3, 5]:.4f}" in failures[0]


def test_a_changed_class_fails_and_says_where(outputs):
    got = _copy(outputs)
    old = int(outputs[2][1, 0])
    got[2][1, 0] = (old + 1) % 10
    clash = (np.abs(outputs[0][1] - outputs[0][1, 0]).max(1) <= ONNX.box_px) & (outputs[2][1] == (old + 1) % 10)
    assert not clash.any()  # no reference candidate of the new class in that place
    report, failures = _check(outputs, got)
    assert report.class_mismatches == 1 and report.top1_agreement == 0.75
    assert failures[0].startswith(f"class differs for 1 candidate(s) (frame 1: reference class {old} ")
    assert failures[0].endswith(f"is class {(old + 1) % 10} in the other output)")
    assert failures[1].startswith("top-1 agreement 0.7500 < ")


def test_a_nan_or_a_different_domain_output_fails(outputs):
    got = _copy(outputs)
    got[1][0, 0] = np.nan
    assert any(f.startswith("max |diff| nan") for f in _check(outputs, got)[1])
    got = _copy(outputs)
    got[3][2] += 0.5
    failures = _check(outputs, got)[1]
    assert failures == ["max |diff| 0.5 > 0.001 (graph output 3 (ModelInfo.output_names order))"]


def test_the_export_keeps_the_peak_window_for_the_engine_check(tiny_detector_onnx, tiny_onnx):
    """The engine check on the robot (dann_ros.runtime.tensorrt_backend) reads it back from the ONNX."""
    assert read_peak_px(tiny_detector_onnx) == 8.0  # 2 output strides of 4 px
    assert read_peak_px(tiny_onnx) == 0.0  # a classifier has no peaks


def test_outputs_in_batches_are_the_outputs_of_one_run(tiny_detector_onnx):
    """What a parity check compares: each output joined over batches of at most the given size, every
    batch made float32 only when it runs (the frames are never one float array)."""
    from dann_ros.export.parity import outputs_in_batches

    sess = ort.InferenceSession(str(tiny_detector_onnx), providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(1).integers(0, 256, (7, 3, 48, 64), dtype=np.uint8)
    seen: list[tuple] = []

    def run(batch):
        seen.append((len(batch), batch.dtype))
        return sess.run(None, {"images": batch})

    joined = outputs_in_batches(run, frames, 3)
    assert seen == [(3, np.float32), (3, np.float32), (1, np.float32)]
    whole = sess.run(None, {"images": frames.astype(np.float32)})
    assert len(joined) == len(whole)
    for a, b in zip(joined, whole):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)
