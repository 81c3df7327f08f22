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
from dann_ros.runtime.results import Classification


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
             warmup: bool = True) -> "Predictor":
        b = open_backend(path, backend, device)
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
        domain = out.get("domain")
        ids = scores.argmax(1)
        return [Classification(int(c), self.classes[int(c)], float(s[c]), s,
                               None if domain is None else float(domain[i]))
                for i, (c, s) in enumerate(zip(ids, scores))]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Classification]:
        if not len(images):
            return []
        batch = np.stack([self.prepare(im)[0] for im in images])
        return self.classify_prepared(batch)

    def predict(self, image: np.ndarray) -> Classification:
        return self.predict_batch([image])[0]
