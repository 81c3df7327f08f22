"""Frames for the engine parity check: a bag, an .npz, the export's model.parity.npz, else random (warned)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from dann_ros.export.parity import parity_frames_path
from dann_ros.export.tensorrt import EngineBuildError
from dann_ros.runtime.backends import OnnxRuntimeBackend
from dann_ros.runtime.tensorrt_backend import parity_frames


def test_frames_from_the_export_sidecar(tiny_onnx):
    info = OnnxRuntimeBackend(tiny_onnx).info
    frames, origin = parity_frames(tiny_onnx, info)
    assert frames.shape[1:] == info.preprocess.input_shape and 0 < len(frames) <= 32
    assert parity_frames_path(tiny_onnx).name in origin


def test_frames_from_a_bag_are_prepared_like_the_node_does(tiny_onnx, tmp_path):
    from dann_ros.data.make_bag import make_bag

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
    bag = tmp_path / "cam"
    make_bag(bag, images)
    info = OnnxRuntimeBackend(tiny_onnx).info
    frames, origin = parity_frames(tiny_onnx, info, bag)
    assert len(frames) == 5 and "5 frames of" in origin
    np.testing.assert_array_equal(frames[2], info.preprocess.prepare(images[2])[0])


def test_missing_sidecar_falls_back_to_random_frames_with_a_warning(tiny_onnx, tmp_path, caplog):
    onnx = tmp_path / "bare.onnx"
    shutil.copy(tiny_onnx, onnx)
    caplog.set_level(logging.WARNING, logger="dann_ros.runtime.tensorrt_backend")
    frames, origin = parity_frames(onnx, OnnxRuntimeBackend(onnx).info)
    assert origin == "random frames" and len(frames) > 0 and "--frames" in caplog.text


def test_npz_of_the_wrong_shape_is_refused(tiny_onnx, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, frames=np.zeros((2, 3, 10, 10), np.uint8))
    with pytest.raises(EngineBuildError, match="bad.npz.*shape"):
        parity_frames(tiny_onnx, OnnxRuntimeBackend(tiny_onnx).info, bad)
