"""A model checkpoint (train/checkpoint.py's format) -> the deployable module and its ModelInfo:
where training's output becomes the exported model (ONNX export, the torch backend, reports)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from dann_ros.typed_config import from_dict, warnings_from
from dann_ros.data.preprocess import Preprocess
from dann_ros.data.tasks import TASK_SPECS
from dann_ros.export.metadata import ModelInfo
from dann_ros.model.builders import build_discriminator, build_model
from dann_ros.model.config import ModelConfig
from dann_ros.model.tasks import deploy
from dann_ros.train.checkpoint import CheckpointError, load


def load_model(path: str | Path):
    """A deployable model checkpoint -> (DeployedClassifier or DeployedDetector in eval mode, ModelInfo)."""
    return model_from_checkpoint(load(path), Path(path))


def model_from_checkpoint(data: dict, path: Path):
    """:func:`load_model` on a checkpoint already loaded (train/checkpoint.load): export reads the file once."""
    if data.get("kind") not in ("model", "train_state"):
        raise CheckpointError(f"{path}: field 'kind' is {data.get('kind')!r}, expected 'model'")
    if data.get("kind") == "train_state":
        raise CheckpointError(f"{path}: this is a resume state; use a model checkpoint "
                              "(model.pt or checkpoints/step_*.pt)")
    task = data.get("task")
    if task not in TASK_SPECS:
        raise CheckpointError(f"{path}: field 'task' is {task!r}, expected one of {', '.join(TASK_SPECS)}")
    try:
        preprocess = Preprocess.from_json(data["preprocess"])
        # the checkpoint holds all weights: the pretrained file of training need not exist here
        model_cfg = dataclasses.replace(from_dict(ModelConfig, json.loads(data["model_config"])),
                                        backbone_weights=None)
        classes = tuple(data["classes"])
        model = build_model(model_cfg, task, len(classes), preprocess)
        model.load_state_dict(data["model"])
        disc = None
        if data.get("domain") is not None:
            disc = build_discriminator(model_cfg, model)
            disc.load_state_dict(data["domain"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: invalid model checkpoint: {exc}") from None
    info = ModelInfo(task=task, classes=classes, preprocess=preprocess, config_digest=data["digest"],
                     version=data["version"], has_domain=disc is not None)
    return deploy(model, disc).eval(), info


def stored_train_config(data: dict, path: Path):
    """The TrainConfig a checkpoint was trained with (its ``train_config`` field), built once for all of
    export's uses; a CheckpointError naming the file where it has none or it no longer validates."""
    from dann_ros.train.config import TrainConfig

    if "train_config" not in data:
        raise CheckpointError(f"{path}: no field 'train_config' (a checkpoint from before it was stored)")
    try:
        with warnings_from(path):  # a config stored with since renamed keys: read, and say which
            return from_dict(TrainConfig, json.loads(data["train_config"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: its field 'train_config' does not validate: {exc}") from None
