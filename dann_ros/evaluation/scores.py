"""Classification scores from predicted and true class ids: accuracy, per-class precision and
recall, confusion matrix. Frames whose label is -1 (unlabelled, or a class the model does not
know) are left out, exactly as ``dann-ros eval`` leaves them out (the label -> class map is
dann_ros.data.labels.labels_onto_classes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np



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

    @property
    def value(self) -> float:
        """The headline metric (TaskSpec.metric "accuracy")."""
        return self.accuracy

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
