"""The tasks dann_ros knows, keyed by name like CenterNet's factories: the facts every layer shares.

Per task: the label file kind, its headline metric (the key training history, eval, eval-bag and
replay use, and how to print it), and what the node publishes. The per-layer pieces are
registered under the same names where they belong: ros/outputs.py (``handler_for``: infer ->
vision_msgs), evaluation/tasks (scoring, figures, HTML, replay's parser). Everything that used
to be ``if task == "detection"`` asks :func:`task_spec` instead, so a new task is one entry here
plus one class per layer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    metric: str  # headline metric key: "accuracy" | "map50"
    metric_title: str  # how reports print it
    metric_detail: str  # what it is, for the reports
    output_name: str  # the node's output topic, relative to the camera namespace
    output_msgtype: str  # what the node publishes there
    outputs: tuple[str, ...]  # the deployed graph's task outputs, in order (model/deploy.py, ONNX, TensorRT)
    image_scores: bool  # one class distribution per image: IM/SND selection, CDAN, entropy, MCC and
    #                     whole-frame labels apply

    def metric_key(self, split: str) -> str:
        """``target`` -> ``target_map50``: the key training history and metrics.json use."""
        return f"{split}_{self.metric}"

    def format_metric(self, value: float | None) -> str:
        return f"{self.metric_title} {'-' if value is None or value != value else f'{100 * value:.2f}%'}"


TASK_SPECS: dict[str, TaskSpec] = {
    "classification": TaskSpec("classification", "accuracy", "accuracy", "top-1 accuracy on labelled frames",
                               "classification", "vision_msgs/msg/Classification", ("scores",), True),
    "detection": TaskSpec("detection", "map50", "mAP@0.5", "COCO-style mean average precision at IoU 0.5",
                          "detections", "vision_msgs/msg/Detection2DArray", ("boxes", "scores", "classes"), False),
}


def task_spec(name: str) -> TaskSpec:
    try:
        return TASK_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; dann_ros supports {', '.join(TASK_SPECS)}") from None
