"""The post-hoc shift monitor fitted at export: a feature_shift output in the ONNX graph, read by the
Predictor (no torch on the robot), 0 on frames like the adaptation target and high on shifted ones."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from dann_ros.export.checkpoint_model import load_model
from dann_ros.export.monitor_fit import REPORT_KEY
from dann_ros.export.onnx_export import export_onnx
from dann_ros.runtime.predictor import Predictor
from test.conftest import monitor_scenes


@pytest.mark.parametrize("which", ["tiny_detector_checkpoint", "tiny_checkpoint"])
def test_export_fits_the_monitor_and_the_predictor_reads_it(which, request, tmp_path):
    checkpoint = request.getfixturevalue(which)
    _, info0 = load_model(checkpoint)
    shape = info0.preprocess.input_shape
    target, source = monitor_scenes(160, shape, 0), np.random.default_rng(9).integers(0, 256, (40, *shape), np.uint8)
    out = tmp_path / "m.onnx"
    info, parity = export_onnx(checkpoint, out, monitor_frames=(target, source))
    assert info.has_feature_monitor and info.output_names[-1] == "feature_shift"
    assert parity.max_abs_diff <= 1e-3  # the monitor output passes the same parity gate
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["dann_ros.outputs"]) == info.output_names
    report = json.loads(props[REPORT_KEY])
    assert report["target_frames"] == 160 and report["source_frames"] == 40
    assert report["target_holdout_mean_score"] < 0.1 and report["source_mean_score"] > 0.9

    predictor = Predictor.load(out, backend="onnxruntime")
    assert predictor.info.has_feature_monitor

    def scores(frames):
        if predictor.info.task == "detection":
            return np.array([d.shift_score for d in predictor.detect_prepared(frames, [_identity()] * len(frames))])
        return np.array([c.shift_score for c in predictor.classify_prepared(frames)])

    same = scores(monitor_scenes(60, shape, 1))
    noisy = scores(monitor_scenes(60, shape, 1, noise=40.0))
    dark = scores(monitor_scenes(60, shape, 1, gain=0.25))
    assert same.mean() < 0.15
    assert noisy.mean() > 0.5 and dark.mean() > 0.5


def _identity():
    from dann_ros.data.preprocess import Geometry

    return Geometry(1.0, 1.0, 0.0, 0.0)


def test_without_frames_or_when_disabled_there_is_no_monitor(tiny_detector_checkpoint, tmp_path):
    info, _ = export_onnx(tiny_detector_checkpoint, tmp_path / "a.onnx")  # a test checkpoint names no data
    assert not info.has_feature_monitor and "feature_shift" not in info.output_names
    _, info0 = load_model(tiny_detector_checkpoint)
    frames = monitor_scenes(40, info0.preprocess.input_shape, 0)
    info, _ = export_onnx(tiny_detector_checkpoint, tmp_path / "b.onnx", feature_monitor=False,
                          monitor_frames=(frames, None))
    assert not info.has_feature_monitor
    result = Predictor.load(tmp_path / "b.onnx", backend="onnxruntime").detect_prepared(frames[:1], [_identity()])
    assert result[0].shift_score is None
