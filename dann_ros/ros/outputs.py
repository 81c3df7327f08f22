"""Inference results -> vision_msgs, one handler per model task.

The node asks ``handler_for(info)`` for the task of the loaded model and otherwise only
talks to the handler's interface (topic, message type, infer, to_message, draw):
classifiers publish vision_msgs/Classification on ``classification``, detectors
vision_msgs/Detection2DArray on ``detections``. The handlers are this layer's entries of the
task registry (dann_ros.data.tasks: message types; topic names from dann_ros.ros.names;
dann_ros.evaluation.tasks reads the same messages back).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from dann_ros.data.preprocess import Geometry
from dann_ros.data.tasks import TaskRegistry, task_spec
from dann_ros.export.metadata import ModelInfo
from dann_ros.ros import names
from dann_ros.ros.overlay import draw_boxes, draw_lines
from dann_ros.runtime.predictor import Predictor
from dann_ros.runtime.results import Classification, Detections


class TaskOutput(Protocol):
    topic: str        # relative to the camera's namespace
    msg_type: type

    @classmethod
    def configured(cls, classes: Sequence[str], top_k: int, detection_threshold: float) -> TaskOutput: ...

    def infer(self, predictor: Predictor, batch: np.ndarray, geometries: Sequence[Geometry],
              image_sizes: Sequence[tuple[int, int]]) -> Sequence[Any]: ...

    def to_message(self, result: Any, header: Any) -> Any: ...

    def draw(self, image: np.ndarray, result: Any, geometry: Geometry) -> np.ndarray: ...


class ClassificationOutput:
    """vision_msgs/Classification: top-k ObjectHypothesis, class_id = class index as a string
    (the id LabelInfo's class_map names), best first."""

    topic = names.CLASSIFICATION

    def __init__(self, classes: Sequence[str], top_k: int = 5) -> None:
        from vision_msgs.msg import Classification as ClassificationMsg
        from vision_msgs.msg import ObjectHypothesis

        self.msg_type = ClassificationMsg
        self._hypothesis = ObjectHypothesis
        self.classes = tuple(classes)
        self.top_k = len(self.classes) if top_k <= 0 else min(top_k, len(self.classes))
        self._ids = [str(i) for i in range(len(self.classes))]

    @classmethod
    def configured(cls, classes: Sequence[str], top_k: int, detection_threshold: float) -> ClassificationOutput:
        return cls(classes, top_k)

    def infer(self, predictor: Predictor, batch: np.ndarray, geometries: Sequence[Geometry],
              image_sizes: Sequence[tuple[int, int]]) -> list[Classification]:
        return predictor.infer(batch, geometries, image_sizes)

    def to_message(self, result: Classification, header: Any):
        scores = np.asarray(result.scores)
        if self.top_k == 1:
            order = [result.class_id]
        else:
            order = np.argsort(-scores, kind="stable")[: self.top_k]
        hyp = self._hypothesis
        return self.msg_type(header=header,
                             results=[hyp(class_id=self._ids[i], score=float(scores[i])) for i in order])

    def draw(self, image: np.ndarray, result: Classification, geometry: Geometry) -> np.ndarray:
        lines = [f"{result.class_name} {result.score:.2f}"]
        if result.domain_score is not None:
            lines.append(f"P(synthetic) {result.domain_score:.2f}")
        return draw_lines(image, lines)


class DetectionOutput:
    """vision_msgs/Detection2DArray: one Detection2D per detection at or above ``threshold``, best first,
    boxes in the input image's pixels (centre + size), one hypothesis each with class_id = class index
    as a string (as for Classification; names in label_info)."""

    topic = names.DETECTIONS

    def __init__(self, classes: Sequence[str], threshold: float = 0.3) -> None:
        from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

        self.msg_type = Detection2DArray
        self._detection = Detection2D
        self._hypothesis = ObjectHypothesisWithPose
        self.classes = tuple(classes)
        self.threshold = float(threshold)
        self._ids = [str(i) for i in range(len(self.classes))]

    @classmethod
    def configured(cls, classes: Sequence[str], top_k: int, detection_threshold: float) -> DetectionOutput:
        return cls(classes, detection_threshold)

    def infer(self, predictor: Predictor, batch: np.ndarray, geometries: Sequence[Geometry],
              image_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        return predictor.infer(batch, geometries, image_sizes, self.threshold)

    def to_message(self, result: Detections, header: Any):
        detections = []
        for d in result:
            x1, y1, x2, y2 = d.box
            msg = self._detection(header=header)
            msg.bbox.center.position.x, msg.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
            msg.bbox.size_x, msg.bbox.size_y = x2 - x1, y2 - y1
            hyp = self._hypothesis()
            hyp.hypothesis.class_id, hyp.hypothesis.score = self._ids[d.class_id], d.score
            msg.results = [hyp]
            detections.append(msg)
        return self.msg_type(header=header, detections=detections)

    def draw(self, image: np.ndarray, result: Detections, geometry: Geometry) -> np.ndarray:
        draw_boxes(image, [(d.box, f"{d.class_name} {d.score:.2f}") for d in result])
        lines = [f"{len(result)} detections"]
        if result.domain_score is not None:
            lines.append(f"P(synthetic) {result.domain_score:.2f}")
        return draw_lines(image, lines)


# the ros layer's entries of the task registry (dann_ros.data.tasks): TaskOutput classes, made by
# configured(classes, top_k, detection_threshold) from the node's parameters
TASKS = TaskRegistry("ros", {"classification": ClassificationOutput, "detection": DetectionOutput})


def output_topic_name(task: str) -> str:
    """Where the node publishes task ``task``'s output, relative to the camera namespace (eval-bag's result bag
    and replay name their topics the same)."""
    return TASKS[task].topic


def handler_for(info: ModelInfo, top_k: int = 5, detection_threshold: float = 0.3) -> TaskOutput:
    if info.task not in TASKS:
        raise ValueError(f"models of task {info.task!r} are not supported by dann_node "
                         f"(it publishes {', '.join(task_spec(t).output_msgtype for t in TASKS)})")
    return TASKS[info.task].configured(info.classes, top_k, detection_threshold)


def label_info_message(classes: Sequence[str], stamp: Any = None, threshold: float = 0.0):
    """vision_msgs/LabelInfo: class index -> name, published once per camera (transient local)."""
    from vision_msgs.msg import LabelInfo, VisionClass

    if len(classes) > 65535:
        raise ValueError(f"{len(classes)} classes do not fit LabelInfo's uint16 class ids")
    msg = LabelInfo(class_map=[VisionClass(class_id=i, class_name=name) for i, name in enumerate(classes)],
                    threshold=float(threshold))
    if stamp is not None:
        msg.header.stamp = stamp
    return msg
