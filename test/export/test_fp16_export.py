"""`dann-ros export --fp16`: half-precision graph behind fp32 I/O (TensorRT 11's FP16 route), parity-checked."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from dann_ros.export.metadata import ModelInfo
from dann_ros.export.onnx_export import ExportParityError, export_onnx
from dann_ros.export.parity import TOLERANCES, parity_frames_path
from dann_ros.runtime.backends import OnnxRuntimeBackend
from dann_ros.runtime.predictor import Predictor


def _float_initializer_types(path) -> set[int]:
    return {t.data_type for t in onnx.load(str(path)).graph.initializer
            if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) and len(t.dims) > 1}


def test_fp16_classifier_export(tiny_fp16_onnx, tiny_onnx):
    props = {p.key: p.value for p in onnx.load(str(tiny_fp16_onnx)).metadata_props}
    info = ModelInfo.from_props(props, str(tiny_fp16_onnx))
    assert info.precision == "fp16" and props["dann_ros.precision"] == "fp16"
    assert _float_initializer_types(tiny_fp16_onnx) == {onnx.TensorProto.FLOAT16}  # weights in half
    assert _float_initializer_types(tiny_onnx) == {onnx.TensorProto.FLOAT}
    graph = onnx.load(str(tiny_fp16_onnx)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # the runtime contract holds
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in graph.output)

    frames = np.random.default_rng(4).integers(0, 256, (16, 3, 28, 28)).astype(np.float32)
    half = OnnxRuntimeBackend(tiny_fp16_onnx, "cpu").run(frames)
    full = OnnxRuntimeBackend(tiny_onnx, "cpu").run(frames)
    assert np.abs(half["scores"] - full["scores"]).max() <= TOLERANCES["fp16"].max_abs_diff
    assert (half["scores"].argmax(1) == full["scores"].argmax(1)).mean() >= 0.9
    with np.load(parity_frames_path(tiny_fp16_onnx)) as saved:  # kept for the engine check on the robot
        assert saved["frames"].dtype == np.uint8 and saved["frames"].shape[1:] == (3, 28, 28)


def test_fp16_detector_parity(tiny_detector_checkpoint, tiny_detector_onnx, tmp_path):
    """The detector in FP16 against PyTorch fp32 by the export's rules, and against the fp32 ONNX."""
    out = tmp_path / "det_fp16.onnx"
    info, parity = export_onnx(tiny_detector_checkpoint, out, fp16=True)
    assert info.precision == "fp16" and info.output_names == ["boxes", "scores", "classes", "domain"]
    assert parity.top1_agreement >= 0.995 and parity.max_box_diff <= TOLERANCES["fp16"].box_px
    assert parity.max_abs_diff <= TOLERANCES["fp16"].max_abs_diff
    image = np.random.default_rng(0).integers(0, 256, (60, 120, 3), dtype=np.uint8)
    full = Predictor.load(tiny_detector_onnx, backend="onnxruntime").detect(image, 0.0)
    half = Predictor.load(out, backend="onnxruntime").detect(image, 0.0)
    assert half.items[0].class_id == full.items[0].class_id
    np.testing.assert_allclose(half.items[0].box, full.items[0].box, atol=2.0)
    raw = OnnxRuntimeBackend(out, "cpu").run(np.stack([Predictor.load(out).prepare(image)[0]]).astype(np.float32))
    kept = raw["scores"][0] > 0.05
    centres = np.stack([raw["classes"][0], raw["boxes"][0, :, 0::2].mean(1), raw["boxes"][0, :, 1::2].mean(1)], 1)
    assert kept.sum() > 0 and len(np.unique(centres[kept].round(2), axis=0)) == kept.sum()  # one peak per cell


def test_fp16_export_refused_beyond_tolerance(tiny_checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportParityError, match=r"\(fp16\).*removed"):
        export_onnx(tiny_checkpoint, out, fp16=True, tolerance=-1)
    assert not list(tmp_path.iterdir())


def test_cli_export_fp16(tiny_checkpoint, tmp_path, capsys):
    from dann_ros.cli import main

    out = tmp_path / "cli16.onnx"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--fp16"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert OnnxRuntimeBackend(out).info.precision == "fp16"
