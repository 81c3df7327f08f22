"""The Predictor: model file in, typed results out, preprocessing read from the model itself.

The ROS node, ``dann-ros eval``, ``eval-bag`` and the tests all run frames
through this class (``infer``: one call for every task), so an exported model is evaluated by exactly the code
that runs on the robot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dann_ros.data.preprocess import Geometry
from dann_ros.data.tasks import task_spec
from dann_ros.export.metadata import ModelInfo
from dann_ros.runtime.backends import Backend, open_backend
from dann_ros.runtime.results import Classification, Detections
from dann_ros.runtime.tasks import TASKS, ClassificationRuntime, DetectionRuntime


class Predictor:
    def __init__(self, backend: Backend, info: ModelInfo, warmup: bool = True) -> None:
        self.backend = backend
        self.info = info
        self.preprocess = info.preprocess
        if warmup:
            # first calls allocate arenas / pick kernels: pay that at load, not on the first frame
            dummy = np.zeros((1, *self.preprocess.input_shape), dtype=np.uint8)
            for _ in range(3):
                self.run_prepared(dummy)

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", device: str | None = None,
             warmup: bool = True, precision: str = "auto", max_batch: int = 8) -> Predictor:
        """``precision`` and ``max_batch`` reach a TensorRT engine built from an .onnx."""
        b = open_backend(path, backend, device, precision=precision, max_batch=max_batch)
        return cls(b, b.info, warmup=warmup)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        return self.preprocess.prepare(image)

    def run_prepared(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs for prepared uint8 (N, C, H, W) input."""
        batch = np.asarray(batch)
        expected = self.preprocess.input_shape
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"prepared batch has shape {batch.shape}; the model takes (N, {expected[0]}, "
                             f"{expected[1]}, {expected[2]})")
        return self.backend.run(np.ascontiguousarray(batch, dtype=np.float32))

    def infer(self, batch: np.ndarray, geometries: Sequence[Geometry],
              image_sizes: Sequence[tuple[int, int]] | None = None, score_threshold: float = 0.3) -> list:
        """One result per frame of a prepared uint8 (N, C, H, W) batch, whatever the model's task (its
        runtime entry decodes the outputs): what the node and the benchmarks call. ``geometries`` (from
        ``prepare``) and ``image_sizes`` (height, width) map boxes back to each input image, where the
        task has boxes; ``score_threshold``: the lowest score a detection keeps."""
        return self.decode(self.run_prepared(batch), geometries, image_sizes, score_threshold)

    def decode(self, outputs: dict[str, np.ndarray], geometries: Sequence[Geometry],
               image_sizes: Sequence[tuple[int, int]] | None = None, score_threshold: float = 0.3) -> list:
        """``infer``'s second half, the model's task's runtime entry: raw outputs (``run_prepared``'s, of any
        number of frames) -> one result per frame. eval-bag calls it on the outputs it also keeps raw."""
        return TASKS[self.info.task].decode(outputs, self.classes, geometries, image_sizes, score_threshold)

    def infer_batch(self, images: Sequence[np.ndarray], score_threshold: float = 0.3) -> list:
        """``infer`` on RGB uint8 (H, W, 3) images."""
        if not len(images):
            return []
        prepared = [self.prepare(im) for im in images]
        return self.infer(np.stack([p[0] for p in prepared]), [p[1] for p in prepared],
                          [im.shape[:2] for im in images], score_threshold)

    def classify_prepared(self, batch: np.ndarray) -> list[Classification]:
        return ClassificationRuntime.decode(self.run_prepared(batch), self.classes)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Classification]:
        if not len(images):
            return []
        batch = np.stack([self.prepare(im)[0] for im in images])
        return self.classify_prepared(batch)

    def predict(self, image: np.ndarray) -> Classification:
        return self.predict_batch([image])[0]

    # -- detection ---------------------------------------------------------------------------
    def detect_prepared(self, batch: np.ndarray, geometries: Sequence[Geometry],
                        image_sizes: Sequence[tuple[int, int]] | None = None,
                        score_threshold: float = 0.3) -> list[Detections]:
        """Detections in input-image pixels (DetectionRuntime.decode)."""
        if not task_spec(self.info.task).has_boxes:
            raise ValueError(f"this is a {self.info.task} model; detect() needs a detection model")
        return DetectionRuntime.decode(self.run_prepared(batch), self.classes, geometries, image_sizes,
                                       score_threshold)

    def detect_batch(self, images: Sequence[np.ndarray], score_threshold: float = 0.3) -> list[Detections]:
        if not len(images):
            return []
        prepared = [self.prepare(im) for im in images]
        return self.detect_prepared(np.stack([p[0] for p in prepared]), [p[1] for p in prepared],
                                    [im.shape[:2] for im in images], score_threshold)

    def detect(self, image: np.ndarray, score_threshold: float = 0.3) -> Detections:
        return self.detect_batch([image], score_threshold)[0]
