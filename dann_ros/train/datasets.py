"""Training data as in-memory uint8 tensors, prepared once and cached on disk.

Decoding PNGs and bag messages every epoch would dominate a small model's
step time; instead every source crop and target frame goes through
``Preprocess.prepare`` once (the same function the deployed node calls) and
is kept as (N, C, H, W) uint8. Cache files are .npz (no pickle) keyed by a
hash of the inputs and the preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dann_ros.data import replicator
from dann_ros.data.bags import BagSelection, load_frames
from dann_ros.data.labels import LabelFile
from dann_ros.data.preprocess import Preprocess
from dann_ros.train.config import SourceConfig, TargetConfig

log = logging.getLogger(__name__)


@dataclass
class LabelledImages:
    images: np.ndarray  # (N, C, H, W) uint8
    labels: np.ndarray  # (N,) int64 class ids; -1 = unknown


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts], sort_keys=True).encode()).hexdigest()[:20]


def _tree_signature(root: Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    newest = max((p.stat().st_mtime_ns for p in files), default=0)
    return f"{root.resolve()}:{len(files)}:{newest}"


def _prepare_all(images, preprocess: Preprocess) -> np.ndarray:
    out = np.empty((len(images), *preprocess.input_shape), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = preprocess.prepare(image)[0]
    return out


def load_replicator_source(cfg: SourceConfig, preprocess: Preprocess, classes: tuple[str, ...],
                           cache_dir: Path | None) -> tuple[LabelledImages, tuple[str, ...]]:
    """Object crops (or labelled whole frames) from Replicator output, with their class names."""
    root = Path(cfg.replicator)
    key = _digest("replicator/1", _tree_signature(root), cfg.crop, cfg.frame_labels, preprocess.to_json(), classes)
    cache = cache_dir / f"source-{key}.npz" if cache_dir else None
    if cache and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return LabelledImages(z["images"], z["labels"]), tuple(str(c) for c in z["classes"])
    if cfg.frame_labels is not None:
        pairs = [(f.load_rgb(), name) for f, name in replicator.frame_labels(root, cfg.frame_labels)]
    else:
        frames = replicator.scan(root)
        spec = replicator.CropSpec(cfg.crop.margin, cfg.crop.square, cfg.crop.min_size, cfg.crop.max_occlusion)
        crops = replicator.iter_crops(frames, spec, set(classes) if classes else None)
        pairs = list(crops)
        log.info("source crops: %d kept, skipped %s", len(pairs), getattr(crops, "skipped", {}))
    if not pairs:
        raise ValueError(f"{root}: no labelled source images found (check the classes and crop settings)")
    names = classes or tuple(sorted({name for _, name in pairs}))
    index = {n: i for i, n in enumerate(names)}
    kept = [(img, index[n]) for img, n in pairs if n in index]
    data = LabelledImages(_prepare_all([img for img, _ in kept], preprocess),
                          np.array([c for _, c in kept], dtype=np.int64))
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp.npz")  # concurrent runs never share it
        np.savez(tmp, images=data.images, labels=data.labels, classes=np.array(names))
        tmp.replace(cache)
    return data, names


def load_bag_frames(bags: tuple[Path, ...], topics: tuple[str, ...], preprocess: Preprocess,
                    cache_dir: Path | None, stride: int = 1, start_s: float | None = None,
                    end_s: float | None = None):
    """All frames of the given bags, prepared; returns a list of FrameSets (one per bag)."""
    selection = BagSelection(topics=tuple(topics), stride=stride, start_s=start_s, end_s=end_s)
    sets = []
    for bag in bags:
        fs = load_frames(bag, selection, preprocess.prepare, cache_dir=cache_dir, cache_key=preprocess.to_json())
        if fs.stats.skipped:
            log.warning("%s: %d frames could not be decoded and were skipped", bag, fs.stats.skipped)
        sets.append(fs)
    return sets


def load_target(cfg: TargetConfig, preprocess: Preprocess, cache_dir: Path | None, seed: int) -> np.ndarray:
    sets = load_bag_frames(cfg.bags, cfg.topics, preprocess, cache_dir, cfg.stride, cfg.start_s, cfg.end_s)
    images = np.concatenate([fs.images for fs in sets]) if sets else np.empty((0, *preprocess.input_shape), np.uint8)
    if cfg.max_frames is not None and len(images) > cfg.max_frames:
        pick = np.sort(np.random.default_rng(seed).choice(len(images), cfg.max_frames, replace=False))
        images = images[pick]
    if len(images) == 0:
        raise ValueError(f"target bags {[str(b) for b in cfg.bags]}: no decodable image frames")
    return images


def load_labelled_bag(bag: Path, labels: Path, topics: tuple[str, ...], preprocess: Preprocess,
                      classes: tuple[str, ...], cache_dir: Path | None) -> LabelledImages:
    """A bag and its sidecar label file, labels mapped onto ``classes`` (-1 where unknown)."""
    (fs,) = load_bag_frames((bag,), topics, preprocess, cache_dir)
    label_file = LabelFile.load(labels)
    match = label_file.match(fs)
    if match.class_ids is None:
        raise ValueError(f"{labels}: a {label_file.task} label file; classification needs frame labels")
    if match.unmatched:
        log.warning("%s: %d of %d frames of %s have no label", labels, match.unmatched, len(match.class_ids), bag)
    to_ours = np.array([classes.index(c) if c in classes else -1 for c in label_file.classes] + [-1], np.int64)
    return LabelledImages(fs.images, to_ours[match.class_ids])


def load_source(cfg: SourceConfig, preprocess: Preprocess, classes: tuple[str, ...],
                cache_dir: Path | None) -> tuple[LabelledImages, tuple[str, ...]]:
    if cfg.replicator is not None:
        return load_replicator_source(cfg, preprocess, classes, cache_dir)
    names = classes or tuple(LabelFile.load(cfg.labels).classes)
    data = load_labelled_bag(cfg.bag, cfg.labels, cfg.topics, preprocess, names, cache_dir)
    keep = data.labels >= 0
    return LabelledImages(data.images[keep], data.labels[keep]), names


def split_validation(data: LabelledImages, fraction: float, seed: int) -> tuple[LabelledImages, LabelledImages]:
    order = np.random.default_rng(seed).permutation(len(data.labels))
    n_val = max(1, int(round(len(order) * fraction)))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (LabelledImages(data.images[train], data.labels[train]),
            LabelledImages(data.images[val], data.labels[val]))
