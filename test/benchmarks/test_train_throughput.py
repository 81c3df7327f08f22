"""benchmarks/train_throughput.py --smoke: the reference step and our Trainer.train_step both run and
the ratios and time-to-90% lines are printed (the figures themselves are not asserted: timing is noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_prints_both_ratios_and_time_to_90(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--smoke",
                           "--threads", "1", "--json", str(out)], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert "ratio demo model DANN step / reference step" in text
    assert "ratio our trainer on the reference architecture / reference step" in text
    assert "time-to-90%: reference 3500 steps" in text
    result = json.loads(out.read_text())
    assert set(result["best"]) == {"reference", "ours_demo", "ours_reference_arch", "ours_reference_arch_plain"}
    assert all(v > 0 for v in result["best"].values())
    assert result["ratio_demo"] == result["best"]["ours_demo"] / result["best"]["reference"]
    assert result["time_to_90_s"]["reference"] > 0 and result["time_to_90_s"]["ours"] > 0
