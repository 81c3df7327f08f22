"""COCO-style detection mAP: AP@0.5 and AP@[.5:.95] with 101-point interpolation.

Follows pycocotools' COCOeval for a single area range ("all") and no crowd
boxes: per image and class, detections (best first, at most ``max_detections``
per image and class) are matched greedily to the unmatched ground truth box of highest
IoU at or above the threshold; per class, all images' detections are ranked by
score, the precision envelope is sampled at recalls 0, 0.01, .., 1 and
averaged. Classes without ground truth are left out of the mean (their AP is
NaN in the per-class table), as COCOeval does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's 0.50:0.05:0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
_THRESHOLDS_CLIPPED = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)  # as COCOeval


@dataclass(frozen=True)
class DetectionReport:
    map50: float  # mean over classes with ground truth of AP at IoU 0.5
    map: float  # mean over those classes and IoU 0.50:0.95
    per_class_ap50: dict[str, float]  # NaN for classes without ground truth
    n_images: int
    n_gt: int
    per_class_ap: dict[str, float] = field(default_factory=dict)  # AP@[.5:.95] per class
    n_detections: int = 0  # after the score threshold and the per-image cap

    def to_dict(self) -> dict:
        clean = (lambda d: {k: (None if math.isnan(v) else v) for k, v in d.items()})
        return {"map50": self.map50, "map": self.map, "per_class_ap50": clean(self.per_class_ap50),
                "per_class_ap": clean(self.per_class_ap), "n_images": self.n_images, "n_gt": self.n_gt,
                "n_detections": self.n_detections}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) x1, y1, x2, y2 -> (N, M) IoU; numpy, as torchvision.ops.box_iou (no torch on the robot)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def _as_np(x, dtype, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype).reshape(-1, *shape_tail)


def average_precision(tp: np.ndarray, n_gt: int) -> float:
    """101-point interpolated AP from a score-ranked true-positive flag vector (COCOeval)."""
    if n_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    tp_sum = np.cumsum(tp, dtype=np.float64)
    fp_sum = np.cumsum(1 - tp, dtype=np.float64)
    recall = tp_sum / n_gt
    precision = tp_sum / np.maximum(tp_sum + fp_sum, np.finfo(np.float64).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # envelope: best precision at any higher recall
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def evaluate_detections(pred_boxes: Sequence, pred_scores: Sequence, pred_classes: Sequence,
                        gt_boxes: Sequence, gt_classes: Sequence, num_classes: int,
                        score_threshold: float = 0.0, class_names: Sequence[str] | None = None,
                        max_detections: int = 100) -> DetectionReport:
    """Per-image lists of arrays/tensors: boxes (K, 4) x1, y1, x2, y2 in one pixel frame, scores (K,),
    classes (K,) int ids in 0..num_classes-1. Detections scoring below ``score_threshold`` are dropped
    (keep it 0 for mAP: thresholds only cut the precision-recall curve short)."""
    n_images = len(gt_boxes)
    lengths = {len(pred_boxes), len(pred_scores), len(pred_classes), len(gt_classes)}
    if lengths != {n_images}:
        raise ValueError(f"per-image lists differ in length: predictions {len(pred_boxes)}/{len(pred_scores)}/"
                         f"{len(pred_classes)}, ground truth {n_images}/{len(gt_classes)}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for num_classes={num_classes}")
    n_thr = len(IOU_THRESHOLDS)
    scores_by_class: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    tp_by_class: list[list[np.ndarray]] = [[] for _ in range(num_classes)]  # (n_det, n_thr) each
    n_gt_class = np.zeros(num_classes, np.int64)
    n_det_total = 0
    for i in range(n_images):
        pb = _as_np(pred_boxes[i], np.float32, (4,))
        ps = _as_np(pred_scores[i], np.float64)
        pc = _as_np(pred_classes[i], np.int64)
        gb = _as_np(gt_boxes[i], np.float32, (4,))
        gc = _as_np(gt_classes[i], np.int64)
        if not len(pb) == len(ps) == len(pc) or len(gb) != len(gc):
            raise ValueError(f"image {i}: boxes, scores and classes differ in length")
        for what, ids in (("predicted", pc), ("ground truth", gc)):
            if len(ids) and (ids.min() < 0 or ids.max() >= num_classes):
                raise ValueError(f"image {i}: {what} class ids outside 0..{num_classes - 1}")
        keep = ps >= score_threshold
        pb, ps, pc = pb[keep], ps[keep], pc[keep]
        order = np.argsort(-ps, kind="mergesort")
        pb, ps, pc = pb[order], ps[order], pc[order]
        np.add.at(n_gt_class, gc, 1)
        for c in np.union1d(np.unique(pc), np.unique(gc)):
            d = pc == c
            g = gc == c
            # best first; COCOeval caps each image's detections per class
            det_b, det_s = pb[d][:max_detections], ps[d][:max_detections]
            n_det_total += len(det_s)
            tp = np.zeros((len(det_s), n_thr), np.float64)
            if len(det_s) and g.any():
                iou = box_iou(det_b, gb[g]).astype(np.float64)
                taken = np.zeros((n_thr, iou.shape[1]), bool)  # all IoU thresholds at once
                rows = np.arange(n_thr)
                for j in range(len(det_s)):
                    cand = np.where(taken, -1.0, iou[j][None, :])
                    k = np.argmax(cand, axis=1)
                    hit = cand[rows, k] >= _THRESHOLDS_CLIPPED
                    taken[rows[hit], k[hit]] = True
                    tp[j] = hit
            scores_by_class[c].append(det_s)
            tp_by_class[c].append(tp)
    ap = np.full((num_classes, n_thr), np.nan)
    for c in range(num_classes):
        if n_gt_class[c] == 0:
            continue
        if not scores_by_class[c]:
            ap[c] = 0.0
            continue
        s = np.concatenate(scores_by_class[c])
        tp = np.concatenate(tp_by_class[c])
        order = np.argsort(-s, kind="mergesort")
        for t in range(n_thr):
            ap[c, t] = average_precision(tp[order, t], int(n_gt_class[c]))
    has_gt = n_gt_class > 0
    map50 = float(np.mean(ap[has_gt, 0])) if has_gt.any() else float("nan")
    map_all = float(np.mean(ap[has_gt])) if has_gt.any() else float("nan")
    return DetectionReport(
        map50=map50, map=map_all,
        per_class_ap50={names[c]: float(ap[c, 0]) for c in range(num_classes)},
        n_images=n_images, n_gt=int(n_gt_class.sum()),
        per_class_ap={names[c]: float(np.mean(ap[c])) for c in range(num_classes)},
        n_detections=n_det_total)
