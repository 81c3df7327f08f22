"""The tasks dann_ros knows, keyed by name like CenterNet's factories: the one task registry.

Per task a TaskSpec: the facts every layer shares (label payload, headline metric, what the node
publishes, the deployed graph's outputs) and its capabilities, which code outside the registry asks
instead of comparing task names. Each layer above data keeps its per-task pieces in one
:class:`TaskRegistry` (``TASKS`` in model/tasks.py, train/tasks, export/parity.py, runtime/tasks.py,
ros/outputs.py, evaluation/tasks) under the same names; a new task is one TaskSpec here plus one
entry in each (test/test_task_registry.py fails on a missing one).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# the layers above data, in import order (test/test_layers.py): each keeps one TaskRegistry
LAYERS = ("model", "train", "export", "runtime", "ros", "evaluation")
REGISTRIES: dict[str, TaskRegistry] = {}  # layer -> its registry, filled as the layers are imported
LABEL_PAYLOADS = ("label", "boxes")  # per frame of a label file: one class name, or a list of boxes


@dataclass(frozen=True)
class TaskSpec:
    name: str
    metric: str  # headline metric key: "accuracy" | "map50"
    metric_title: str  # how reports print it
    metric_detail: str  # what it is, for the reports
    output_msgtype: str  # what the node publishes (on the ros layer's entry's topic, ros/names.py)
    outputs: tuple[str, ...]  # the deployed graph's task outputs, in order (model/deploy.py, ONNX, TensorRT)
    label_payload: str  # what a label file holds per frame (LABEL_PAYLOADS)
    class_scores_per_image: bool  # the "scores" output is one class distribution per image: IM/SND
    #                               selection, CDAN, entropy, MCC and whole-frame labels apply
    source_crops: bool  # a Replicator source yields one labelled crop per box (unless frame labels are given)

    @property
    def has_boxes(self) -> bool:
        """Labels and predictions are boxes: box augmentation and box-stability selection apply."""
        return self.label_payload == "boxes"

    def __post_init__(self) -> None:
        if self.label_payload not in LABEL_PAYLOADS:
            raise ValueError(f"task {self.name}: label_payload {self.label_payload!r} is not one of {LABEL_PAYLOADS} "
                             "(the payloads data/labels.py reads)")

    def metric_key(self, split: str) -> str:
        """``target`` -> ``target_map50``: the key training history and metrics.json use."""
        return f"{split}_{self.metric}"

    def format_metric(self, value: float | None) -> str:
        return f"{self.metric_title} {'-' if value is None or value != value else f'{100 * value:.2f}%'}"


TASK_SPECS: dict[str, TaskSpec] = {
    "classification": TaskSpec(
        "classification", "accuracy", "accuracy", "top-1 accuracy on labelled frames",
        "vision_msgs/msg/Classification", ("scores",), label_payload="label",
        class_scores_per_image=True, source_crops=True),
    "detection": TaskSpec(
        "detection", "map50", "mAP@0.5", "COCO-style mean average precision at IoU 0.5",
        "vision_msgs/msg/Detection2DArray", ("boxes", "scores", "classes"), label_payload="boxes",
        class_scores_per_image=False, source_crops=False),
}


def task_spec(name: str) -> TaskSpec:
    try:
        return TASK_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; dann_ros supports {', '.join(TASK_SPECS)}") from None


class TaskRegistry(Mapping[str, Any]):
    """One layer's entries, keyed by task name; every entry of a layer has that layer's one shape.

    An entry is the object itself or a ``"module:attribute"`` string, imported on first lookup (a
    registry that must not import torch, or whose entries import the module that holds it)."""

    def __init__(self, layer: str, entries: dict[str, Any]) -> None:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; the registry's layers are {', '.join(LAYERS)}")
        self.layer = layer
        self._entries = dict(entries)
        REGISTRIES[layer] = self

    def __getitem__(self, name: str) -> Any:
        if name not in self._entries:
            task_spec(name)  # unknown task: an error naming the supported ones
            raise ValueError(f"task {name!r} has no {self.layer} entry; {self.layer} supports {', '.join(self)}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, attribute = entry.split(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, name: str, entry: Any) -> None:
        """Add task ``name``'s entry (a task defined outside dann_ros: a plugin, a test)."""
        self._entries[name] = entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)


def missing_entries() -> list[str]:
    """``task/layer`` for each registered task without an entry in a layer's registry (or a layer without
    one); only the layers imported so far are seen."""
    return [f"{name}/{layer}" for layer in LAYERS for name in TASK_SPECS
            if layer not in REGISTRIES or name not in REGISTRIES[layer]]
