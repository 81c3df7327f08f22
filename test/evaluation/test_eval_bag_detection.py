"""eval-bag on a trained detection model: mAP of the detections the node would publish (its
threshold, not a fixed one), equal to `dann-ros eval` when every candidate is published,
Detection2DArray in the result bag, on a rosbag2 folder named like `ros2 bag record -o x.bag`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from dann_ros.cli import main
from dann_ros.data.bags import iter_frames
from dann_ros.evaluation.average_precision import evaluate_detection_bag
from dann_ros.evaluation.eval_bag import evaluate_bag
from dann_ros.evaluation.result_bag import vision_typestore
from dann_ros.runtime.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(trained_detector_onnx):
    return Predictor.load(trained_detector_onnx, backend="onnxruntime", device="cpu")


def test_eval_bag_scores_and_writes_what_the_node_publishes(predictor, box_bag, tmp_path):
    out = tmp_path / "eval"
    report = evaluate_bag(predictor, box_bag["bag"], out_dir=out).report
    assert report["model"]["task"] == "detection" and report["outputs"] == {"detection_threshold": 0.3}
    assert "accuracy" not in report and report["metric"]["key"] == "map50"
    s = report["scores"]
    assert s["n"] == box_bag["n"] and s["threshold"] == 0.3 and report["map50"] == s["map50"] > 0.5
    expected = predictor.detect_batch([f.image for f in iter_frames(box_bag["bag"])], 0.3)
    assert report["predictions"]["detections"] == s["n_detections"] == sum(len(d) for d in expected) > 0
    saved = json.loads((out / "report.json").read_text())
    assert {"per_class_ap50", "class_histogram", "confidence_histogram"} <= set(saved["figures"])
    assert sum(saved["figures"]["class_histogram"]["detections"]) == s["n_detections"]
    page = (out / "report.html").read_text()
    assert "<h2>mAP</h2>" in page and "scoring at least 0.3" in page
    with AnyReader([out / "result_bag"], default_typestore=vision_typestore()) as reader:
        conns = [c for c in reader.connections if c.msgtype == "vision_msgs/msg/Detection2DArray"]
        assert [c.topic for c in conns] == ["/camera/detections"]
        msgs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    assert len(msgs) == box_bag["n"]
    for msg, dets in zip(msgs, expected):
        assert len(msg.detections) == len(dets.items)
        for m, d in zip(msg.detections, dets.items):
            assert m.bbox.center.position.x == pytest.approx((d.box[0] + d.box[2]) / 2, abs=1e-3)
            assert m.results[0].hypothesis.class_id == str(d.class_id)
            assert m.results[0].hypothesis.score == pytest.approx(d.score, abs=1e-6)


def test_threshold_is_the_nodes_and_zero_scores_every_candidate_like_eval(predictor, box_bag, tmp_path):
    reference = evaluate_detection_bag(predictor, box_bag["bag"], box_bag["labels"])  # every candidate
    every = evaluate_bag(predictor, box_bag["bag"], result_bag=False, detection_threshold=0.0).report
    assert every["scores"]["map50"] == pytest.approx(reference.map50, abs=1e-9)
    assert every["scores"]["map"] == pytest.approx(reference.map, abs=1e-9)
    strict = evaluate_bag(predictor, box_bag["bag"], out_dir=tmp_path / "strict", detection_threshold=0.9).report
    default = evaluate_bag(predictor, box_bag["bag"], result_bag=False).report
    counts = [r["predictions"]["detections"] for r in (every, default, strict)]
    assert counts[0] > counts[1] > counts[2] and strict["outputs"] == {"detection_threshold": 0.9}
    with AnyReader([tmp_path / "strict" / "result_bag"], default_typestore=vision_typestore()) as reader:
        conns = [c for c in reader.connections if c.msgtype == "vision_msgs/msg/Detection2DArray"]
        scores = [d.results[0].hypothesis.score for c, _, raw in reader.messages(connections=conns)
                  for d in reader.deserialize(raw, c.msgtype).detections]
    assert len(scores) == counts[2] and min(scores, default=1.0) >= 0.9


def test_eval_bag_cli_prints_map_and_takes_the_threshold(trained_detector_onnx, box_bag, tmp_path, capsys):
    assert main(["eval-bag", "--model", str(trained_detector_onnx), "--bag", str(box_bag["bag"]),
                 "--out", str(tmp_path / "cli"), "--no-result-bag", "--detection-threshold", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "mAP@0.5" in printed and "detections scoring >= 0.5" in printed and "accuracy" not in printed
    report = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert report["outputs"] == {"detection_threshold": 0.5}
    assert np.isclose(report["map50"], report["scores"]["map50"])


def test_eval_streams_the_bag_by_a_memory_budget_and_keeps_no_frames(predictor, box_bag, tmp_path, monkeypatch):
    """`dann-ros eval` reads the bag through a frame store (a temporary one without a cache folder,
    deleted afterwards) and runs it as many frames a batch as its memory budget pays for: a smaller
    budget gives the same report in smaller batches."""
    import tempfile

    from dann_ros.data.frame_store import frames_per_batch, runtime_frame_bytes

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    batches: list[int] = []
    detect = predictor.detect_prepared
    monkeypatch.setattr(predictor, "detect_prepared", lambda images, *a, **k: batches.append(len(images)) or
                        detect(images, *a, **k))
    reference = evaluate_detection_bag(predictor, box_bag["bag"], box_bag["labels"])
    assert batches == [box_bag["n"]]  # 24 small frames: one batch, as before
    batches.clear()
    budget = 3 * runtime_frame_bytes(predictor.preprocess.input_shape) / 2**20
    small = evaluate_detection_bag(predictor, box_bag["bag"], box_bag["labels"], memory_mb=budget)
    assert frames_per_batch(runtime_frame_bytes(predictor.preprocess.input_shape), budget, 64) == 3
    assert max(batches) == 3 and sum(batches) == box_bag["n"]
    assert (small.map50, small.map, small.n_images) == (reference.map50, reference.map, reference.n_images)
    assert not list((tmp_path / "tmp").iterdir()), "the temporary frame store is deleted"
    kept = evaluate_detection_bag(predictor, box_bag["bag"], box_bag["labels"], cache_dir=tmp_path / "cache")
    assert kept.map50 == reference.map50 and len(list((tmp_path / "cache").glob("bag-*.frames"))) == 1
