"""A checkpoint written before adaptation's keys were nested stores its training config with the flat
keys: export still reads it (at the new places, with a warning naming the checkpoint) and exports."""

from __future__ import annotations

import json

import pytest

from dann_ros.export.checkpoint_model import stored_train_config
from dann_ros.export.onnx_export import export_onnx
from dann_ros.train.checkpoint import load, save_atomic
from dann_ros.train.config import TrainConfig
from dann_ros.typed_config import DeprecatedKeyWarning, from_dict, to_dict

OLD_ADAPTATION = {"method": "none", "lambda_max": 0.5, "weight": 2.0, "adversary": "reversal",
                  "mcc_weight": 0.0, "pseudo_label_weight": 0.0, "pseudo_label_ema": 0.98}


@pytest.fixture
def old_style_checkpoint(tiny_checkpoint, tmp_path):
    data = load(tiny_checkpoint)
    cfg = to_dict(from_dict(TrainConfig, {"source": {"replicator": str(tmp_path / "renders")},
                                          "selection": "source_val", "adaptation": {"method": "none"}}))
    cfg["adaptation"] = OLD_ADAPTATION
    data["train_config"] = json.dumps(cfg)
    save_atomic(data, tmp_path / "old_model.pt")
    return tmp_path / "old_model.pt"


def test_stored_flat_train_config_loads_at_the_new_places(old_style_checkpoint):
    with pytest.warns(DeprecatedKeyWarning, match=r"old_model\.pt: .*adaptation\.pseudo_label_ema -> "
                                                  r"adaptation\.self_training\.ema"):
        cfg = stored_train_config(load(old_style_checkpoint), old_style_checkpoint)
    a = cfg.adaptation
    assert a.method == "none" and a.adversary.lambda_max == 0.5 and a.adversary.weight == 2.0
    assert a.self_training.ema == 0.98 and a.adversary.objective == "reversal"


def test_export_reads_a_checkpoint_with_flat_adaptation_keys(old_style_checkpoint, tmp_path):
    with pytest.warns(DeprecatedKeyWarning, match="old_model.pt"):
        info, report = export_onnx(old_style_checkpoint, tmp_path / "m.onnx", feature_monitor=False)
    assert (tmp_path / "m.onnx").exists() and report.frames > 0 and info.task == "classification"
