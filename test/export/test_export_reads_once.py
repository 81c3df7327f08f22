"""Export reads the checkpoint once and builds its training config once, then passes them down
(the model, the feature monitor's frames and the parity frames all come from that one read)."""

from __future__ import annotations

import torch

import dann_ros.typed_config
from dann_ros.export.onnx_export import export_onnx
from dann_ros.train.config import TrainConfig


def test_export_loads_the_checkpoint_and_its_config_once(tiny_checkpoint, tmp_path, monkeypatch):
    import dann_ros.export.checkpoint_model as checkpoint_model

    loads, configs = [], []
    real_load, real_from_dict = torch.load, dann_ros.typed_config.from_dict

    def counting_load(*args, **kwargs):
        loads.append(args[0])
        return real_load(*args, **kwargs)

    def counting_from_dict(cls, *args, **kwargs):
        if cls is TrainConfig:
            configs.append(cls)
        return real_from_dict(cls, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    monkeypatch.setattr(dann_ros.typed_config, "from_dict", counting_from_dict)  # where export imported it in functions
    monkeypatch.setattr(checkpoint_model, "from_dict", counting_from_dict)
    export_onnx(tiny_checkpoint, tmp_path / "m.onnx")
    assert [str(p) for p in loads] == [str(tiny_checkpoint)]
    assert len(configs) == 1
