"""Detection training: whole frames with boxes (network-input pixels); the detector encodes its own
targets per batch; COCO-style mAP@0.5 and mAP@[.5:.95] on the source-val and eval-target frames, and
the label-free box stability score of the unlabelled target frames that checkpoint selection reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dann_ros.data.frame_cache import detection_bag, detection_store
from dann_ros.data.frame_store import DEFAULT_EVAL_MEMORY_MB, ProgressFn, Store
from dann_ros.data.labels import LabelFile
from dann_ros.model.detection_metrics import evaluate_detections
from dann_ros.model.inference import (DETECTION_PASSES, Detections, predict_detections,
                                      predict_detections_with_dropout)
from dann_ros.train import metrics
from dann_ros.train.config import TrainConfig
from dann_ros.train.streaming import eval_batches
from dann_ros.train.tasks.base import TrainTask


def box_stability(model: torch.nn.Module, stores: Sequence[Store], device: torch.device, seed: int = 0,
                  budget_mb: float = DEFAULT_EVAL_MEMORY_MB) -> float:
    """Box stability score (metrics.box_stability_between) of ``model`` on every record of ``stores``. The
    dropout masks come from a generator seeded afresh per call, so every checkpoint of a run is scored
    with the same masks on the same frames."""
    generator = torch.Generator(device=device).manual_seed(seed)
    clean: list[Detections] = []
    perturbed: list[Detections] = []
    for store in stores:
        for x in eval_batches(model, store, budget_mb, 128, DETECTION_PASSES):
            c, p = predict_detections_with_dropout(model, x, device, metrics.STABILITY_DROPOUT, generator,
                                                   budget_mb=budget_mb)
            clean += c
            perturbed += p
    return metrics.box_stability_between(clean, perturbed)


class DetectionTraining(TrainTask):
    ragged = ("boxes", "box_classes")

    def source_store(self, cfg: TrainConfig, progress: ProgressFn | None) -> tuple[Store, tuple[str, ...]]:
        src = cfg.source
        if src.replicator is None:  # a labelled detection bag
            classes = cfg.classes or tuple(LabelFile.load(src.labels).classes)
            return detection_bag(src.bag, src.labels, src.topics, cfg.preprocess, classes, cfg.cache_dir,
                                 progress), classes
        store = detection_store(src.replicator, src.crop.max_occlusion, cfg.classes, cfg.preprocess, cfg.cache_dir,
                                progress)
        return store, tuple(store.meta["notes"]["class_names"])

    def eval_target_store(self, cfg: TrainConfig, classes: tuple[str, ...]) -> Store:
        e = cfg.eval_target
        return detection_bag(e.bag, e.labels, e.topics, cfg.preprocess, classes, cfg.cache_dir)

    def targets(self, model: torch.nn.Module, source: dict[str, Any], device: torch.device) -> Any:
        return model.encode_targets([b.numpy() for b in source["boxes"]], [c.numpy() for c in source["box_classes"]])

    def object_count(self, targets: Any) -> float:
        return float(targets["mask"].sum())  # the encoded maps are on the CPU: no device sync

    def class_counts(self, targets: Any) -> torch.Tensor:
        return targets["heatmap"].eq(1.0).sum((0, 2, 3))  # an object's centre cell is exactly 1

    def evaluate(self, model, source_val, eval_target, target_frames, device, classes,
                 budget_mb: float = DEFAULT_EVAL_MEMORY_MB) -> dict[str, float]:
        key = self.spec.metric_key
        out: dict[str, float] = {}
        for split, store in (("source_val", source_val), ("target", eval_target)):
            if store is None:
                continue
            boxes, scores, ids = [], [], []
            for x in eval_batches(model, store, budget_mb, 128, DETECTION_PASSES):
                b, s, c = predict_detections(model, x, device, budget_mb=budget_mb)
                boxes += b
                scores += s
                ids += c
            n = len(store)
            report = evaluate_detections(boxes, scores, ids, [store.ragged("boxes", i) for i in range(n)],
                                         [store.ragged("box_classes", i) for i in range(n)], len(classes),
                                         class_names=classes)
            out[key(split)], out[f"{split}_map"] = report.map50, report.map
        if target_frames:
            out["stability"] = box_stability(model, target_frames, device, budget_mb=budget_mb)
        return out


__all__ = ["DetectionTraining", "box_stability"]
