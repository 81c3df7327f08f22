"""Decode once into a :class:`~dann_ros.data.frame_store.FrameStore`: bags, Replicator crops and frames.

Each builder streams: one frame is decoded, prepared (``Preprocess.prepare``, the deployed
node's own function) and appended to the store at a time, so memory stays flat however long the
bag or large the render set. The cache key is the input files (names, sizes, mtimes), the
selection and the preprocessing; a store whose key or checks fail is rebuilt. Builds report
frames/s, ETA and skipped frames (``progress``) and log the skip reasons.

This is the one frame cache: unlabelled target bags, Replicator sources and labelled bags (a bag's
store with its label file matched on as columns: :func:`labelled_bag`, :func:`detection_bag`) alike.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dann_ros.data import replicator
from dann_ros.data.bags import BagError, BagSelection, DecodeStats, bag_info, iter_frames
from dann_ros.data.frame_store import FrameStore, ProgressFn, Store, Subset, log_progress, open_or_build
from dann_ros.data.labels import LabelFile, LabelMatch, class_map
from dann_ros.data.preprocess import Geometry, Preprocess
from dann_ros.data.tasks import task_spec

log = logging.getLogger(__name__)


def _files_signature(path: Path) -> list[list[Any]]:
    resolved = path.resolve()
    if resolved.is_dir():
        files = sorted(p for p in resolved.rglob("*") if p.is_file())
    else:
        files = [resolved]
    return [[str(p.relative_to(resolved) if p != resolved else p.name), p.stat().st_size, p.stat().st_mtime_ns]
            for p in files]


def _tree_digest(root: Path) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(_files_signature(root)).encode()).hexdigest()


def estimate_bag_frames(bag: str | os.PathLike[str], selection: BagSelection) -> int | None:
    """An upper estimate of the frames a selection takes from a bag (None when the bag has no counts)."""
    info = bag_info(bag)
    topics = selection.topics or tuple(info.image_topics)
    counts = [info.image_topics[t][1] for t in topics if t in info.image_topics]
    if not counts or not any(counts):
        return None
    share = 1.0
    if info.start_ns is not None and info.end_ns is not None and info.end_ns > info.start_ns:
        duration = (info.end_ns - info.start_ns) / 1e9
        start = selection.start_s or 0.0
        end = min(selection.end_s if selection.end_s is not None else duration, duration)
        share = min(1.0, max(0.0, end - start) / duration + 0.02)
    return sum(math.ceil(c * share / selection.stride) + 1 for c in counts)


def bag_store(bag: str | os.PathLike[str], selection: BagSelection, preprocess: Preprocess,
              cache_dir: str | os.PathLike[str], progress: ProgressFn | None = log_progress) -> FrameStore:
    """The prepared frames of one bag. Columns: stamps_ns, log_times_ns, indices (message index in the
    bag), topic_ids (into ``meta['notes']['topics']``), image_sizes (h, w), geometries (sx, sy, ox, oy)."""
    path = Path(bag)
    key = {"kind": "bag", "bag": str(path.resolve()), "files": _files_signature(path),
           "selection": dataclasses.asdict(selection), "preprocess": preprocess.to_json()}

    def build(make_writer) -> FrameStore:
        expected = estimate_bag_frames(path, selection)
        stats = DecodeStats()
        topics: dict[str, int] = {}
        with make_writer(preprocess.input_shape, expected, f"bag {path}", progress) as writer:
            frames = iter_frames(path, selection, stats)
            for frame in frames:
                chw, g = preprocess.prepare(frame.image)
                writer.append(chw, {
                    "stamps_ns": frame.stamp_ns, "log_times_ns": frame.log_time_ns, "indices": frame.index,
                    "topic_ids": topics.setdefault(frame.topic, len(topics)),
                    "image_sizes": frame.image.shape[:2], "geometries": (g.scale_x, g.scale_y, g.offset_x, g.offset_y)})
                writer.skipped, writer.reasons = stats.skipped, stats.examples
            writer.skipped, writer.reasons = stats.skipped, stats.examples
            if not stats.ok:
                log.warning("bag %s: %s", path, stats.summary())
            if not len(writer):
                raise BagError(f"no frames decoded from bag {path} for {selection}: {stats.summary()}")
            writer.notes.update(topics=list(topics), decode_stats=json.loads(stats.to_json()))
            return writer.finish()

    return open_or_build(cache_dir, f"bag-{path.resolve().name}", key, build)


@dataclass(frozen=True)
class FrameIndex:
    """Which message each record of a bag store is: what a label file is matched against (``LabelFile.match``)."""

    stamps_ns: np.ndarray  # (N,) int64 header stamps
    indices: np.ndarray  # (N,) int64 message index on its topic
    topics: np.ndarray  # (N,) str


def frame_index(store: Store) -> FrameIndex:
    c = store.columns
    topics = np.asarray(store.meta["notes"]["topics"], dtype=str)
    return FrameIndex(c["stamps_ns"], c["indices"], topics[c["topic_ids"]])


def frame_geometry(store: Store, i: int) -> Geometry:
    """Record ``i``'s resize (network pixels = image pixels * scale + offset), in Python floats."""
    return Geometry(*(float(v) for v in store.columns["geometries"][i]))


