"""mAP of a Predictor on a bag with a detection label sidecar, in the bag's own image pixels.

Frames go through the Predictor exactly as on the robot (prepare, run, undo the
resize with each frame's Geometry), so the score measures the deployed pipeline; they are
decoded once into a frame store and read back a batch at a time (memory bounded by bytes).
All candidates are kept (score threshold 0): a threshold only cuts the
precision-recall curve short.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dann_ros.data.bags import BagSelection
from dann_ros.data.frame_cache import bag_store, cache_or_temporary, frame_geometry, frame_index
from dann_ros.data.frame_store import DEFAULT_EVAL_MEMORY_MB, frames_per_batch, runtime_frame_bytes
from dann_ros.data.labels import LabelFile, class_map
from dann_ros.data.tasks import task_spec
from dann_ros.model.detection_metrics import DetectionReport, evaluate_detections
from dann_ros.runtime.predictor import Predictor

log = logging.getLogger(__name__)


def evaluate_detection_bag(predictor: Predictor, bag: str | Path, labels: str | Path, topics: tuple[str, ...] = (),
                           batch_size: int = 64, cache_dir: str | Path | None = None,
                           memory_mb: float = DEFAULT_EVAL_MEMORY_MB) -> DetectionReport:
    """mAP on a bag with a detection label file. The frames go through a frame store in ``cache_dir``
    (None: a temporary one) and are run at most ``batch_size`` and ``memory_mb`` a batch, so a bag of
    any length fits; only the detections are kept."""
    label_file = LabelFile.load(labels)
    if not task_spec(label_file.task).has_boxes:
        raise ValueError(f"{labels}: a {label_file.task} label file; a detection model needs boxes")
    with cache_or_temporary(cache_dir) as folder:
        store = bag_store(Path(bag), BagSelection(tuple(topics)), predictor.preprocess, folder)
        match = label_file.match(frame_index(store))
        if match.unmatched:
            log.warning("%s: %d of %d frames of %s have no label", labels, match.unmatched, len(store), bag)
        to_ours = class_map(label_file.classes, predictor.classes)
        keep = np.flatnonzero(match.matched)
        sizes = store.columns["image_sizes"]
        size = frames_per_batch(runtime_frame_bytes(store.record_shape), memory_mb, batch_size)
        pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes = [], [], [], [], []
        for start in range(0, len(keep), size):
            rows = keep[start:start + size]
            dets = predictor.detect_prepared(store.read(rows), [frame_geometry(store, int(i)) for i in rows],
                                             [tuple(sizes[i]) for i in rows], score_threshold=0.0)
            for i, d in zip(rows, dets):
                pred_boxes.append(np.array([x.box for x in d], np.float32).reshape(-1, 4))
                pred_scores.append(np.array([x.score for x in d], np.float64))
                pred_classes.append(np.array([x.class_id for x in d], np.int64))
                ids = to_ours[match.box_class_ids[i]] if len(match.box_class_ids[i]) else np.zeros(0, np.int64)
                gt_boxes.append(match.boxes[i][ids >= 0])
                gt_classes.append(ids[ids >= 0])
    return evaluate_detections(pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes, len(predictor.classes),
                               class_names=predictor.classes)


def report_table(report: DetectionReport) -> str:
    lines = [f"{'class':>10} {'AP50':>7} {'AP':>7}"]
    for name, ap50 in report.per_class_ap50.items():
        ap = report.per_class_ap.get(name, float("nan"))
        fmt = (lambda v: "-" if np.isnan(v) else f"{100 * v:.1f}%")
        lines.append(f"{name:>10} {fmt(ap50):>7} {fmt(ap):>7}")
    lines.append(f"{'all':>10} {100 * report.map50:6.1f}% {100 * report.map:6.1f}%   "
                 f"({report.n_images} frames, {report.n_gt} boxes): mAP@0.5, mAP@[.5:.95]")
    return "\n".join(lines)
