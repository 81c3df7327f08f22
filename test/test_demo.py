"""The demo's run matrix: the baselines carry none of the target losses the DANN run opts into."""

from __future__ import annotations

from pathlib import Path

from dann_ros.demo import DEMO_CONFIG, DemoPaths, demo_configs
from dann_ros.train.config import load_train_config


def test_baselines_have_no_target_losses_and_dann_keeps_the_config_recipe(tmp_path):
    base = load_train_config(DEMO_CONFIG)
    runs = demo_configs(base, DemoPaths(tmp_path / "data", tmp_path / "runs"), seed=1, steps=None)
    so, dann, tt = runs["source_only"], runs["dann"], runs["train_on_target"]
    for cfg in (so, tt):
        a = cfg.adaptation
        assert a.method == "none" and a.mcc_weight == 0 and a.entropy_weight == 0 and not a.uses_target
    assert dann.adaptation.method == "dann" and dann.adaptation.mcc_weight == base.adaptation.mcc_weight
    assert tt.source.bag == tmp_path / "data" / "real_digits_train" and tt.source.replicator is None
    assert all(c.seed == 1 and c.train.steps == base.train.steps for c in runs.values())
    assert Path(dann.output_dir) == tmp_path / "runs" / "dann_seed1"


def test_quick_steps_override_sets_the_evaluation_period(tmp_path):
    base = load_train_config(DEMO_CONFIG)
    runs = demo_configs(base, DemoPaths(tmp_path, tmp_path), seed=0, steps=40)
    assert all(c.train.steps == 40 and c.train.eval_every == 10 for c in runs.values())