def to_network(boxes: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(K, 4) input-image boxes -> network-input pixels (the inverse of ``Geometry.to_image``)."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, 0::2] = out[:, 0::2] * geometry.scale_x + geometry.offset_x
    out[:, 1::2] = out[:, 1::2] * geometry.scale_y + geometry.offset_y
    return out


def _matched(bag: Path, labels: Path, topics: tuple[str, ...], preprocess: Preprocess, cache_dir,
             progress: ProgressFn | None) -> tuple[FrameStore, LabelFile, LabelMatch]:
    store = bag_store(bag, BagSelection(topics=tuple(topics)), preprocess, cache_dir, progress)
    label_file = LabelFile.load(labels)
    match = label_file.match(frame_index(store))
    if match.unmatched:
        log.warning("%s: %d of %d frames of %s have no label", labels, match.unmatched, len(store), bag)
    return store, label_file, match


def labelled_bag(bag: str | os.PathLike[str], labels: str | os.PathLike[str], topics: tuple[str, ...],
                 preprocess: Preprocess, classes: tuple[str, ...], cache_dir: str | os.PathLike[str],
                 progress: ProgressFn | None = log_progress) -> Subset:
    """Every frame of a bag with a classification label file, through the bag's frame store: column
    ``class_ids`` indexes ``classes`` (-1: no label, or a class the model does not know)."""
    store, label_file, match = _matched(Path(bag), Path(labels), topics, preprocess, cache_dir, progress)
    if match.class_ids is None:
        raise ValueError(f"{labels}: a {label_file.task} label file; classification needs frame labels")
    to_ours = class_map(label_file.classes, classes)
    return Subset(store, np.arange(len(store)), own_columns={"class_ids": to_ours[match.class_ids]})


def detection_bag(bag: str | os.PathLike[str], labels: str | os.PathLike[str], topics: tuple[str, ...],
                  preprocess: Preprocess, classes: tuple[str, ...], cache_dir: str | os.PathLike[str],
                  progress: ProgressFn | None = log_progress) -> Subset:
    """The labelled frames of a bag with a detection label file, through the bag's frame store: ragged
    ``boxes`` in each frame's network-input pixels and ``box_classes`` indexing ``classes`` (boxes of
    other classes dropped)."""
    store, label_file, match = _matched(Path(bag), Path(labels), topics, preprocess, cache_dir, progress)
    if not task_spec(label_file.task).has_boxes:
        raise ValueError(f"{labels}: a {label_file.task} label file; detection needs boxes")
    to_ours = class_map(label_file.classes, classes)
    keep = np.flatnonzero(match.matched)
    boxes, ids = [], []
    for i in keep:
        cls = to_ours[match.box_class_ids[i]] if len(match.box_class_ids[i]) else np.zeros(0, np.int64)
        known = cls >= 0
        boxes.append(to_network(match.boxes[i], frame_geometry(store, int(i)))[known])
        ids.append(cls[known])
    return Subset(store, keep, own_ragged={"boxes": boxes, "box_classes": ids})


@contextmanager
def cache_or_temporary(cache_dir: str | os.PathLike[str] | None) -> Iterator[Path]:
    """``cache_dir``, or (None) a temporary folder deleted afterwards: a one-off evaluation of a bag
    streams it through a frame store too, and keeps nothing."""
    if cache_dir is not None:
        yield Path(cache_dir)
        return
    with tempfile.TemporaryDirectory(prefix="dann_ros-frames-") as tmp:
        yield Path(tmp)


def split_by_topic(store: FrameStore) -> dict[str, Subset]:
    """One view per camera topic of a bag store, so topics can be mixed with their own weights."""
    ids = store.columns["topic_ids"]
    return {topic: Subset(store, np.flatnonzero(ids == i)) for i, topic in enumerate(store.meta["notes"]["topics"])
            if (ids == i).any()}


def decode_stats(store: FrameStore) -> DecodeStats:
    """What was skipped (and why) when a bag store was built, also when it is read back from the cache."""
    return DecodeStats.from_json(json.dumps(store.meta["notes"]["decode_stats"]))


def crop_store(root: str | os.PathLike[str], spec: replicator.CropSpec, classes: tuple[str, ...],
               preprocess: Preprocess, cache_dir: str | os.PathLike[str],
               progress: ProgressFn | None = log_progress) -> FrameStore:
    """Object crops of a Replicator set for classification. Column ``class_ids`` indexes
    ``meta['notes']['class_names']`` (``classes`` if given, else every name found, sorted)."""
    root = Path(root)
    key = {"kind": "replicator-crops", "reader": replicator.READER_VERSION, "root": str(root.resolve()),
           "files": _tree_digest(root),
           "crop": dataclasses.asdict(spec), "classes": list(classes), "preprocess": preprocess.to_json()}

    def build(make_writer) -> FrameStore:
        frames = replicator.scan(root)
        names = classes or tuple(sorted({b.class_name for f in frames for b in f.boxes}))
        index = {n: i for i, n in enumerate(names)}
        expected = sum(1 for f in frames for b in f.boxes if b.class_among(index) is not None)
        with make_writer(preprocess.input_shape, expected, f"Replicator crops {root}", progress) as writer:
            crops = replicator.iter_crops(frames, spec, set(names))
            for crop, name in crops:
                writer.append(preprocess.prepare(crop)[0], {"class_ids": index[name]})
                writer.skipped = sum(crops.stats.skipped.values())
                writer.reasons = [f"{why}: {n} boxes" for why, n in crops.stats.skipped.most_common()]
            stats = crops.stats
            writer.skipped = sum(stats.skipped.values()) + stats.bad_frames
            log.info("source crops %s: %d kept, skipped %s, unreadable frames %d", root, len(writer),
                     dict(stats.skipped), stats.bad_frames)
            if not len(writer):
                raise ValueError(f"{root}: no labelled source images found (check the classes and crop settings)")
            writer.notes.update(class_names=list(names), skipped=dict(stats.skipped), bad_frames=stats.bad_frames)
            return writer.finish()

    return open_or_build(cache_dir, f"crops-{root.resolve().name}", key, build)


def frame_label_store(root: str | os.PathLike[str], label_file: str | os.PathLike[str], classes: tuple[str, ...],
                      preprocess: Preprocess, cache_dir: str | os.PathLike[str],
                      progress: ProgressFn | None = log_progress) -> FrameStore:
    """Whole Replicator frames with a class per frame (``source.frame_labels``); column ``class_ids``."""
    root, label_file = Path(root), Path(label_file)
    key = {"kind": "replicator-frame-labels", "root": str(root.resolve()), "files": _tree_digest(root),
           "labels": _files_signature(label_file), "classes": list(classes), "preprocess": preprocess.to_json()}

    def build(make_writer) -> FrameStore:
        pairs = replicator.frame_labels(root, label_file)
        names = classes or tuple(sorted({n for _, n in pairs}))
        index = {n: i for i, n in enumerate(names)}
        with make_writer(preprocess.input_shape, len(pairs), f"Replicator frames {root}", progress) as writer:
            for frame, name in pairs:
                if name not in index:
                    writer.skip()
                    continue
                writer.append(preprocess.prepare(frame.load_rgb())[0], {"class_ids": index[name]})
            writer.notes.update(class_names=list(names))
            return writer.finish()

    return open_or_build(cache_dir, f"frames-{root.resolve().name}", key, build)


def detection_store(root: str | os.PathLike[str], max_occlusion: float, classes: tuple[str, ...],
                    preprocess: Preprocess, cache_dir: str | os.PathLike[str],
                    progress: ProgressFn | None = log_progress) -> FrameStore:
    """Whole Replicator frames with their tight boxes for detection. Ragged columns ``boxes``
    ((K, 4) float32 x1, y1, x2, y2 in network-input pixels) and ``box_classes`` ((K,) int64);
    boxes hidden more than ``max_occlusion`` are dropped; frames without boxes stay as negatives;
    unreadable frames are skipped and counted."""
    root = Path(root)
    key = {"kind": "replicator-detection", "reader": replicator.READER_VERSION, "root": str(root.resolve()),
           "files": _tree_digest(root),
           "max_occlusion": max_occlusion, "classes": list(classes), "preprocess": preprocess.to_json()}

    def build(make_writer) -> FrameStore:
        frames = replicator.scan(root)
        names = classes or tuple(sorted({b.class_name for f in frames for b in f.boxes}))
        index = {n: i for i, n in enumerate(names)}
        occluded, bad = 0, []
        with make_writer(preprocess.input_shape, len(frames), f"Replicator frames {root}", progress) as writer:
            for frame in frames:
                try:
                    image = frame.load_rgb()
                except replicator.ReplicatorFormatError as err:
                    bad.append(str(err))
                    writer.skip()
                    continue
                chw, g = preprocess.prepare(image)
                kept = [(b, b.class_among(index)) for b in frame.boxes]
                kept = [(b, name) for b, name in kept if name is not None]
                visible = [(b, name) for b, name in kept if b.occlusion is None or b.occlusion <= max_occlusion]
                occluded += len(kept) - len(visible)
                boxes = np.array([[b.x_min, b.y_min, b.x_max, b.y_max] for b, _ in visible],
                                 np.float32).reshape(-1, 4)
                boxes[:, 0::2] = boxes[:, 0::2] * g.scale_x + g.offset_x
                boxes[:, 1::2] = boxes[:, 1::2] * g.scale_y + g.offset_y
                writer.append(chw, {"geometries": (g.scale_x, g.scale_y, g.offset_x, g.offset_y)},
                              {"boxes": boxes, "box_classes": np.array([index[name] for _, name in visible],
                                                                       np.int64)})
            if bad:
                log.warning("%s: %d unreadable frames skipped, e.g. %s", root, len(bad), bad[0])
            if not len(writer):
                raise ValueError(f"{root}: no readable Replicator frames")
            duplicates = sum(f.duplicates for f in frames)
            writer.notes.update(class_names=list(names), occluded_boxes=occluded, duplicate_boxes=duplicates,
                                unreadable=bad[:5])
            return writer.finish()

    return open_or_build(cache_dir, f"detection-{root.resolve().name}", key, build)
