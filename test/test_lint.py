"""The linter, as ROS 2 Python packages run ament_flake8 in their tests: ruff with the repository's
ruff.toml over the package, the tests, the benchmarks, the scripts and the launch files; any finding
fails (the message lists them, as ``ruff check`` prints them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("dann_ros", "test", "benchmarks", "scripts", "launch")


def ruff() -> str:
    here = Path(sys.executable).parent / "ruff"
    found = str(here) if here.exists() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: `.venv/bin/pip install -r requirements.txt` (it is pinned there)")
    return found


def lint(*paths: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([ruff(), "check", "--no-cache", "--output-format", "concise", *map(str, paths)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_no_lint_findings():
    result = lint(*FOLDERS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_reports_a_finding(tmp_path):
    """With the repository's configuration: an unused import, a mutable default and a 121-character line."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\n\nx = '" + "a" * 115 + "'\n\n\ndef f(seen=[]):\n    return seen\n")
    result = subprocess.run([ruff(), "check", "--no-cache", "--config", str(ROOT / "ruff.toml"),
                             "--output-format", "concise", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    for code in ("F401", "B006", "E501"):
        assert code in result.stdout, result.stdout
