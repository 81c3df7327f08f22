"""Fitting the post-hoc shift monitor (dann_ros.model.feature_monitor) when a model is exported.

The frames are the ones training used: the adaptation-target bags of the checkpoint's training
config (the monitor's "known" domain) and its source (the classifier term of the monitor).
They are read straight from the bags and Replicator folders the config names, at the model's
preprocessing, spread over each bag: 300 target and 100 source frames by default, since the
forward passes are the cost (about 20 s for a demo detector on 2 busy CPU cores). Without
target frames (data moved, a test checkpoint) the model is exported without the monitor,
with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dann_ros.data import replicator
from dann_ros.data.bags import BagSelection, bag_info, iter_frames
from dann_ros.data.preprocess import Preprocess
from dann_ros.data.tasks import task_spec
from dann_ros.export.metadata import ModelInfo
from dann_ros.model.feature_monitor import FeatureMonitor, MonitorFit, fit_monitor
from dann_ros.model.inference import pooled_features

if TYPE_CHECKING:
    from dann_ros.train.config import TrainConfig

log = logging.getLogger(__name__)

#: Extra metadata key holding the fit's report (frames used, mean scores); informational.
REPORT_KEY = "dann_ros.feature_monitor"


def bag_frames(bag: Path, preprocess: Preprocess, limit: int, topics: tuple[str, ...] = ()) -> np.ndarray:
    """Up to ``limit`` prepared frames spread evenly over the bag's image messages, in time order."""
    info = bag_info(bag)
    wanted = [t for t in info.image_topics if not topics or t in topics]
    total = sum(info.image_topics[t][1] for t in wanted)
    stride = max(1, total // max(1, limit))
    frames = [preprocess.prepare(f.image)[0]
              for f in iter_frames(bag, BagSelection(topics=tuple(wanted), stride=stride))]
    return np.stack(frames[:limit]) if frames else np.zeros((0, *preprocess.input_shape), np.uint8)


def source_frames(cfg, preprocess: Preprocess, limit: int) -> np.ndarray | None:
    """Source images as the model saw them: Replicator crops (classification) or whole frames."""
    src = cfg.source
    if src.bag is not None:
        return bag_frames(Path(src.bag), preprocess, limit, tuple(src.topics))
    if src.replicator is None:
        return None
    crops = task_spec(cfg.task).source_crops
    frames = replicator.scan(src.replicator, read_boxes=crops)
    if crops and src.frame_labels is None:
        images = [crop for crop, _ in replicator.iter_crops(frames[:limit])][:limit]
    else:
        step = max(1, len(frames) // limit)
        images = [f.load_rgb() for f in frames[::step][:limit]]
    return np.stack([preprocess.prepare(im)[0] for im in images]) if images else None


def training_monitor_frames(cfg: TrainConfig | Exception, preprocess: Preprocess,
                            limit: int = 300) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(target frames, source frames or None) from the checkpoint's training config (or why it has
    none: then None, with a warning)."""
    try:
        if isinstance(cfg, Exception):
            raise cfg
        bags = [Path(b) for b in cfg.target.bags]
        if not bags:
            return None
        per_bag = max(1, limit // len(bags))
        target = np.concatenate([bag_frames(b, preprocess, per_bag, tuple(cfg.target.topics)) for b in bags])
        try:
            source = source_frames(cfg, preprocess, limit // 3)
        except Exception as exc:  # the report is optional; the monitor is not
            log.warning("source frames unavailable for the shift monitor's report (%s)", exc)
            source = None
        return target, source
    except Exception as exc:  # data moved or deleted, or an older config
        log.warning("adaptation-target frames unavailable: exporting without the feature shift monitor (%s)", exc)
        return None


def attach_feature_monitor(module: torch.nn.Module, info: ModelInfo, target: np.ndarray,
                           source: np.ndarray | None = None) -> tuple[ModelInfo, MonitorFit]:
    """Fit the monitor on the deployed module's frozen pooled features and add it to the graph."""
    device = torch.device("cpu")
    feats_t = pooled_features(module.model, target, device, batch_size=64).numpy()
    feats_s = pooled_features(module.model, source, device, batch_size=64).numpy() if source is not None else None
    fit = fit_monitor(feats_t, feats_s)
    module.feature_monitor = FeatureMonitor(fit).eval()
    log.info("feature shift monitor: %s", fit.report)
    return dataclasses.replace(info, has_feature_monitor=True), fit
