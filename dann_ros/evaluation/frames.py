"""The bag reader eval-bag and replay share: a bounded read-ahead thread over dann_ros.data.bags,
and eval-bag's per-frame table.

:class:`Prefetch` runs a producer (decoded frames for eval-bag, raw messages for replay) in a
thread, a few items per hand-off through a bounded queue, so reading and decoding overlap with
the consumer (inference, or paced publishing) and never run far ahead of it. Exceptions travel
through the queue and are raised in the consumer; closing it stops the producer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from dann_ros.data.bags import BagError, BagSelection, DecodeStats, iter_frames
from dann_ros.data.preprocess import Geometry

T = TypeVar("T")
_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Prefetch(Generic[T]):
    """Iterate ``produce()`` with the producing done ahead in a daemon thread.

    Decoding is mostly Python (holds the GIL) while cv2, onnxruntime and torch release it, so on
    two cores the two threads really run side by side."""

    def __init__(self, produce: Callable[[], Iterator[T]], name: str, chunk: int = 8, depth: int = 4) -> None:
        self.produce, self.chunk = produce, chunk
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.seconds = 0.0  # the producer thread's life
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        start = time.perf_counter()
        items = None
        try:
            items = self.produce()
            chunk: list[T] = []
            for item in items:
                chunk.append(item)
                if len(chunk) == self.chunk:
                    if not self._put(chunk):
                        return
                    chunk = []
                if self.stop.is_set():
                    return
            if chunk:
                self._put(chunk)
            self.seconds = time.perf_counter() - start
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - raised again in the consumer
            self.seconds = time.perf_counter() - start
            self._put(_Failure(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        self.thread.start()
        try:
            while True:
                item = self.queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield from item
        finally:
            self.close()

    def close(self, timeout: float = 30.0) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout)


# --------------------------------------------------------------------------- eval-bag's frames
@dataclass
class FrameTable:
    """What eval-bag knows about every evaluated frame, in bag order (the _FrameSetLike of labels.match)."""

    topics: np.ndarray  # (N,) str
    indices: np.ndarray  # (N,) int64, index of the message on its topic
    stamps_ns: np.ndarray  # (N,) int64 header stamps
    log_times_ns: np.ndarray  # (N,) int64
    frame_ids: list[str]
    sizes: np.ndarray  # (N, 2) input height, width
    decode_ms: np.ndarray  # read + deserialize + decode to RGB
    prepare_ms: np.ndarray  # Preprocess.prepare
    inference_ms: np.ndarray  # the frame's share of its batch's model time
    outputs: dict[str, np.ndarray]  # model outputs, concatenated over batches
    batch_ms: np.ndarray  # model time per batch
    batch_sizes: np.ndarray
    geometries: np.ndarray  # (N, 4) Geometry.scale_x, scale_y, offset_x, offset_y; NaN when prepare gave none

    def geometry(self, row: int) -> Geometry:
        return Geometry(*(float(v) for v in self.geometries[row]))

    @property
    def total_ms(self) -> np.ndarray:
        return self.decode_ms + self.prepare_ms + self.inference_ms

    def __len__(self) -> int:
        return len(self.topics)


@dataclass
class RunStats:
    wall_s: float = 0.0
    decode_wall_s: float = 0.0  # decoder thread's life
    inference_s: float = 0.0
    result_bag_s: float = 0.0
    report_s: float = 0.0


def _timed_frames(bag: Any, selection: BagSelection, stats: DecodeStats) -> Iterator[tuple[Any, float]]:
    """iter_frames with each frame's read + deserialize + decode time in milliseconds."""
    frames = iter_frames(bag, selection, stats)
    clock = time.perf_counter
    try:
        t0 = clock()
        for frame in frames:
            yield frame, (clock() - t0) * 1e3
            t0 = clock()
    finally:
        frames.close()


_NO_GEOMETRY = (np.nan,) * 4


def run_frames(predictor: Any, bag: Any, selection: BagSelection, batch_size: int = 64,
               stats: DecodeStats | None = None, progress: Callable[[int], None] | None = None,
               run_stats: RunStats | None = None) -> tuple[FrameTable, DecodeStats]:
    """Every decodable frame of the selection through the model; decoding (a thread) overlaps
    with prepare + inference (this thread)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    stats = stats if stats is not None else DecodeStats()
    run_stats = run_stats if run_stats is not None else RunStats()
    reader = Prefetch(lambda: _timed_frames(bag, selection, stats), "eval_bag_decoder")
    metas: list[tuple] = []
    outputs: dict[str, list[np.ndarray]] = {}
    batch_ms: list[float] = []
    batch_sizes: list[int] = []
    buf = np.empty((batch_size, *tuple(predictor.preprocess.input_shape)), np.uint8)
    filled = 0
    clock = time.perf_counter

    def infer(n: int) -> None:
        t = clock()
        out = predictor.run_prepared(buf[:n])
        dt = clock() - t
        run_stats.inference_s += dt
        for name, value in out.items():
            value = np.asarray(value)
            if value.shape[:1] != (n,):
                raise RuntimeError(f"model output {name!r} has shape {value.shape} for a batch of {n}")
            outputs.setdefault(name, []).append(np.array(value, copy=True))
        batch_ms.append(dt * 1e3)
        batch_sizes.append(n)
        if progress is not None:
            progress(len(metas))

    try:
        for frame, decode_ms in reader:
            t = clock()
            buf[filled], g = predictor.prepare(frame.image)
            prepare_ms = (clock() - t) * 1e3
            filled += 1
            geometry = _NO_GEOMETRY if g is None else (g.scale_x, g.scale_y, g.offset_x, g.offset_y)
            metas.append((frame.topic, frame.index, frame.stamp_ns, frame.log_time_ns, frame.frame_id,
                          frame.image.shape[0], frame.image.shape[1], decode_ms, prepare_ms, geometry))
            if filled == batch_size:
                infer(filled)
                filled = 0
        if filled:
            infer(filled)
    finally:
        reader.close()
    run_stats.decode_wall_s = reader.seconds
    if not metas:
        raise BagError(f"no frames decoded from bag {bag} ({', '.join(selection.topics) or 'all image topics'}): "
                       f"{stats.summary()}")
    per_frame_inf = np.concatenate([np.full(n, ms / n) for ms, n in zip(batch_ms, batch_sizes)])
    cols = list(zip(*metas))
    table = FrameTable(
        topics=np.asarray(cols[0], dtype=str), indices=np.asarray(cols[1], np.int64),
        stamps_ns=np.asarray(cols[2], np.int64), log_times_ns=np.asarray(cols[3], np.int64),
        frame_ids=list(cols[4]), sizes=np.stack([np.asarray(cols[5], np.int64), np.asarray(cols[6], np.int64)], 1),
        decode_ms=np.asarray(cols[7], float), prepare_ms=np.asarray(cols[8], float), inference_ms=per_frame_inf,
        outputs={k: np.concatenate(v) for k, v in outputs.items()},
        batch_ms=np.asarray(batch_ms), batch_sizes=np.asarray(batch_sizes, np.int64),
        geometries=np.asarray(cols[9], float))
    return table, stats
