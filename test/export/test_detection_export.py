"""Detector -> ONNX (outputs, metadata, parity) and the Predictor's detections in input-image pixels."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from dann_ros.data.preprocess import Preprocess
from dann_ros.export.metadata import ModelInfo
from dann_ros.export.onnx_export import export_onnx
from dann_ros.runtime.predictor import Predictor

LETTERBOX = Preprocess(height=48, width=64, resize="letterbox")


def test_detector_export_outputs_metadata_and_parity(tiny_detector_checkpoint, tmp_path):
    out = tmp_path / "det.onnx"
    info, parity = export_onnx(tiny_detector_checkpoint, out)
    assert info.task == "detection" and info.output_names == ["boxes", "scores", "classes", "domain"]
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert ModelInfo.from_props(props, str(out)) == info
    assert json.loads(props["dann_ros.outputs"]) == info.output_names
    assert parity.top1_agreement == 1.0 and parity.max_abs_diff <= 1e-3 and parity.max_box_diff <= 0.05

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == info.output_names
    for n in (1, 3):
        x = np.random.default_rng(n).uniform(0, 255, (n, 3, 48, 64)).astype(np.float32)
        boxes, scores, classes, domain = sess.run(None, {"images": x})
        m = scores.shape[1]
        assert boxes.shape == (n, m, 4) and classes.shape == (n, m) and domain.shape == (n,)
        assert classes.dtype == np.float32 and np.all(classes == np.round(classes))
        assert np.all(np.diff(scores, axis=1) <= 0)  # best first

    bare, _ = export_onnx(tiny_detector_checkpoint, tmp_path / "bare.onnx", keep_domain=False)
    assert bare.output_names == ["boxes", "scores", "classes"]


class _FixedBackend:
    """Returns the same two candidates for every frame, in network pixels."""

    name = "fixed"

    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, np.float32)

    def run(self, batch):
        n = len(batch)
        return {"boxes": np.tile(self.boxes, (n, 1, 1)), "scores": np.tile([[0.9, 0.2]], (n, 1)).astype(np.float32),
                "classes": np.tile([[3.0, 1.0]], (n, 1)).astype(np.float32)}


def test_detect_undoes_the_letterbox_and_clips_to_the_image():
    info = ModelInfo("detection", tuple(str(i) for i in range(10)), LETTERBOX, "d", "0")
    image = np.zeros((80, 160, 3), np.uint8)  # scale 0.4, letterboxed to 64 x 32 with 8 px bars above/below
    _, geometry = LETTERBOX.prepare(image)
    assert (geometry.scale_x, geometry.offset_y) == (0.4, 8.0)
    net = [[8.0, 12.0, 24.0, 28.0],  # image box (20, 10, 60, 50)
           [-4.0, 4.0, 70.0, 44.0]]  # reaches past the image on every side
    predictor = Predictor(_FixedBackend(net), info, warmup=False)
    (det,) = predictor.detect(image).items  # threshold 0.3 drops the 0.2 candidate
    assert det.class_id == 3 and det.class_name == "3" and det.score == pytest.approx(0.9)
    np.testing.assert_allclose(det.box, (20, 10, 60, 50), atol=1e-4)
    both = predictor.detect(image, score_threshold=0.0)
    np.testing.assert_allclose(both.items[1].box, (0, 0, 160, 80))
    assert both.domain_score is None


def test_detect_through_pt_and_onnx_agrees(tiny_detector_checkpoint, tiny_detector_onnx):
    image = np.random.default_rng(0).integers(0, 256, (60, 120, 3), dtype=np.uint8)
    pt = Predictor.load(tiny_detector_checkpoint, backend="torch", device="cpu").detect(image, 0.0)
    ox = Predictor.load(tiny_detector_onnx, backend="onnxruntime").detect(image, 0.0)
    assert len(pt) == len(ox) > 0 and pt.domain_score == pytest.approx(ox.domain_score, abs=1e-5)
    np.testing.assert_allclose([d.score for d in pt], [d.score for d in ox], atol=1e-5)
    best_pt, best_ox = pt.items[0], ox.items[0]
    assert best_pt.class_id == best_ox.class_id
    np.testing.assert_allclose(best_pt.box, best_ox.box, atol=0.1)
    for d in ox:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= 120 and 0 <= y1 <= y2 <= 60


def test_detect_on_a_classifier_is_a_clear_error(tiny_onnx):
    with pytest.raises(ValueError, match="classification model"):
        Predictor.load(tiny_onnx, backend="onnxruntime").detect(np.zeros((28, 28, 3), np.uint8))
