"""Newest-frame-wins hand-off between subscription callbacks and the inference worker.

One slot per camera, nothing else: a callback only swaps its message into the slot (an
overwritten, unprocessed message counts as dropped) and wakes the worker, so it never waits
for inference and the memory held is bounded by one message per camera.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Frame:
    camera: int
    msg: Any
    received_ns: int  # time.monotonic_ns() when the callback ran


class LatestFrames:
    def __init__(self, cameras: int) -> None:
        self._slots: list[Frame | None] = [None] * cameras
        self._cond = threading.Condition()
        self._closed = False

    def put(self, camera: int, msg: Any) -> bool:
        """Store ``msg`` as the camera's newest frame; True if it replaced one not yet processed."""
        frame = Frame(camera, msg, time.monotonic_ns())
        with self._cond:
            replaced = self._slots[camera] is not None
            self._slots[camera] = frame
            self._cond.notify()
        return replaced

    def take(self, timeout: float | None = None) -> list[Frame] | None:
        """Every camera's pending frame (oldest first), [] on timeout, None once closed."""
        with self._cond:
            if not self._closed and not any(self._slots):
                self._cond.wait(timeout)
            if self._closed:
                return None
            frames = [f for f in self._slots if f is not None]
            self._slots = [None] * len(self._slots)
        frames.sort(key=lambda f: f.received_ns)
        return frames

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._slots = [None] * len(self._slots)
            self._cond.notify_all()
