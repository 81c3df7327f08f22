"""Fixtures of the export tests: the tiny classifier exported with FP16 weights and compute."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_fp16_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    from dann_ros.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx_fp16") / "model_fp16.onnx"
    export_onnx(tiny_checkpoint, out, fp16=True)
    return out
