"""Adaptation does what it claims on a real (tiny) domain pair, and the multi-process path works."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from dann_ros.typed_config import to_dict
from dann_ros.train.trainer import train
from test.train.conftest import tiny_config

STEPS = {"train.steps": 60, "train.eval_every": 20, "train.checkpoint_every": 20, "train.batch_size": 32,
         "optim.optimizer": "adam", "optim.lr": 2e-3}


def test_discriminator_accuracy_moves_toward_chance(tiny_domains, tmp_path):
    """Same run twice: with the reversed gradient (DANN) and without it (lambda 0, the
    discriminator still trains). Only the reversal should keep the discriminator near chance."""
    dann = train(tiny_config(tiny_domains, tmp_path / "dann", **STEPS), show_progress=False)
    no_reversal = {"adaptation.adversary.lambda_max": 0.0}
    control = train(tiny_config(tiny_domains, tmp_path / "control", **STEPS, **no_reversal), show_progress=False)
    acc_dann = [h["domain_accuracy"] for h in dann["history"]]
    acc_control = [h["domain_accuracy"] for h in control["history"]]
    print(f"discriminator accuracy DANN {acc_dann}, control {acc_control}; PAD DANN "
          f"{dann['proxy_a_distance']:.3f}, control {control['proxy_a_distance']:.3f}")
    assert acc_control[-1] > 0.6 and acc_control[-1] > acc_control[0]  # the domains are separable
    assert abs(acc_dann[-1] - 0.5) < abs(acc_control[-1] - 0.5)
    # (the proxy A-distance needs more data than this fixture holds; test/train/test_metrics.py tests it)


def test_two_process_torchrun_gloo(tiny_domains, tmp_path):
    cfg = tiny_config(tiny_domains, tmp_path / "ddp", **{"train.steps": 6, "train.eval_every": 3})
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "dann_ros.cli", "train", "--config", str(path)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    # each of the 2 processes trains on its own batch_size source images per step
    assert metrics["source_images_per_second"] > 0
    assert [h["step"] for h in metrics["history"]] == [3, 6]
    assert (tmp_path / "ddp" / "model.pt").is_file()
