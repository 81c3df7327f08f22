"""scripts/check_report.sh: renders a report in headless Chromium and fails on console errors.
The reports themselves are checked with it in test_eval_bag.py, test_report.py and test_replay.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_report.sh"


def have_chromium() -> bool:
    return any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome"))


def need_chromium() -> None:
    if not have_chromium():
        pytest.skip("chromium not installed (apt-get install -y chromium)")


def check(html: Path, shot: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(html), str(shot)], capture_output=True, text=True, timeout=180)


def test_check_script_catches_console_errors(tmp_path):
    need_chromium()
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); nope();</script></body></html>")
    proc = check(bad, tmp_path / "bad.png")
    assert proc.returncode == 1 and "boom" in proc.stderr and "nope is not defined" in proc.stderr


def test_missing_report_is_an_error(tmp_path):
    proc = check(tmp_path / "missing.html", tmp_path / "x.png")
    assert proc.returncode == 1 and "not found" in proc.stderr
