"""Training data as in-memory uint8 tensors, prepared once and cached on disk.

Decoding PNGs and bag messages every epoch would dominate a small model's
step time; instead every source crop and target frame goes through
``Preprocess.prepare`` once (the same function the deployed node calls) and
is kept as (N, C, H, W) uint8. Cache files are .npz (no pickle) keyed by a
hash of the inputs and the preprocessing.

Detection keeps whole frames; their boxes go through the same Geometry as the
pixels (net = image * scale + offset), so targets are in network-input pixels.
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

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> "LabelledImages":
        return LabelledImages(self.images[idx], self.labels[idx])


@dataclass
class LabelledBoxes:
    """Whole frames with their boxes, for detection."""

    images: np.ndarray  # (N, C, H, W) uint8
    boxes: list[np.ndarray]  # per image (K, 4) float32 x1, y1, x2, y2 in network-input pixels
    classes: list[np.ndarray]  # per image (K,) int64 class ids

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray) -> "LabelledBoxes":
        return LabelledBoxes(self.images[idx], [self.boxes[i] for i in idx], [self.classes[i] for i in idx])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for an .npz (ragged per-image lists do not fit one without pickle)."""
        return {"images": self.images, "counts": np.array([len(c) for c in self.classes], np.int64),
                "boxes": np.concatenate(self.boxes).reshape(-1, 4).astype(np.float32) if self.boxes
                else np.zeros((0, 4), np.float32),
                "box_classes": np.concatenate(self.classes).astype(np.int64) if self.classes
                else np.zeros(0, np.int64)}

    @classmethod
    def from_arrays(cls, z) -> "LabelledBoxes":
        split = np.cumsum(z["counts"])[:-1]
        return cls(z["images"], np.split(z["boxes"], split), np.split(z["box_classes"], split))


def to_network(boxes: np.ndarray, geometry) -> np.ndarray:
    """(K, 4) input-image boxes -> network-input pixels (the inverse of ``Geometry.to_image``)."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, 0::2] = out[:, 0::2] * geometry.scale_x + geometry.offset_x
    out[:, 1::2] = out[:, 1::2] * geometry.scale_y + geometry.offset_y
    return out


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
        _save_npz(cache, images=data.images, labels=data.labels, classes=np.array(names))
    return data, names


def load_replicator_detection(cfg: SourceConfig, preprocess: Preprocess, classes: tuple[str, ...],
                              cache_dir: Path | None) -> tuple[LabelledBoxes, tuple[str, ...]]:
    """Whole Replicator frames with their tight boxes; boxes hidden more than ``crop.max_occlusion``
    are dropped (a mostly hidden object is no fair target). Frames without boxes stay as negatives."""
    root = Path(cfg.replicator)
    key = _digest("replicator-detection/1", _tree_signature(root), cfg.crop.max_occlusion, preprocess.to_json(),
                  classes)
    cache = cache_dir / f"source-det-{key}.npz" if cache_dir else None
    if cache and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return LabelledBoxes.from_arrays(z), tuple(str(c) for c in z["classes"])
    frames = replicator.scan(root)
    if not frames:
        raise ValueError(f"{root}: no Replicator frames found")
    names = classes or tuple(sorted({b.class_name for f in frames for b in f.boxes}))
    index = {n: i for i, n in enumerate(names)}
    images, boxes, ids, occluded = [], [], [], 0
    for frame in frames:
        chw, geometry = preprocess.prepare(frame.load_rgb())
        kept = [b for b in frame.boxes if b.class_name in index]
        visible = [b for b in kept if b.occlusion is None or b.occlusion <= cfg.crop.max_occlusion]
        occluded += len(kept) - len(visible)
        images.append(chw)
        boxes.append(to_network(np.array([[b.x_min, b.y_min, b.x_max, b.y_max] for b in visible], np.float32),
                                geometry))
        ids.append(np.array([index[b.class_name] for b in visible], np.int64))
    if not any(len(c) for c in ids):
        raise ValueError(f"{root}: no boxes of classes {list(names)} found (check classes and crop.max_occlusion)")
    log.info("source detection frames: %d, boxes %d, dropped %d occluded", len(images), sum(map(len, ids)), occluded)
    data = LabelledBoxes(np.stack(images), boxes, ids)
    if cache:
        _save_npz(cache, **data.to_arrays(), classes=np.array(names))
    return data, names


def _save_npz(cache: Path, **arrays: np.ndarray) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp.npz")  # concurrent runs never share it
    np.savez(tmp, **arrays)
    tmp.replace(cache)


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


def load_detection_bag(bag: Path, labels: Path, topics: tuple[str, ...], preprocess: Preprocess,
                       classes: tuple[str, ...], cache_dir: Path | None) -> LabelledBoxes:
    """A bag with a detection label sidecar: labelled frames only, boxes in each frame's network
    pixels, classes mapped onto ``classes`` (boxes of other classes are dropped)."""
    (fs,) = load_bag_frames((bag,), topics, preprocess, cache_dir)
    label_file = LabelFile.load(labels)
    if label_file.task != "detection":
        raise ValueError(f"{labels}: a {label_file.task} label file; detection needs boxes")
    match = label_file.match(fs)
    if match.unmatched:
        log.warning("%s: %d of %d frames of %s have no label", labels, match.unmatched, len(fs), bag)
    to_ours = np.array([classes.index(c) if c in classes else -1 for c in label_file.classes], np.int64)
    keep = np.flatnonzero(match.matched)
    boxes, ids = [], []
    for i in keep:
        cls = to_ours[match.box_class_ids[i]] if len(match.box_class_ids[i]) else np.zeros(0, np.int64)
        known = cls >= 0
        boxes.append(to_network(match.boxes[i], fs.geometry(int(i)))[known])
        ids.append(cls[known])
    return LabelledBoxes(fs.images[keep], boxes, ids)


def load_detection_source(cfg: SourceConfig, preprocess: Preprocess, classes: tuple[str, ...],
                          cache_dir: Path | None) -> tuple[LabelledBoxes, tuple[str, ...]]:
    if cfg.replicator is not None:
        return load_replicator_detection(cfg, preprocess, classes, cache_dir)
    names = classes or tuple(LabelFile.load(cfg.labels).classes)
    return load_detection_bag(cfg.bag, cfg.labels, cfg.topics, preprocess, names, cache_dir), names


def load_source(cfg: SourceConfig, preprocess: Preprocess, classes: tuple[str, ...],
                cache_dir: Path | None) -> tuple[LabelledImages, tuple[str, ...]]:
    if cfg.replicator is not None:
        return load_replicator_source(cfg, preprocess, classes, cache_dir)
    names = classes or tuple(LabelFile.load(cfg.labels).classes)
    data = load_labelled_bag(cfg.bag, cfg.labels, cfg.topics, preprocess, names, cache_dir)
    keep = data.labels >= 0
    return LabelledImages(data.images[keep], data.labels[keep]), names


def split_validation(data, fraction: float, seed: int):
    """(train, val) subsets of LabelledImages or LabelledBoxes."""
    order = np.random.default_rng(seed).permutation(len(data))
    n_val = max(1, int(round(len(order) * fraction)))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return data.subset(train), data.subset(val)
