"""Evaluation's entries of the task registry (dann_ros.data.tasks), one EvalTask class per task (like
ros/outputs.py's TaskOutput one layer down).

A task turns what a model produced on a bag into predictions, and predictions into a score,
figures, an HTML section and a summary line; it also writes the node's message for a frame
into a result bag and reads the node's messages back in replay. eval-bag and replay only talk
to this interface: ``task_for(name, classes, options)``.

Predictions are one dict layout per task, whichever way they were made (the model's outputs in
eval-bag, the node's messages in replay), so scoring, figures and pages are written once.
"""

from __future__ import annotations

from collections.abc import Sequence

from dann_ros.data.tasks import TaskRegistry
from dann_ros.evaluation.tasks.base import EvalTask, FramesLike, OutputOptions, TaskScores

# module strings: the entries import base.py, and a task's pages and plots load only when it is evaluated
TASKS = TaskRegistry("evaluation", {"classification": "dann_ros.evaluation.tasks.classification:ClassificationTask",
                                    "detection": "dann_ros.evaluation.tasks.detection:DetectionTask"})


def task_for(name: str, classes: Sequence[str], options: OutputOptions | None = None) -> EvalTask:
    """The evaluation side of task ``name`` for a model with ``classes``."""
    return TASKS[name](tuple(classes), options or OutputOptions.node_defaults())


__all__ = ["TASKS", "EvalTask", "FramesLike", "OutputOptions", "TaskScores", "task_for"]
