"""The runtime's entries of the task registry (dann_ros.data.tasks): a graph's raw outputs -> typed results.

One shape per task: ``decode(outputs, classes, geometries, image_sizes, score_threshold)`` turns one
batch's outputs (name -> array, ModelInfo.output_names) into one result per frame; a task ignores
what it does not use (a classifier: geometries, sizes and the threshold); ``Predictor.infer`` calls
it. ``heatmap_head``: the loader checks the class count of the graph's heatmap against the metadata.
No torch here: the robot runs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dann_ros.data.preprocess import Geometry
from dann_ros.data.tasks import TaskRegistry
from dann_ros.runtime.results import Classification, Detection, Detections


def _optional(values: np.ndarray | None, i: int) -> float | None:
    return None if values is None else float(values[i])


class ClassificationRuntime:
    heatmap_head = False
    @staticmethod
    def decode(outputs: dict[str, np.ndarray], classes: Sequence[str], geometries: Sequence[Geometry] | None = None,
               image_sizes: Sequence[tuple[int, int]] | None = None,
               score_threshold: float = 0.3) -> list[Classification]:
        scores = outputs["scores"]
        domain, shift = outputs.get("domain"), outputs.get("feature_shift")
        ids = scores.argmax(1)
        return [Classification(int(c), classes[int(c)], float(s[c]), s, _optional(domain, i), _optional(shift, i))
                for i, (c, s) in enumerate(zip(ids, scores))]


class DetectionRuntime:
    heatmap_head = True  # the graph's class count can be read off its heatmap (onnxruntime_backend.py)
    @staticmethod
    def decode(outputs: dict[str, np.ndarray], classes: Sequence[str], geometries: Sequence[Geometry],
               image_sizes: Sequence[tuple[int, int]] | None = None, score_threshold: float = 0.3) -> list[Detections]:
        """Detections in input-image pixels: the letterbox (or any resize) is undone with each frame's
        Geometry, and boxes are clipped to its (height, width) when ``image_sizes`` is given."""
        boxes, scores, class_ids = outputs["boxes"], outputs["scores"], outputs["classes"]
        domain, shift = outputs.get("domain"), outputs.get("feature_shift")
        results = []
        for i, geometry in enumerate(geometries):
            keep = scores[i] >= score_threshold  # candidates come best first
            check_class_ids(class_ids[i][keep], len(classes))
            image_boxes = geometry.to_image(boxes[i][keep])
            if image_sizes is not None:
                h, w = image_sizes[i]
                image_boxes[:, 0::2] = image_boxes[:, 0::2].clip(0, w)
                image_boxes[:, 1::2] = image_boxes[:, 1::2].clip(0, h)
            items = tuple(Detection(tuple(float(v) for v in b), int(c), classes[int(c)], float(s))
                          for b, c, s in zip(image_boxes, class_ids[i][keep], scores[i][keep]))
            results.append(Detections(items, _optional(domain, i), _optional(shift, i)))
        return results


def check_class_ids(ids: np.ndarray, n: int) -> None:
    """A graph whose head has more classes than its metadata names (a detection graph the loader could
    not read the class count from) fails here with the fields named, not with an IndexError."""
    bad = ids[(ids < 0) | (ids >= n)]
    if bad.size:
        raise ValueError(f"the model's output 'classes' holds class id {int(bad[0])}; its metadata field "
                         f"'dann_ros.classes' names {n} classes (a model exported wrongly?)")


TASKS = TaskRegistry("runtime", {"classification": ClassificationRuntime, "detection": DetectionRuntime})
