"""The Predictor: model file in, typed results out, preprocessing read from the model itself.

The ROS node, ``dann-ros eval``, ``eval-bag`` and the tests all run frames
through this class, so an exported model is evaluated by exactly the code
that runs on the robot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from dann_ros.data.preprocess import Geometry
from dann_ros.export.metadata import ModelInfo
from dann_ros.runtime.backends import Backend, open_backend
from dann_ros.runtime.results import Classification, Detection, Detections


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
             warmup: bool = True, precision: str = "auto", max_batch: int = 8) -> "Predictor":
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

    def classify_prepared(self, batch: np.ndarray) -> list[Classification]:
        out = self.run_prepared(batch)
        scores = out["scores"]
        domain, shift = out.get("domain"), out.get("feature_shift")
        ids = scores.argmax(1)
        return [Classification(int(c), self.classes[int(c)], float(s[c]), s,
                               None if domain is None else float(domain[i]),
                               None if shift is None else float(shift[i]))
                for i, (c, s) in enumerate(zip(ids, scores))]

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
        """Detections in input-image pixels: the letterbox (or any resize) is undone with each frame's
        Geometry, and boxes are clipped to its (height, width) when ``image_sizes`` is given."""
        if self.info.task != "detection":
            raise ValueError(f"this is a {self.info.task} model; detect() needs a detection model")
        out = self.run_prepared(batch)
        boxes, scores, classes = out["boxes"], out["scores"], out["classes"]
        domain, shift = out.get("domain"), out.get("feature_shift")
        results = []
        for i, geometry in enumerate(geometries):
            keep = scores[i] >= score_threshold  # candidates come best first
            self._check_class_ids(classes[i][keep])
            image_boxes = geometry.to_image(boxes[i][keep])
            if image_sizes is not None:
                h, w = image_sizes[i]
                image_boxes[:, 0::2] = image_boxes[:, 0::2].clip(0, w)
                image_boxes[:, 1::2] = image_boxes[:, 1::2].clip(0, h)
            items = tuple(Detection(tuple(float(v) for v in b), int(c), self.classes[int(c)], float(s))
                          for b, c, s in zip(image_boxes, classes[i][keep], scores[i][keep]))
            results.append(Detections(items, None if domain is None else float(domain[i]),
                                      None if shift is None else float(shift[i])))
        return results

    def _check_class_ids(self, ids: np.ndarray) -> None:
        """A graph whose head has more classes than its metadata names (a detection graph the loader could
        not read the class count from) fails here with the fields named, not with an IndexError."""
        n = len(self.classes)
        bad = ids[(ids < 0) | (ids >= n)]
        if bad.size:
            raise ValueError(f"the model's output 'classes' holds class id {int(bad[0])}; its metadata field "
                             f"'dann_ros.classes' names {n} classes (a model exported wrongly?)")

    def detect_batch(self, images: Sequence[np.ndarray], score_threshold: float = 0.3) -> list[Detections]:
        if not len(images):
            return []
        prepared = [self.prepare(im) for im in images]
        return self.detect_prepared(np.stack([p[0] for p in prepared]), [p[1] for p in prepared],
                                    [im.shape[:2] for im in images], score_threshold)

    def detect(self, image: np.ndarray, score_threshold: float = 0.3) -> Detections:
        return self.detect_batch([image], score_threshold)[0]
