"""benchmarks/data_scale.py --smoke: the whole benchmark (data, decode, a detection run with evaluation,
streamed and in-RAM training, in their own processes) runs and reports what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_data_scale_smoke(tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "data_scale.py"), "--smoke", "--workers", "1",
                          "--workdir", str(tmp_path / "work"), "--json", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["preset"] == "smoke"
    build = result["build"]
    assert build["frames"] == 24 + 40 and build["records"]["source"] == [24, [3, 96, 128]]
    assert build["store_bytes"] == 64 * 3 * 96 * 128 and build["frames_per_s"] > 0
    det = result["detection"]  # the detection demo config trained and evaluated at the large set's input
    assert det["hw"] == [96, 128] and det["steps"] == 2 and det["frames"] == {"source": 24, "target": 40,
                                                                               "eval_target": 8, "target_probe": 40}
    assert set(det["metrics"]) == {"source_val_map50", "target_map50", "stability"}
    assert 0.0 <= det["proxy_a_distance"] <= 2.0  # PAD's range; NaN fails
    assert 0 < det["anon_mb"]["training"] <= det["peak_anon_mb"] < 3072 and det["anon_mb"]["evaluation"] > 0
    assert det["peak_pss_anon_mb"] > 0 and det["workers"] == 0  # in RAM at this size: no loader workers
    assert "peak anonymous memory (RssAnon, process + workers, sampled)" in run.stdout
    large = result["large"]
    assert large["path"] == "stream" and large["workers"] == 1 and large["source_images_per_s"] > 0
    assert 0 < large["total_mb"] < 4096 and large["worker_rss_mb"] > 0  # a worker process really ran
    for path in ("indexed", "ram", "stream"):  # the former batching, then the Trainer with train.data ram / stream
        (r,) = result["small"][path]
        assert r["frames"] == {"source": 120, "target": 60} and r["source_images_per_s"] > 0 and r["total_mb"] > 0
    assert result["small"]["ram"][0]["workers"] == 0 and result["small"]["stream"][0]["workers"] == 1
    assert result["small"]["stream"][0]["worker_rss_mb"] > 0  # the Trainer's loader worker really ran
    assert result["throughput_ratio"] == pytest.approx(result["small_best"]["stream"] / result["small_best"]["ram"])
    waits = result["small_data_wait_ms"]
    assert set(waits) == {"indexed", "ram", "stream"} and min(waits.values()) > 0
    assert "streamed / in-RAM throughput" in run.stdout and "peak RSS" in run.stdout
