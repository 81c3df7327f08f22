"""The eval-bag HTML report renders in headless Chromium without console errors (scripts/check_report.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dann_ros.evaluation.eval_bag import evaluate_bag
from dann_ros.runtime.predictor import Predictor

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_report.sh"


def check(html: Path, shot: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(html), str(shot)], capture_output=True, text=True, timeout=180)


def test_eval_bag_report_renders_without_console_errors(labelled_bag, tiny_onnx, tmp_path):
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    predictor = Predictor.load(tiny_onnx, backend="onnxruntime", device="cpu")
    evaluate_bag(predictor, labelled_bag["bag"], out_dir=tmp_path / "out", result_bag=False)
    shot = tmp_path / "shot.png"
    proc = check(tmp_path / "out" / "report.html", shot)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_script_catches_console_errors(tmp_path):
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); nope();</script></body></html>")
    proc = check(bad, tmp_path / "bad.png")
    assert proc.returncode == 1 and "boom" in proc.stderr and "nope is not defined" in proc.stderr
