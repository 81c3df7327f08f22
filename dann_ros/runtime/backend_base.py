"""What every inference backend shares, kept apart so that backends.py (which picks one) and the
backends themselves (tensorrt_backend.py checks its engine against onnxruntime_backend.py) import it
without importing each other."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class ModelLoadError(RuntimeError):
    """The model file cannot be loaded; the message names the file and why."""


class Backend(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...
