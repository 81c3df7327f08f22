"""Evaluation's entries of the task registry (dann_ros.data.tasks): per task one EvalEntry of three
parts (base.py), like ros/outputs.py's TaskOutput one layer down.

The codec turns the Predictor's decoded results into predictions (eval-bag), writes the node's
message for a frame into a result bag and reads the node's messages back (replay); the scorer
turns predictions and labels into a score; the section draws figures, an HTML section and a
summary line. eval-bag and replay only talk to ``task_for(name, classes, options)``'s EvalTask.

Predictions are one dict layout per task, whichever way they were made (the model's outputs in
eval-bag, the node's messages in replay), so scoring, figures and pages are written once.
"""

from __future__ import annotations

from collections.abc import Sequence

from dann_ros.data.tasks import TaskRegistry, task_spec
from dann_ros.evaluation.tasks.base import (Codec, EvalEntry, EvalTask, FramesLike, OutputOptions, Scorer, Section,
                                            TaskScores)

# module strings: the entries import base.py, and a task's pages and plots load only when it is evaluated
TASKS = TaskRegistry("evaluation", {"classification": "dann_ros.evaluation.tasks.classification:ENTRY",
                                    "detection": "dann_ros.evaluation.tasks.detection:ENTRY"})


def task_for(name: str, classes: Sequence[str], options: OutputOptions | None = None) -> EvalTask:
    """The evaluation side of task ``name`` for a model with ``classes``."""
    entry: EvalEntry = TASKS[name]
    classes, options = tuple(classes), options or OutputOptions.node_defaults()
    return EvalTask(task_spec(name), classes, entry.scorer(classes, options), entry.codec(classes, options),
                    entry.section(classes, options))


__all__ = ["TASKS", "Codec", "EvalEntry", "EvalTask", "FramesLike", "OutputOptions", "Scorer", "Section", "TaskScores",
           "task_for"]
