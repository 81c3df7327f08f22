"""Accuracy of a Predictor on an ImageFolder or on a bag with its label file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dann_ros.data.frame_cache import cache_or_temporary, labelled_bag
from dann_ros.data.frame_store import DEFAULT_EVAL_MEMORY_MB, Store, frames_per_batch, runtime_frame_bytes
from dann_ros.data.image_folder import iter_image_folder
from dann_ros.data.replicator import read_rgb
from dann_ros.runtime.predictor import Predictor

log = logging.getLogger(__name__)


@dataclass
class AccuracyReport:
    accuracy: float
    n: int
    per_class: dict[str, dict]
    skipped: int = 0
    unknown_label: int = 0

    def to_json(self) -> dict:
        return {"accuracy": self.accuracy, "n": self.n, "per_class": self.per_class,
                "skipped": self.skipped, "unknown_label": self.unknown_label}

    def table(self) -> str:
        lines = [f"{'class':>10} {'n':>6} {'accuracy':>9}"]
        for name, row in self.per_class.items():
            acc = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.2f}%"
            lines.append(f"{name:>10} {row['n']:>6} {acc:>9}")
        lines.append(f"{'all':>10} {self.n:>6} {100 * self.accuracy:.2f}%")
        if self.skipped or self.unknown_label:
            lines.append(f"skipped {self.skipped} unreadable frames, {self.unknown_label} without a known label")
        return "\n".join(lines)


def accuracy_report(pred: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], skipped: int = 0) -> AccuracyReport:
    known = labels >= 0
    per_class = {}
    for i, name in enumerate(classes):
        mask = labels == i
        per_class[name] = {"n": int(mask.sum()), "accuracy": float((pred[mask] == i).mean()) if mask.any() else None}
    acc = float((pred[known] == labels[known]).mean()) if known.any() else float("nan")
    return AccuracyReport(acc, int(known.sum()), per_class, skipped, int((~known).sum()))


def predict_prepared(predictor: Predictor, frames: Store, batch_size: int = 256,
                     memory_mb: float = DEFAULT_EVAL_MEMORY_MB) -> np.ndarray:
    """Class ids for a store's prepared frames, read at most ``batch_size`` and ``memory_mb`` of frames
    and activations a batch."""
    size = frames_per_batch(runtime_frame_bytes(tuple(frames.record_shape)), memory_mb, batch_size)
    out = [predictor.run_prepared(frames.read(np.arange(i, min(i + size, len(frames)))))["scores"].argmax(1)
           for i in range(0, len(frames), size)]
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def evaluate_image_folder(predictor: Predictor, root: str | Path, batch_size: int = 256,
                          memory_mb: float = DEFAULT_EVAL_MEMORY_MB) -> AccuracyReport:
    """Accuracy on an ImageFolder, its images prepared and run a batch at a time (never all in RAM)."""
    index = {n: i for i, n in enumerate(predictor.classes)}
    size = frames_per_batch(runtime_frame_bytes(predictor.preprocess.input_shape), memory_mb, batch_size)
    batch: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    labels, skipped = [], 0
    for path, name in iter_image_folder(root):
        try:
            batch.append(predictor.prepare(read_rgb(path))[0])
        except ValueError as exc:
            log.warning("%s", exc)
            skipped += 1
            continue
        labels.append(index.get(name, -1))
        if len(batch) == size:
            preds.append(predictor.run_prepared(np.stack(batch))["scores"].argmax(1))
            batch = []
    if batch:
        preds.append(predictor.run_prepared(np.stack(batch))["scores"].argmax(1))
    if not labels:
        raise ValueError(f"{root}: no readable images")
    return accuracy_report(np.concatenate(preds), np.array(labels), predictor.classes, skipped)


def evaluate_labelled_bag(predictor: Predictor, bag: str | Path, labels: str | Path,
                          topics: tuple[str, ...] = (), batch_size: int = 256, cache_dir: str | Path | None = None,
                          memory_mb: float = DEFAULT_EVAL_MEMORY_MB) -> AccuracyReport:
    """Accuracy on a bag with its label file. The frames go through a frame store in ``cache_dir``
    (None: a temporary one), so a bag of any length is read a batch at a time."""
    with cache_or_temporary(cache_dir) as folder:
        store = labelled_bag(Path(bag), Path(labels), topics, predictor.preprocess, predictor.classes, folder)
        pred = predict_prepared(predictor, store, batch_size, memory_mb)
    return accuracy_report(pred, store.columns["class_ids"], predictor.classes)

