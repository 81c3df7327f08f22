"""The evaluation side of a task in three small parts, and the options they read (see __init__.py):

- a Scorer: metrics from predictions and labels (and ``dann-ros eval``'s labelled-bag evaluation);
- a Codec: predictions from the Predictor's decoded results (eval-bag), to the node's vision_msgs
  message for the result bag, and back from the node's messages (replay);
- a Section: the report's figures, HTML section and summary line.

A task registers one :class:`EvalEntry` (its three classes, each built from ``(classes, options)``);
``task_for`` binds them into an :class:`EvalTask`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dann_ros.data.labels import ResolvedLabels
from dann_ros.data.tasks import TaskSpec
from dann_ros.evaluation import html as H


@dataclass(frozen=True)
class OutputOptions:
    """What the node is configured to publish; each task reads its own field."""

    top_k: int = 5  # classification: hypotheses per Classification, best first; 0 = all classes
    detection_threshold: float = 0.3  # detection: lowest score a published detection has

    @classmethod
    def node_defaults(cls) -> OutputOptions:
        from dann_ros.ros.params import PARAMETERS

        return cls(int(PARAMETERS["top_k"][0]), float(PARAMETERS["detection_threshold"][0]))

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError(f"top_k must be 0 (all) or positive, got {self.top_k}")
        if not 0.0 <= self.detection_threshold <= 1.0:
            raise ValueError(f"detection threshold must lie within 0..1, got {self.detection_threshold}")


class FramesLike(Protocol):
    """Frames to score: aligned with the predictions, matched to labels by topic, index and stamp."""

    topics: Any
    indices: Any
    stamps_ns: Any


class TaskScores(Protocol):
    value: float  # the headline metric (TaskSpec.metric)
    n: int  # labelled frames scored

    def to_json(self) -> dict: ...


# Predictor.decode's shape: raw outputs, geometries, image sizes, score threshold -> one result per frame
Decode = Callable[..., list]


class Scorer(Protocol):
    def __init__(self, classes: tuple[str, ...], options: OutputOptions) -> None: ...

    def score(self, pred: dict, labels: ResolvedLabels, frames: FramesLike) -> tuple[TaskScores, dict]: ...

    def summary(self, pred: dict) -> dict: ...  # report.json's "predictions"

    @staticmethod
    def evaluate_labelled_bag(predictor: Any, bag: Any, labels: Any, topics: tuple[str, ...]) -> tuple[str, dict]:
        ...  # dann-ros eval: (printed table, JSON)


class Codec(Protocol):
    def __init__(self, classes: tuple[str, ...], options: OutputOptions) -> None: ...

    def options_json(self) -> dict: ...  # what the node is configured to publish

    def predictions(self, decode: Decode, frames: Any) -> dict[str, Any]: ...  # eval-bag: FrameTable.outputs, decoded

    def write(self, writer: Any, topic: str, row: int, log_ns: int, frames: Any, pred: dict) -> None: ...

    def from_messages(self, messages: Sequence[Any]) -> dict[str, Any]: ...  # replay: from the node's messages


class Section(Protocol):
    def __init__(self, classes: tuple[str, ...], options: OutputOptions) -> None: ...

    def figures(self, pred: dict, scores: TaskScores | None, label_info: dict | None) -> dict[str, dict]: ...

    def html(self, page: H.Page, report: dict, figures: dict[str, dict]) -> None: ...

    def summary_line(self, report: dict, what: str = "labelled frames") -> str: ...


@dataclass(frozen=True)
class EvalEntry:
    """A task's entry in the evaluation registry: one class per part."""

    scorer: type[Scorer]
    codec: type[Codec]
    section: type[Section]


@dataclass(frozen=True)
class EvalTask:
    """A task's three parts, built for one model's classes and the node's output options."""

    spec: TaskSpec
    classes: tuple[str, ...]
    scorer: Scorer
    codec: Codec
    section: Section


def label_info_of(labels: ResolvedLabels, match: Any) -> dict:
    """How the label file met the frames, for the report (every task's scorer)."""
    return {"path": str(labels.path), "automatic": labels.automatic, "topic": labels.file.topic,
            "matched": int(match.matched.sum()), "unmatched": int(match.unmatched),
            "matched_by_index": int(match.by_index)}
