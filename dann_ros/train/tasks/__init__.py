"""Training's entries of the task registry (dann_ros.data.tasks): one TrainTask class per task.

Per task, the training-side pieces the one trainer asks for instead of ``if detection``: where the
labelled source records come from (a frame store with a label column, or with ragged box columns),
the labelled eval-target frames, a batch's training targets (class ids, or the detector's encoded
maps), and one evaluation -> the metric dict under the spec's keys (``source_val_accuracy`` /
``source_val_map50`` ...: metrics.json's keys). A new task is one module here, named in TASKS below.

Importing this package does not import torch (the training config validates against it on the robot).
"""

from __future__ import annotations

from dann_ros.data.tasks import TaskRegistry, task_spec
from dann_ros.train.tasks.base import TrainTask

# module strings: importing the registry imports no torch, and the entries import base.py, not this
TASKS = TaskRegistry("train", {"classification": "dann_ros.train.tasks.classification:ClassificationTraining",
                               "detection": "dann_ros.train.tasks.detection:DetectionTraining"})


def train_task(name: str) -> TrainTask:
    """A new instance of task ``name``'s training entry."""
    task = TASKS[name]()
    task.spec = task_spec(name)
    return task


__all__ = ["TASKS", "TrainTask", "train_task"]
