"""Detection through the one trainer: data loading in network pixels, source-only and DANN runs,
checkpoint -> DeployedDetector, and `dann-ros eval` printing mAP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dann_ros.train.trainer import train
from test.train.conftest import tiny_detection_config


def test_detection_bag_boxes_map_back_to_the_label_file(tiny_detection_domains, tmp_path):
    """A labelled detection bag is its frame store (read from disk, not held in RAM) with the label
    file's boxes in each frame's network pixels: mapped back, they are the labelled ones."""
    from dann_ros.data.bags import BagSelection, load_frames
    from dann_ros.data.frame_cache import detection_bag, frame_geometry
    from dann_ros.data.frame_store import FrameStore
    from dann_ros.data.labels import LabelFile
    from dann_ros.data.preprocess import Preprocess

    pre = Preprocess(height=48, width=64, resize="letterbox")
    classes = tuple(str(i) for i in range(10))
    data = detection_bag(tiny_detection_domains["bag"], tiny_detection_domains["labels"], (), pre, classes,
                         tmp_path / "cache")
    assert isinstance(data.store, FrameStore)
    fs = load_frames(tiny_detection_domains["bag"], BagSelection(), pre.prepare)
    match = LabelFile.load(tiny_detection_domains["labels"]).match(fs)
    assert len(data) == len(fs) and sum(len(data.ragged("box_classes", i)) for i in range(len(data))) > 0
    np.testing.assert_array_equal(data.read(np.arange(len(data))), fs.images)
    for i in range(len(data)):
        assert frame_geometry(data, i) == fs.geometry(i) and fs.geometry(i).offset_y > 0  # 80 x 48: letterboxed
        np.testing.assert_allclose(fs.geometry(i).to_image(data.ragged("boxes", i)), match.boxes[i], atol=1e-3)
        np.testing.assert_array_equal(data.ragged("box_classes", i), match.box_class_ids[i])


@pytest.mark.parametrize("method", ["none", "dann"])
def test_detection_run_reports_map_and_exports(tiny_detection_domains, tmp_path, method):
    from dann_ros.model.deploy import DeployedDetector
    from dann_ros.export.checkpoint_model import load_model

    cfg = tiny_detection_config(tiny_detection_domains, tmp_path / method, **{"adaptation.method": method})
    result = train(cfg, show_progress=False)
    metrics = json.loads((tmp_path / method / "metrics.json").read_text())
    assert metrics["task"] == "detection" and metrics["method"] == method
    assert [h["step"] for h in metrics["history"]] == [3, 6]
    for h in metrics["history"]:
        assert 0.0 <= h["target_map50"] <= 1.0 and 0.0 <= h["target_map"] <= h["target_map50"] + 1e-9
        assert 0.0 <= h["source_val_map50"] <= 1.0
        assert ("domain_accuracy" in h) == (method == "dann")
    assert metrics["selected"]["source_val_map50"] == max(h["source_val_map50"] for h in metrics["history"])
    assert metrics["oracle"]["target_map50"] == max(h["target_map50"] for h in metrics["history"])
    assert result["n_eval_target"] == 24
    module, info = load_model(tmp_path / method / "model.pt")
    assert isinstance(module, DeployedDetector) and info.task == "detection"
    assert info.has_domain == (method == "dann")


def test_im_selection_is_refused_for_detection(tiny_detection_domains, tmp_path):
    with pytest.raises(ValueError, match="classification only"):
        tiny_detection_config(tiny_detection_domains, tmp_path, selection="im")


def test_cli_eval_prints_map_of_a_detection_model(tiny_detector_onnx, tiny_detection_domains, tmp_path, capsys):
    from dann_ros.cli import main

    out = tmp_path / "report.json"
    assert main(["eval", "--model", str(tiny_detector_onnx), "--bag", str(tiny_detection_domains["bag"]),
                 "--labels", str(tiny_detection_domains["labels"]), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mAP@0.5" in printed and "(24 frames" in printed
    report = json.loads(out.read_text())
    from dann_ros.evaluation.average_precision import evaluate_detection_bag
    from dann_ros.runtime.predictor import Predictor

    direct = evaluate_detection_bag(Predictor.load(tiny_detector_onnx), tiny_detection_domains["bag"],
                                    tiny_detection_domains["labels"])
    assert report["map50"] == direct.map50 and report["map"] == direct.map and report["n_images"] == 24
