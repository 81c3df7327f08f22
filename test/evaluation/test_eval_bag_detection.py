"""eval-bag on a detection model: mAP equals `dann-ros eval`, Detection2DArray in the result bag."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from dann_ros.cli import main
from dann_ros.data.compose import write_detection_bag
from dann_ros.data.labels import LabelBox
from dann_ros.evaluation.detection import evaluate_detection_bag
from dann_ros.evaluation.eval_bag import evaluate_bag
from dann_ros.evaluation.result_bag import vision_typestore
from dann_ros.runtime.predictor import Predictor

CLASSES = tuple(str(i) for i in range(10))


@pytest.fixture()
def detection_bag(tmp_path):
    rng = np.random.default_rng(3)
    images, boxes = [], []
    for _ in range(12):
        image = rng.integers(0, 60, (60, 100, 3), dtype=np.uint8)
        x, y = int(rng.integers(5, 60)), int(rng.integers(5, 25))
        image[y:y + 25, x:x + 18] = 230
        images.append(image)
        boxes.append([LabelBox(float(x), float(y), float(x + 18), float(y + 25), CLASSES[int(rng.integers(0, 10))])])
    bag = tmp_path / "scenes"
    write_detection_bag(bag, images, boxes, CLASSES)
    return bag


def test_eval_bag_detection_matches_eval_and_writes_detection2darray(tiny_detector_onnx, detection_bag, tmp_path):
    predictor = Predictor.load(tiny_detector_onnx)
    out = tmp_path / "eval"
    result = evaluate_bag(predictor, detection_bag, out_dir=out)
    report = result.report
    reference = evaluate_detection_bag(predictor, detection_bag, f"{detection_bag}.labels.json")
    assert report["scores"]["map50"] == pytest.approx(reference.map50, abs=1e-9)
    assert report["scores"]["map"] == pytest.approx(reference.map, abs=1e-9)
    assert report["model"]["task"] == "detection" and report["scores"]["n"] == 12
    saved = json.loads((out / "report.json").read_text())
    assert "per_class_ap50" in saved["figures"] and "class_histogram" in saved["figures"]
    assert "mAP@0.5" in (out / "report.html").read_text()
    with AnyReader([out / "result_bag"], default_typestore=vision_typestore()) as reader:
        conns = [c for c in reader.connections if c.msgtype == "vision_msgs/msg/Detection2DArray"]
        assert conns and conns[0].topic == "/camera/detections"
        msgs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    assert len(msgs) == 12
    expected = predictor.detect_batch([f for f in _frames(detection_bag)])
    for msg, dets in zip(msgs, expected):
        assert len(msg.detections) == len(dets.items)
        for m, d in zip(msg.detections, dets.items):
            assert m.bbox.center.position.x == pytest.approx((d.box[0] + d.box[2]) / 2, abs=1e-3)
            assert m.results[0].hypothesis.class_id == str(d.class_id)


def _frames(bag):
    from dann_ros.data.bags import iter_frames

    return [f.image for f in iter_frames(bag)]


def test_eval_bag_cli_prints_map(tiny_detector_onnx, detection_bag, tmp_path, capsys):
    assert main(["eval-bag", "--model", str(tiny_detector_onnx), "--bag", str(detection_bag),
                 "--out", str(tmp_path / "cli"), "--no-result-bag"]) == 0
    assert "mAP@0.5" in capsys.readouterr().out
