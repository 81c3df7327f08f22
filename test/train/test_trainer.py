"""Real (small) training runs: resume after a kill, NaN handling, selection, metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dann_ros.typed_config import to_dict
from dann_ros.train import checkpoint
from dann_ros.train.trainer import Trainer, TrainingDiverged, train
from test.train.conftest import tiny_config


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(path)["model"]


def test_dann_run_writes_selected_model_and_metrics(tiny_domains, tmp_path):
    cfg = tiny_config(tiny_domains, tmp_path / "run")
    result = train(cfg, show_progress=False)
    out = tmp_path / "run"
    assert (out / "model.pt").is_file() and (out / "last.pt").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "dann" and metrics["selection"] == "im"
    assert [h["step"] for h in metrics["history"]] == [4, 8, 12]
    for h in metrics["history"]:
        assert 0.0 <= h["target_accuracy"] <= 1.0 and 0.0 <= h["domain_accuracy"] <= 1.0
        assert "im" in h and "snd" in h
    assert metrics["selected"]["im"] == max(h["im"] for h in metrics["history"])
    assert metrics["oracle"]["target_accuracy"] == max(h["target_accuracy"] for h in metrics["history"])
    assert isinstance(metrics["proxy_a_distance"], float)  # computed (its values: test/train/test_metrics.py)
    assert result["source_images_per_second"] > 0
    assert any((out / "tensorboard").iterdir())
    selected = out / "checkpoints" / f"step_{metrics['selected']['step']:06d}.pt"
    for k, v in _weights(out / "model.pt").items():
        assert torch.equal(v, _weights(selected)[k])


def test_resume_after_stop_gives_the_same_weights(tiny_domains, tmp_path):
    full = tiny_config(tiny_domains, tmp_path / "full")
    train(full, show_progress=False)
    parted = tiny_config(tiny_domains, tmp_path / "parted")
    assert Trainer(parted, show_progress=False).run(stop_after=6) is None  # "killed" after step 6
    assert checkpoint.load(tmp_path / "parted" / "last.pt")["step"] == 6
    resumed = Trainer(parted, show_progress=False)
    assert resumed.step == 6
    resumed.run()
    a, b = _weights(tmp_path / "full" / "checkpoints" / "step_000012.pt"), \
        _weights(tmp_path / "parted" / "checkpoints" / "step_000012.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    history_a = json.loads((tmp_path / "full" / "metrics.json").read_text())["history"]
    history_b = json.loads((tmp_path / "parted" / "metrics.json").read_text())["history"]
    assert history_a == history_b


def test_resume_after_sigkill(tiny_domains, tmp_path):
    """A real kill -9 in the middle of a streamed run (2 DataLoader workers alive); it resumes from
    last.pt to the weights of a straight in-RAM run."""
    cfg = tiny_config(tiny_domains, tmp_path / "killed", **{"train.steps": 40, "train.eval_every": 20,
                                                             "train.checkpoint_every": 5, "train.data": "stream",
                                                             "train.workers": 2})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "dann_ros.cli", "train", "--config", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 600  # start-up, the first decode and 10 steps on a loaded 2-core CI machine
    while not (last.exists() and checkpoint.load(last)["step"] >= 10):
        assert time.time() < deadline, "no checkpoint at step 10 after 600 s"
        time.sleep(0.05)
        assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint.load(last)["step"]
    assert 10 <= killed_at < 40
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    reference = tiny_config(tiny_domains, tmp_path / "reference", **{"train.steps": 40, "train.eval_every": 20,
                                                                     "train.checkpoint_every": 5})
    train(reference, show_progress=False)
    a = _weights(tmp_path / "killed" / "checkpoints" / "step_000040.pt")
    b = _weights(tmp_path / "reference" / "checkpoints" / "step_000040.pt")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_resume_refuses_a_different_config(tiny_domains, tmp_path):
    Trainer(tiny_config(tiny_domains, tmp_path / "r"), show_progress=False).run(stop_after=2)
    with pytest.raises(RuntimeError, match="different configuration"):
        Trainer(tiny_config(tiny_domains, tmp_path / "r", **{"optim.lr": 0.5}), show_progress=False)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tiny_domains, tmp_path):
    cfg = tiny_config(tiny_domains, tmp_path / "nan", **{"train.steps": 8})
    trainer = Trainer(cfg, show_progress=False)
    trainer.run(stop_after=4)
    good = checkpoint.load(tmp_path / "nan" / "last.pt")
    trainer = Trainer(cfg, show_progress=False)
    with torch.no_grad():
        trainer.model.head[-1].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="step 4.*last good checkpoint"):
        trainer.run()
    kept = checkpoint.load(tmp_path / "nan" / "last.pt")
    assert kept["step"] == good["step"] == 4
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_source_only_trains_no_discriminator(tiny_domains, tmp_path):
    cfg = tiny_config(tiny_domains, tmp_path / "so", **{"adaptation.method": "none"})
    result = train(cfg, show_progress=False)
    assert result["method"] == "none"
    assert all("domain_accuracy" not in h for h in result["history"])
    assert checkpoint.load(tmp_path / "so" / "model.pt")["domain"] is None


def test_checkpoints_load_without_unpickling(tiny_domains, tmp_path):
    Trainer(tiny_config(tiny_domains, tmp_path / "w"), show_progress=False).run(stop_after=2)
    for path in (tmp_path / "w").rglob("*.pt"):
        torch.load(path, weights_only=True)  # raises on anything but tensors and plain data


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="model.pt"):
        checkpoint.load(bad)


def test_streamed_run_with_workers_resumes_exactly_and_matches_the_in_ram_run(tiny_domains, tmp_path):
    """train.data stream with 2 DataLoader workers and epoch sampling: stopped after step 6 (as a kill
    would) and resumed by a new Trainer, it ends on the weights of a straight in-RAM run, bit for bit:
    where the frames live and who assembles the batches change nothing."""
    epoch = {"train.sampling": "epoch", "augment.camera": True}
    in_ram = tiny_config(tiny_domains, tmp_path / "ram", **epoch, **{"train.data": "ram"})
    train(in_ram, show_progress=False)
    streamed = tiny_config(tiny_domains, tmp_path / "stream", **epoch, **{"train.data": "stream", "train.workers": 2})
    first = Trainer(streamed, show_progress=False)
    assert not first.data.in_ram and first.data.source.store.__class__.__name__ == "FrameStore"
    assert first.run(stop_after=6) is None
    resumed = Trainer(streamed, show_progress=False)
    assert resumed.step == 6
    resumed.run()
    a, b = _weights(tmp_path / "ram" / "checkpoints" / "step_000012.pt"), \
        _weights(tmp_path / "stream" / "checkpoints" / "step_000012.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    history = [json.loads((tmp_path / run / "metrics.json").read_text())["history"] for run in ("ram", "stream")]
    assert history[0] == history[1]


def test_data_auto_streams_above_the_ram_limit(tiny_domains, tmp_path):
    from dann_ros.train.data import load_train_data

    small = load_train_data(tiny_config(tiny_domains, tmp_path / "a"))
    assert small.in_ram and small.source.store.__class__.__name__ == "MemoryStore"
    large = load_train_data(tiny_config(tiny_domains, tmp_path / "b", **{"train.ram_limit_mb": 0}))
    assert not large.in_ram and large.source.store.__class__.__name__ == "FrameStore"
    np.testing.assert_array_equal(small.source.read(np.arange(5)), large.source.read(np.arange(5)))


def test_selection_picks_from_the_self_training_stage_only():
    from dann_ros.train.trainer import final_stage

    hist = [{"step": s, "source_val_map50": v} for s, v in ((200, 0.70), (400, 0.76), (600, 0.74), (800, 0.75))]
    assert [h["step"] for h in final_stage(hist, 0)] == [200, 400, 600, 800]  # no self-training: all of them
    stage = final_stage(hist, 500)  # self-training from step 500: the better source fit at 400 is not eligible
    assert [h["step"] for h in stage] == [600, 800]
    assert max(stage, key=lambda h: h["source_val_map50"])["step"] == 800
    assert final_stage(hist, 900) == hist[-1:]  # never empty: the last evaluation is always a candidate
