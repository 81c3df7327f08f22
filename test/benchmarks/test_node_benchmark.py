"""benchmarks/node.py --smoke through a real dann_node: the classifier it builds itself, and a detector
(Detection2DArray out, Predictor.infer as the baseline). Figures are checked for consistency, not speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(args, tmp_path):
    out = tmp_path / "node.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TMPDIR=str(tmp_path),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "node.py"), "--smoke", "--json", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.parametrize("which", ["tiny classifier", "tiny_detector_onnx"])
def test_node_benchmark_smoke(which, request, tmp_path):
    args = [] if which == "tiny classifier" else ["--model", str(request.getfixturevalue(which))]
    result, text = _run(args, tmp_path)
    task = "classification" if which == "tiny classifier" else "detection"
    assert result["task"] == task and (result["width"], result["height"]) == (160, 120)
    [row] = result["rows"]
    assert row["input"] == "raw" and row["published"] >= 30 and 1 <= row["outputs"] <= row["published"]
    assert row["drops"] == row["published"] - row["outputs"]
    assert row["output_hz"] == pytest.approx(row["outputs"] / row["seconds"])
    assert row["published_hz"] == pytest.approx(row["published"] / row["seconds"])
    assert row["node_over_bare"] == pytest.approx(row["output_hz"] / min(row["published_hz"], row["bare_hz"]))
    assert 0 < row["e2e_ms"]["p50"] <= row["e2e_ms"]["p90"] <= row["e2e_ms"]["p99"]
    assert "bare Predictor.infer" in text  # one task-neutral call for every task
    assert "outputs / published" in text and "load average" in text
