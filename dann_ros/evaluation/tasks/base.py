"""The evaluation task interface and the options it reads (the evaluation layer's entries of the task
registry implement EvalTask; see __init__.py)."""

from __future__ import annotations

from collections.abc import Sequence
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


class EvalTask(Protocol):
    spec: TaskSpec
    classes: tuple[str, ...]

    def options_json(self) -> dict: ...

    @staticmethod
    def evaluate_labelled_bag(predictor: Any, bag: Any, labels: Any, topics: tuple[str, ...]) -> tuple[str, dict]:
        ...  # dann-ros eval: (printed table, JSON)

    def predictions(self, frames: Any) -> dict[str, Any]: ...  # eval-bag: from FrameTable.outputs

    def write(self, writer: Any, topic: str, row: int, log_ns: int, frames: Any, pred: dict) -> None: ...

    def from_messages(self, messages: Sequence[Any]) -> dict[str, Any]: ...  # replay: from the node's messages

    def score(self, pred: dict, labels: ResolvedLabels, frames: FramesLike) -> tuple[TaskScores, dict]: ...

    def summary(self, pred: dict) -> dict: ...

    def figures(self, pred: dict, scores: TaskScores | None, label_info: dict | None) -> dict[str, dict]: ...

    def html(self, page: H.Page, report: dict, figures: dict[str, dict]) -> None: ...

    def summary_line(self, report: dict, what: str = "labelled frames") -> str: ...
