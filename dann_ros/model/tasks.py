"""The model layer's entries of the task registry (dann_ros.data.tasks), and what dispatches on them.

One shape per task: ``build(cfg, num_classes, preprocess)`` makes the task model, ``deployed`` is
the graph ONNX, TensorRT and the torch backend run (model/deploy.py), ``self_training`` the task's
pseudo-label loss (model/adaptation/pseudo_label.py), ``feature_map``: the features the
discriminator sees are a map with one domain decision per location (a detector's), not one vector
per image. A task model names its task in its ``task`` attribute.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dann_ros.data.tasks import TASK_SPECS, TaskRegistry
from dann_ros.model.adaptation.pseudo_label import DetectionPseudoLabelLoss, MeanTeacher, PseudoLabelLoss
from dann_ros.model.classifier import build_classifier
from dann_ros.model.deploy import DeployedClassifier, DeployedDetector, _Deployed
from dann_ros.model.detector import build_detector


class ClassificationModel:
    build = staticmethod(build_classifier)
    deployed = DeployedClassifier
    self_training = PseudoLabelLoss
    feature_map = False


class DetectionModel:
    build = staticmethod(build_detector)
    deployed = DeployedDetector
    self_training = DetectionPseudoLabelLoss
    feature_map = True


TASKS = TaskRegistry("model", {"classification": ClassificationModel, "detection": DetectionModel})


def has_feature_map(model: object) -> bool:
    """``model`` is a task model whose features are a map (False for a feature width or another module)."""
    task = getattr(model, "task", None)
    return task in TASKS and TASKS[task].feature_map


def deploy(model: nn.Module, discriminator: nn.Module | None = None) -> _Deployed:
    """The deployed graph of a task model (it knows its task), with the monitor's discriminator if given."""
    return TASKS[model.task].deployed(model, discriminator)


def build_pseudo_label_loss(model: nn.Module, threshold: float | None, ema_decay: float,
                            mask_ratio: float = 0.0, mask_block: int = 8,
                            view: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
                            class_portion: float = 0.0, threshold_floor: float = 0.3) -> MeanTeacher:
    """The task's form of self-training for ``model`` (its ``task`` attribute); ``threshold`` None: its default."""
    task = getattr(model, "task", None)
    if task not in TASK_SPECS:
        raise ValueError(f"pseudo-label self-training supports {', '.join(TASKS)} models, not {task!r}")
    # class-balanced thresholds are detection's (TrainConfig refuses them for other tasks)
    balance = {"class_portion": class_portion, "threshold_floor": threshold_floor} if class_portion else {}
    return TASKS[task].self_training(model, threshold, ema_decay, mask_ratio, mask_block, view, **balance)


def has_class_scores_per_image(model: object) -> bool:
    """``model`` is a task model with one class distribution per image (TaskSpec.class_scores_per_image)."""
    task = getattr(model, "task", None)
    return task in TASK_SPECS and TASK_SPECS[task].class_scores_per_image
