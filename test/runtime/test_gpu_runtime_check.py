"""benchmarks/gpu_runtime_check.sh fails, naming why, where it cannot run: it never skips its way to exit 0
(issue 22, defect 9: the old script ran pytest, every TensorRT test skipped, and it exited 0)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_gpu_the_preflight_fails_and_says_why(tmp_path):
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: run the check itself (bash benchmarks/gpu_runtime_check.sh)")
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_runtime_check.sh"), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["row"] for r in result["rows"]] == ["preflight"] and result["failed"] == ["preflight"]
    detail = result["rows"][0]["detail"]
    assert "sees no CUDA GPU" in detail or "module 'torch' (pip: torch) is missing" in detail, detail
    assert "--wheels" in detail  # how to bring what is missing to a machine without network
    assert (tmp_path / "out" / "machine.txt").exists() and "preflight" in run.stdout
