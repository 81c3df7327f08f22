"""Detection training: whole frames with boxes (network-input pixels); the detector encodes its own
targets per batch; COCO-style mAP@0.5 and mAP@[.5:.95] on the source-val and eval-target frames, and
the label-free box stability score of the unlabelled target frames that checkpoint selection reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dann_ros.data.frame_cache import detection_store
from dann_ros.data.frame_store import MemoryStore, ProgressFn, Store
from dann_ros.model.detection_metrics import evaluate_detections
from dann_ros.model.inference import Detections, predict_detections, predict_detections_with_dropout
from dann_ros.train import metrics
from dann_ros.train.config import TrainConfig
from dann_ros.train.datasets import LabelledBoxes, load_detection_bag, load_detection_source
from dann_ros.train.streaming import iter_store
from dann_ros.train.tasks import TrainTask


def boxes_store(data: LabelledBoxes, classes: tuple[str, ...]) -> MemoryStore:
    return MemoryStore(data.images, {}, {"boxes": list(data.boxes), "box_classes": list(data.classes)},
                       {"notes": {"class_names": list(classes)}})


def box_stability(model: torch.nn.Module, stores: Sequence[Store], device: torch.device, seed: int = 0) -> float:
    """Box stability score (metrics.box_stability) of ``model`` on every record of ``stores``. The
    dropout masks come from a generator seeded afresh per call, so every checkpoint of a run is scored
    with the same masks on the same frames."""
    generator = torch.Generator(device=device).manual_seed(seed)
    clean: list[Detections] = []
    perturbed: list[Detections] = []
    for x in (batch for store in stores for batch in iter_store(store, 128)):
        c, p = predict_detections_with_dropout(model, x, device, metrics.STABILITY_DROPOUT, generator)
        clean, perturbed = clean + c, perturbed + p
    return metrics.box_stability(clean, perturbed)


class DetectionTraining(TrainTask):
    ragged = ("boxes", "box_classes")

    def source_store(self, cfg: TrainConfig, progress: ProgressFn | None) -> tuple[Store, tuple[str, ...]]:
        src = cfg.source
        if src.replicator is None:  # a labelled detection bag: small, read in RAM
            data, classes = load_detection_source(src, cfg.preprocess, cfg.classes, cfg.cache_dir)
            return boxes_store(data, classes), classes
        store = detection_store(src.replicator, src.crop.max_occlusion, cfg.classes, cfg.preprocess, cfg.cache_dir,
                                progress)
        return store, tuple(store.meta["notes"]["class_names"])

    def eval_target_store(self, cfg: TrainConfig, classes: tuple[str, ...]) -> Store:
        e = cfg.eval_target
        return boxes_store(load_detection_bag(e.bag, e.labels, e.topics, cfg.preprocess, classes, cfg.cache_dir),
                           classes)

    def targets(self, model: torch.nn.Module, source: dict[str, Any], device: torch.device) -> Any:
        return model.encode_targets([b.numpy() for b in source["boxes"]], [c.numpy() for c in source["box_classes"]])

    def evaluate(self, model, source_val, eval_target, target_frames, device, classes) -> dict[str, float]:
        key = self.spec.metric_key
        out: dict[str, float] = {}
        for split, store in (("source_val", source_val), ("target", eval_target)):
            if store is None:
                continue
            boxes, scores, ids = [], [], []
            for x in iter_store(store, 128):
                b, s, c = predict_detections(model, x, device)
                boxes, scores, ids = boxes + b, scores + s, ids + c
            n = len(store)
            report = evaluate_detections(boxes, scores, ids, [store.ragged("boxes", i) for i in range(n)],
                                         [store.ragged("box_classes", i) for i in range(n)], len(classes),
                                         class_names=classes)
            out[key(split)], out[f"{split}_map"] = report.map50, report.map
        if target_frames:
            out["stability"] = box_stability(model, target_frames, device)
        return out


__all__ = ["DetectionTraining", "boxes_store"]
