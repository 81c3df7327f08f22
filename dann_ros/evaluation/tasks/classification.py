"""Classification: the Predictor's Classification results (argmax of the model's ``scores``);
vision_msgs/Classification like dann_node's.

Predictions: ``class_id`` (N,) int64 and ``confidence`` (N,) of the top class, plus ``scores`` (N, K)
when the model's full output is known (eval-bag)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dann_ros.data.labels import ResolvedLabels, labels_onto_classes
from dann_ros.evaluation import html as H
from dann_ros.evaluation import plots
from dann_ros.evaluation.bag_report_tools import confusion_figure, figure, percentiles
from dann_ros.evaluation.scores import ClassificationScores, classification_scores
from dann_ros.evaluation.tasks.base import Decode, EvalEntry, FramesLike, OutputOptions, label_info_of


class ClassificationCodec:
    """Predictions <-> vision_msgs/Classification (top_k hypotheses, best first)."""

    def __init__(self, classes: tuple[str, ...], options: OutputOptions) -> None:
        self.classes = classes
        self.top_k = options.top_k

    def options_json(self) -> dict:
        return {"top_k": self.top_k}

    def predictions(self, decode: Decode, frames: Any) -> dict[str, np.ndarray]:
        """The Predictor's Classification of every frame (``decode``: Predictor.decode)."""
        results = decode(frames.outputs, [frames.geometry(r) for r in range(len(frames))],
                         [tuple(s) for s in frames.sizes])
        ids = np.asarray([r.class_id for r in results], np.int64)
        scores = np.stack([r.scores for r in results]) if results else frames.outputs["scores"]
        return {"class_id": ids, "confidence": scores[np.arange(len(ids)), ids], "scores": scores}

    def write(self, writer: Any, topic: str, row: int, log_ns: int, frames: Any, pred: dict) -> None:
        writer.classification(topic, log_ns, int(frames.stamps_ns[row]), frames.frame_ids[row],
                              pred["scores"][row], self.top_k)

    def from_messages(self, messages: Sequence[Any]) -> dict[str, np.ndarray]:
        """vision_msgs/Classification messages (best hypothesis first, class_id = class index)."""
        ids = [int(m.results[0].class_id) if m.results else -1 for m in messages]
        conf = [float(m.results[0].score) if m.results else 0.0 for m in messages]
        return {"class_id": np.asarray(ids, np.int64), "confidence": np.asarray(conf, float)}


class ClassificationScorer:
    """Accuracy, per-class precision/recall and the confusion matrix on labelled frames."""

    def __init__(self, classes: tuple[str, ...], options: OutputOptions) -> None:
        self.classes = classes

    @staticmethod
    def evaluate_labelled_bag(predictor: Any, bag: Any, labels: Any, topics: tuple[str, ...]) -> tuple[str, dict]:
        """``dann-ros eval --bag --labels``: (printed table, JSON) of the model's top-1 on every labelled frame."""
        from dann_ros.evaluation.accuracy import evaluate_labelled_bag

        report = evaluate_labelled_bag(predictor, bag, labels, topics)
        return report.table(), report.to_json()

    def score(self, pred: dict, labels: ResolvedLabels, frames: FramesLike) -> tuple[ClassificationScores, dict]:
        match = labels.file.match(frames)
        ids = labels_onto_classes(labels.file, match.class_ids, self.classes)
        return classification_scores(pred["class_id"], ids, self.classes), {**label_info_of(labels, match),
                                                                            "label_ids": ids}

    def summary(self, pred: dict) -> dict:
        return {"class_counts": {c: int((pred["class_id"] == i).sum()) for i, c in enumerate(self.classes)},
                "confidence": percentiles(pred["confidence"])}


class ClassificationSection:
    """Class and confidence histograms; with labels the confusion matrix and precision/recall."""

    def __init__(self, classes: tuple[str, ...], options: OutputOptions) -> None:
        self.classes = classes

    def summary_line(self, report: dict, what: str = "labelled frames") -> str:
        s = report["scores"]
        return f"accuracy {100 * s['accuracy']:.2f}% on {s['n']} {what} ({report['labels']['path']})"

    def figures(self, pred: dict, scores: ClassificationScores | None, label_info: dict | None) -> dict[str, dict]:
        classes, k = self.classes, len(self.classes)
        figs: dict[str, dict] = {}
        series = {"predicted": np.bincount(pred["class_id"][pred["class_id"] >= 0], minlength=k).tolist()}
        if scores is not None:
            series["true (labelled frames)"] = scores.confusion.sum(1).tolist()
        figs["class_histogram"] = figure(
            plots.bars(classes, series, "Frames per class", "class", "frames"),
            "Predicted class of every evaluated frame" + (", and the labelled class" if scores else ""),
            {"title": "Frames per class", "classes": list(classes), **series})
        edges = np.linspace(0.0, 1.0, 21)
        conf = pred["confidence"]
        conf_series = {"all frames": conf}
        if scores is not None and label_info is not None:
            ids = label_info["label_ids"]
            known, right = ids >= 0, pred["class_id"] == ids
            conf_series = {"correct": conf[known & right], "wrong": conf[known & ~right]}
            if (~known).any():
                conf_series["unlabelled"] = conf[~known]
        figs["confidence_histogram"] = figure(
            plots.histogram(conf_series, edges, "Top-1 confidence", "top-1 score (softmax probability)"),
            "Confidence of the predicted class" + (", split by correctness on labelled frames" if scores else ""),
            {"title": "Top-1 confidence", "bin_edges": edges.tolist(),
             **{name: np.histogram(v, edges)[0].tolist() for name, v in conf_series.items()}})
        if scores is not None:
            figs["confusion_matrix"] = confusion_figure(
                scores.confusion, classes, f"Confusion matrix (accuracy {H.pct(scores.accuracy)}, n={scores.n})",
                "Rows: labelled class; columns: predicted class; numbers are frame counts")
            p, r = scores.precision(), scores.recall()
            figs["precision_recall"] = figure(
                plots.bars(classes, {"precision": p.tolist(), "recall": r.tolist()}, "Per-class precision and recall",
                           "class", "value", ylim=(0, 1.05)),
                "Precision = correct / predicted as the class; recall = correct / labelled as the class",
                {"title": "Per-class precision and recall", "classes": list(classes), "precision": p.tolist(),
                 "recall": r.tolist()})
        return figs

    def html(self, page: H.Page, report: dict, figures: dict[str, dict]) -> None:
        if report["scores"] is not None:
            s, li = report["scores"], report["labels"]
            page.heading("Accuracy")
            page.paragraph(f"Labels: {li['path']} (topic {li['topic']}): {li['matched']} frames matched "
                           f"({li['matched_by_index']} by index), {li['unmatched']} frames without a label, "
                           f"{s['unknown_label']} left out (no label or a class the model lacks).")
            page.table(("class", "labelled", "predicted", "precision", "recall", "F1"),
                       [(c, r["n"], r["predicted"], H.pct(r["precision"]), H.pct(r["recall"]), H.pct(r["f1"]))
                        for c, r in s["per_class"].items()] + [("all", s["n"], s["n"], "", "", "")])
            page.paragraph(f"Accuracy {H.pct(s['accuracy'])} ({s['correct']} of {s['n']} labelled frames correct).")
            for name in ("confusion_matrix", "precision_recall"):
                page.figure(figures[name]["png"], figures[name]["caption"])
        page.heading("Predictions")
        for name in ("class_histogram", "confidence_histogram"):
            page.figure(figures[name]["png"], figures[name]["caption"])


ENTRY = EvalEntry(ClassificationScorer, ClassificationCodec, ClassificationSection)
