"""Every benchmark's smoke mode runs in the suite, so a benchmark that stops working is seen at
once (``python benchmarks/eval_bag_throughput.py`` crashed unseen while the tests only parsed the
files). A benchmark without a ``--smoke`` flag yet is a reported skip, never a silent pass; one whose
smoke mode a test of its own in test/benchmarks runs (checking its figures too) is not run twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
SMOKE_FLAG = re.compile(r"""add_argument\(\s*["']--smoke["']""")

pytestmark = pytest.mark.slow


def test_there_are_benchmarks():
    assert {"eval_bag_throughput.py", "inference.py"} <= {p.name for p in BENCHMARKS}


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_smoke_mode_runs(script, tmp_path):
    if not SMOKE_FLAG.search(script.read_text(encoding="utf-8")):
        pytest.skip(f"benchmarks/{script.name} has no --smoke mode yet")
    own = [t.name for t in Path(__file__).parent.glob("test_*.py")
           if t != Path(__file__) and script.name in (text := t.read_text(encoding="utf-8")) and "--smoke" in text]
    if own:
        pytest.skip(f"benchmarks/{script.name} --smoke runs in test/benchmarks/{own[0]}")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TMPDIR=str(tmp_path),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, str(script), "--smoke"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"benchmarks/{script.name} --smoke exited {proc.returncode}:\n" \
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr and proc.stdout.strip(), proc.stdout + proc.stderr
