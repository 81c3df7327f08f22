"""Detection: the detections dann_node publishes (score >= its detection_threshold, best first, boxes
in input-image pixels) as vision_msgs/Detection2DArray, scored as COCO-style mAP.

eval-bag and replay score the same thing, the published detections (eval-bag's from the Predictor's
decode, the node's own path), so on the same bag and threshold they agree; with a threshold of 0
every candidate is published and the score is the model's ranking quality, equal to ``dann-ros eval``'s.

Predictions, one entry per frame: ``boxes`` (K, 4) x1, y1, x2, y2 image pixels, ``scores`` (K,),
``classes`` (K,) int64 (the published detections), and ``best`` (N,), each frame's top score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dann_ros.data.labels import ResolvedLabels, class_map
from dann_ros.evaluation import html as H
from dann_ros.evaluation import plots
from dann_ros.evaluation.bag_report_tools import figure, percentiles
from dann_ros.evaluation.tasks.base import Decode, EvalEntry, FramesLike, OutputOptions, label_info_of
from dann_ros.model.detection_metrics import DetectionReport, evaluate_detections


@dataclass(frozen=True)
class DetectionScores:
    report: DetectionReport
    threshold: float  # the score threshold of the detections that were scored

    @property
    def value(self) -> float:
        """The headline metric (TaskSpec.metric "map50"): mAP at IoU 0.5."""
        return self.report.map50

    @property
    def n(self) -> int:
        return self.report.n_images

    def to_json(self) -> dict:
        return {**self.report.to_dict(), "n": self.report.n_images, "threshold": self.threshold}


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros(0, float), np.zeros(0, np.int64)


class DetectionCodec:
    """Predictions <-> vision_msgs/Detection2DArray (centre + size, one hypothesis per detection)."""

    def __init__(self, classes: tuple[str, ...], options: OutputOptions) -> None:
        self.classes = classes
        self.threshold = options.detection_threshold

    def options_json(self) -> dict:
        return {"detection_threshold": self.threshold}

    def predictions(self, decode: Decode, frames: Any) -> dict[str, Any]:
        """The detections the node would publish (``decode``: Predictor.decode at the node's threshold),
        and each frame's best candidate, published or not."""
        results = decode(frames.outputs, [frames.geometry(r) for r in range(len(frames))],
                         [tuple(s) for s in frames.sizes], self.threshold)
        boxes, scores, classes = [], [], []
        for dets in results:
            b, s, c = _empty()
            if len(dets):
                b = np.array([d.box for d in dets], np.float32)
                s = np.array([d.score for d in dets], float)
                c = np.array([d.class_id for d in dets], np.int64)
            boxes.append(b)
            scores.append(s)
            classes.append(c)
        out = frames.outputs["scores"]
        best = out.max(1) if out.shape[1] else np.zeros(len(frames))
        return {"boxes": boxes, "scores": scores, "classes": classes, "best": np.asarray(best, float)}

    def write(self, writer: Any, topic: str, row: int, log_ns: int, frames: Any, pred: dict) -> None:
        writer.detections(topic, log_ns, int(frames.stamps_ns[row]), frames.frame_ids[row], pred["boxes"][row],
                          pred["classes"][row], pred["scores"][row])

    def from_messages(self, messages: Sequence[Any]) -> dict[str, Any]:
        """vision_msgs/Detection2DArray messages: boxes back from centre + size, first hypothesis each."""
        boxes, scores, classes = [], [], []
        for m in messages:
            if not m.detections:
                b, s, c = _empty()
            else:
                d = m.detections
                cx = np.array([x.bbox.center.position.x for x in d])
                cy = np.array([x.bbox.center.position.y for x in d])
                sx, sy = np.array([x.bbox.size_x for x in d]), np.array([x.bbox.size_y for x in d])
                b = np.stack([cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2], 1).astype(np.float32)
                s = np.array([x.results[0].hypothesis.score if x.results else 0.0 for x in d], float)
                c = np.array([int(x.results[0].hypothesis.class_id) if x.results else -1 for x in d], np.int64)
            boxes.append(b)
            scores.append(s)
            classes.append(c)
        best = np.array([s.max() if s.size else 0.0 for s in scores], float)
        return {"boxes": boxes, "scores": scores, "classes": classes, "best": best}


class DetectionScorer:
    """COCO-style mAP of the published detections against labelled boxes."""

    def __init__(self, classes: tuple[str, ...], options: OutputOptions) -> None:
        self.classes = classes
        self.threshold = options.detection_threshold

    @staticmethod
    def evaluate_labelled_bag(predictor: Any, bag: Any, labels: Any, topics: tuple[str, ...]) -> tuple[str, dict]:
        """``dann-ros eval --bag --labels``: (printed table, JSON) of mAP over every candidate."""
        from dann_ros.evaluation.average_precision import evaluate_detection_bag, report_table

        report = evaluate_detection_bag(predictor, bag, labels, topics)
        return report_table(report), report.to_dict()

    def score(self, pred: dict, labels: ResolvedLabels, frames: FramesLike) -> tuple[DetectionScores, dict]:
        match = labels.file.match(frames)
        to_ours = class_map(labels.file.classes, self.classes)
        rows = np.flatnonzero(match.matched)
        gt_boxes, gt_classes = [], []
        for r in rows:
            ids = to_ours[match.box_class_ids[r]] if len(match.box_class_ids[r]) else np.zeros(0, np.int64)
            gt_boxes.append(match.boxes[r][ids >= 0])
            gt_classes.append(ids[ids >= 0])
        report = evaluate_detections([pred["boxes"][r] for r in rows], [pred["scores"][r] for r in rows],
                                     [pred["classes"][r] for r in rows], gt_boxes, gt_classes, len(self.classes),
                                     class_names=self.classes)
        return DetectionScores(report, self.threshold), label_info_of(labels, match)

    def summary(self, pred: dict) -> dict:
        kept = np.concatenate(pred["classes"]) if pred["classes"] else np.zeros(0, np.int64)
        return {"detections": int(kept.size), "threshold": self.threshold,
                "class_counts": {c: int((kept == i).sum()) for i, c in enumerate(self.classes)},
                "confidence": percentiles(np.concatenate(pred["scores"]) if pred["scores"] else [])}


class DetectionSection:
    """Detections per class, best-candidate confidence; with labels per-class AP@0.5."""

    def __init__(self, classes: tuple[str, ...], options: OutputOptions) -> None:
        self.classes = classes
        self.threshold = options.detection_threshold

    def summary_line(self, report: dict, what: str = "labelled frames") -> str:
        s = report["scores"]
        return (f"mAP@0.5 {100 * s['map50']:.2f}%, mAP@[.5:.95] {100 * s['map']:.2f}% on {s['n']} {what}, "
                f"detections scoring >= {s['threshold']:g} ({report['labels']['path']})")

    def figures(self, pred: dict, scores: DetectionScores | None, label_info: dict | None) -> dict[str, dict]:
        kept = np.concatenate(pred["classes"]) if pred["classes"] else np.zeros(0, np.int64)
        counts = [int((kept == i).sum()) for i in range(len(self.classes))]
        figs = {"class_histogram": figure(
            plots.bars(self.classes, {"detections": counts}, f"Detections per class (score >= {self.threshold:g})",
                       "class", "detections"),
            "Detections the node publishes, per class",
            {"title": "Detections per class", "classes": list(self.classes), "detections": counts})}
        edges = np.linspace(0.0, 1.0, 21)
        figs["confidence_histogram"] = figure(
            plots.histogram({"best candidate per frame": pred["best"]}, edges, "Detection confidence", "score"),
            "Score of each frame's best detection candidate",
            {"title": "Detection confidence", "bin_edges": edges.tolist(),
             "best candidate per frame": np.histogram(pred["best"], edges)[0].tolist()})
        if scores is not None:
            ap = [scores.report.per_class_ap50.get(c, float("nan")) for c in self.classes]
            figs["per_class_ap50"] = figure(
                plots.bars(self.classes, {"AP@0.5": [0.0 if a != a else a for a in ap]},
                           f"Per-class AP@0.5 (mAP@0.5 {H.pct(scores.value, 1)})", "class", "AP", ylim=(0, 1.05)),
                "COCO-style AP at IoU 0.5 per class (0 shown for classes without labelled boxes)",
                {"title": "Per-class AP@0.5", "classes": list(self.classes),
                 "ap50": [None if a != a else a for a in ap]})
        return figs

    def html(self, page: H.Page, report: dict, figures: dict[str, dict]) -> None:
        if report["scores"] is not None:
            s, li = report["scores"], report["labels"]
            page.heading("mAP")
            page.paragraph(f"Labels: {li['path']} (topic {li['topic']}): {li['matched']} frames matched, "
                           f"{s['n_gt']} labelled boxes. mAP@0.5 {H.pct(s['map50'])}, mAP@[.5:.95] {H.pct(s['map'])} "
                           f"(COCO-style) of the detections scoring at least {s['threshold']:g}, as the node "
                           "publishes them.")
            page.table(("class", "AP@0.5", "AP@[.5:.95]"),
                       [(c, H.pct(a), H.pct(s["per_class_ap"].get(c))) for c, a in s["per_class_ap50"].items()])
            if "per_class_ap50" in figures:
                page.figure(figures["per_class_ap50"]["png"], figures["per_class_ap50"]["caption"])
        page.heading("Detections")
        for name in ("class_histogram", "confidence_histogram"):
            page.figure(figures[name]["png"], figures[name]["caption"])


ENTRY = EvalEntry(DetectionScorer, DetectionCodec, DetectionSection)
