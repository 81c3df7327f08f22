"""benchmarks/inference.py --smoke: every backend this machine has is opened and timed, with and without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(args, tmp_path, env=None):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "inference.py"), "--smoke", "--threads", "1",
                           "--json", str(out), *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_smoke_with_torch(tmp_path):
    result, text = _run([], tmp_path)
    labels = {r["backend"] for r in result["rows"]}
    assert {"torch-cpu", "onnxruntime-cpu"} <= labels
    assert all(r["p50_ms"] > 0 and r["images_per_s"] > 0 for r in result["rows"])
    assert {(s["what"], s["batch"]) for s in result["ort_speedup"] if s["device"] == "cpu"} == {
        ("run", 1), ("run", 2), ("predict 640x480", 1)}
    assert "ORT speed-up" in text
    if result["gpu"] is None:  # the CUDA rows say why they are missing
        assert any("CUDA rows: skipped" in n for n in result["notes"])


def test_smoke_without_torch_on_a_detector(tiny_detector_onnx, tmp_path):
    env = {"DANN_ROS_BLOCK_TORCH": "1", "PYTHONPATH": str(ROOT / "test" / "torchless")}
    result, _ = _run(["--onnx", str(tiny_detector_onnx)], tmp_path, env)
    assert result["torch"] is None and {r["backend"] for r in result["rows"]} >= {"onnxruntime-cpu"}
    assert not any(r["backend"].startswith("torch") for r in result["rows"])
    assert any("torch rows: skipped" in n for n in result["notes"])
