"""Classification training: object crops (or whole frames) with a class id each; top-1 accuracy,
and the label-free IM / SND scores of the target frames that checkpoint selection reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dann_ros.data import replicator
from dann_ros.data.frame_cache import crop_store, frame_label_store, labelled_bag
from dann_ros.data.frame_store import DEFAULT_EVAL_MEMORY_MB, ProgressFn, Store, Subset
from dann_ros.data.labels import LabelFile
from dann_ros.model.inference import predict
from dann_ros.train import metrics
from dann_ros.train.config import TrainConfig
from dann_ros.train.streaming import eval_batches
from dann_ros.train.tasks.base import TrainTask


def probabilities(model: torch.nn.Module, stores: Sequence[Store], device: torch.device,
                  budget_mb: float = DEFAULT_EVAL_MEMORY_MB) -> torch.Tensor:
    """Softmax outputs over every record of ``stores``, read a budget's batch at a time."""
    out = [predict(model, x, device, budget_mb=budget_mb, features=False)[0]
           for s in stores for x in eval_batches(model, s, budget_mb)]
    return torch.cat(out) if out else torch.empty(0)


class ClassificationTraining(TrainTask):
    label = "class_ids"

    def source_store(self, cfg: TrainConfig, progress: ProgressFn | None) -> tuple[Store, tuple[str, ...]]:
        src, pp, cache = cfg.source, cfg.preprocess, cfg.cache_dir
        if src.replicator is None:  # a labelled bag (e.g. train-on-target): its frames with a known label
            classes = cfg.classes or tuple(LabelFile.load(src.labels).classes)
            frames = labelled_bag(src.bag, src.labels, src.topics, pp, classes, cache, progress)
            return Subset(frames, np.flatnonzero(frames.columns["class_ids"] >= 0)), classes
        if src.frame_labels is not None:
            store = frame_label_store(src.replicator, src.frame_labels, cfg.classes, pp, cache, progress)
        else:
            spec = replicator.CropSpec(src.crop.margin, src.crop.square, src.crop.min_size, src.crop.max_occlusion)
            store = crop_store(src.replicator, spec, cfg.classes, pp, cache, progress)
        return store, tuple(store.meta["notes"]["class_names"])

    def eval_target_store(self, cfg: TrainConfig, classes: tuple[str, ...]) -> Store:
        e = cfg.eval_target
        return labelled_bag(e.bag, e.labels, e.topics, cfg.preprocess, classes, cfg.cache_dir)

    def targets(self, model: torch.nn.Module, source: dict[str, Any], device: torch.device) -> torch.Tensor:
        return source["labels"]

    def evaluate(self, model, source_val, eval_target, target_frames, device, classes,
                 budget_mb: float = DEFAULT_EVAL_MEMORY_MB) -> dict[str, float]:
        key = self.spec.metric_key
        probs = probabilities(model, [source_val], device, budget_mb)
        out = {key("source_val"): metrics.accuracy(probs.argmax(1).numpy(), source_val.columns["class_ids"])}
        if eval_target is not None:
            probs_e = probabilities(model, [eval_target], device, budget_mb)
            out[key("target")] = metrics.accuracy(probs_e.argmax(1).numpy(), eval_target.columns["class_ids"])
        if target_frames:
            probs_t = probabilities(model, target_frames, device, budget_mb)
            out["im"] = metrics.information_maximization(probs_t)
            out["snd"] = metrics.soft_neighborhood_density(probs_t)
        return out
