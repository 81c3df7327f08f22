"""Classification scores from predicted and true class ids: accuracy, per-class precision and
recall, confusion matrix. Frames whose label is -1 (unlabelled, or a class the model does not
know) are left out, exactly as ``dann-ros eval`` leaves them out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dann_ros.data.labels import LabelFile


@dataclass(frozen=True)
class ClassificationScores:
    classes: tuple[str, ...]
    confusion: np.ndarray  # (K, K) int64, rows = true class, columns = predicted class
    n: int  # labelled frames scored
    unknown_label: int  # frames with a label the model has no class for / without a label

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    def precision(self) -> np.ndarray:
        col = self.confusion.sum(0)
        return np.divide(np.diag(self.confusion), col, out=np.full(len(col), np.nan), where=col > 0)

    def recall(self) -> np.ndarray:
        row = self.confusion.sum(1)
        return np.divide(np.diag(self.confusion), row, out=np.full(len(row), np.nan), where=row > 0)

    def per_class(self) -> dict[str, dict]:
        p, r = self.precision(), self.recall()
        support, predicted = self.confusion.sum(1), self.confusion.sum(0)
        out = {}
        for i, name in enumerate(self.classes):
            f1 = 2 * p[i] * r[i] / (p[i] + r[i]) if np.isfinite(p[i]) and np.isfinite(r[i]) and p[i] + r[i] else None
            out[name] = {"n": int(support[i]), "predicted": int(predicted[i]),
                         "precision": None if np.isnan(p[i]) else float(p[i]),
                         "recall": None if np.isnan(r[i]) else float(r[i]), "f1": f1}
        return out

    def to_json(self) -> dict:
        return {"accuracy": self.accuracy, "n": self.n, "correct": self.correct, "unknown_label": self.unknown_label,
                "classes": list(self.classes), "confusion_matrix": self.confusion.tolist(),
                "per_class": self.per_class()}


def classification_scores(pred: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> ClassificationScores:
    pred, labels = np.asarray(pred, np.int64), np.asarray(labels, np.int64)
    if pred.shape != labels.shape:
        raise ValueError(f"{len(pred)} predictions but {len(labels)} labels")
    k = len(classes)
    known = labels >= 0
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (labels[known], pred[known]), 1)
    return ClassificationScores(tuple(classes), cm, int(known.sum()), int((~known).sum()))


def labels_onto_classes(label_file: LabelFile, class_ids: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Label-file class ids (-1 = no label) -> the model's class ids (-1 where the model lacks the
    class). The same mapping ``dann-ros eval`` applies (dann_ros.train.datasets.load_labelled_bag)."""
    classes = list(classes)
    to_ours = np.array([classes.index(c) if c in classes else -1 for c in label_file.classes] + [-1], np.int64)
    mapped = to_ours[np.asarray(class_ids, np.int64)]
    if (np.asarray(class_ids) >= 0).any() and not (mapped >= 0).any():
        raise ValueError(f"{label_file.origin}: none of the label classes {list(label_file.classes)} is a class of "
                         f"the model {classes}; labels for another model?")
    return mapped
