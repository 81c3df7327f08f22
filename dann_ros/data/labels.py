"""Label sidecar of a target-domain bag, used ONLY to evaluate (never to train: DANN is unsupervised
on the target domain).

Stored as JSON next to the bag (``<bag dir>.labels.json``); see the README for the format.
Frames are matched by header stamp, falling back to the frame's index on its topic.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from dann_ros.atomic_io import write_text
from dann_ros.data.tasks import TASK_SPECS

FORMAT = "dann_ros.labels/1"
TASKS = tuple(TASK_SPECS)  # the label kinds are the tasks (data/tasks.py)


class LabelError(ValueError):
    """A label file that is invalid or does not fit the bag; the message names the file and field."""


@dataclass(frozen=True)
class LabelBox:
    """Axis-aligned box in input-image pixels (x_min, y_min) .. (x_max, y_max), pixel corners:
    x_max is exclusive, so x_max - x_min is the width (Replicator boxes are converted to this on reading)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    class_name: str


@dataclass(frozen=True)
class FrameLabel:
    index: int | None = None
    stamp_ns: int | None = None
    label: str | None = None  # classification
    boxes: tuple[LabelBox, ...] | None = None  # detection


class _FrameSetLike(Protocol):
    stamps_ns: np.ndarray
    indices: np.ndarray
    topics: np.ndarray


@dataclass(frozen=True)
class LabelMatch:
    """Labels aligned with a FrameSet's frames."""

    matched: np.ndarray  # (N,) bool
    class_ids: np.ndarray | None  # classification: (N,) int64 class index, -1 where unmatched
    boxes: list[np.ndarray] | None  # detection: per frame (K, 4) float32 x_min, y_min, x_max, y_max
    box_class_ids: list[np.ndarray] | None  # detection: per frame (K,) int64; both empty when unmatched
    unmatched: int  # frames without a label
    by_index: int  # frames matched through the index fallback


def bag_base(bag_path: str | os.PathLike[str]) -> Path:
    """The bag as a directory path, whether given as the directory, a file inside it, or a bare .mcap/.db3."""
    path = Path(bag_path)
    if path.is_file() and (path.parent / "metadata.yaml").exists():
        return path.parent
    if path.suffix in (".mcap", ".db3"):
        return path.with_suffix("")
    return path


def default_labels_path(bag_path: str | os.PathLike[str]) -> Path:
    """``/x/bag`` -> ``/x/bag.labels.json``; a file inside a bag directory maps to the directory."""
    base = bag_base(bag_path)
    return base.with_name(base.name + ".labels.json")


@dataclass(frozen=True)
class LabelFile:
    task: Literal["classification", "detection"]
    topic: str
    classes: tuple[str, ...]
    frames: tuple[FrameLabel, ...]
    source: dict[str, Any] | None = field(default=None, compare=False)  # free-form provenance
    origin: str = field(default="<LabelFile>", compare=False, repr=False)  # file it was loaded from

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "frames", tuple(self.frames))
        _validate(self.to_dict(), self.origin)
        self._build_maps()

    # -- lookup -----------------------------------------------------------------------------
    def _build_maps(self) -> None:
        object.__setattr__(self, "_by_stamp", {f.stamp_ns: f for f in self.frames if f.stamp_ns is not None})
        object.__setattr__(self, "_by_index", {f.index: f for f in self.frames if f.index is not None})
        object.__setattr__(self, "_class_ids", {c: i for i, c in enumerate(self.classes)})

    def class_id(self, name: str) -> int:
        return self._class_ids[name]  # type: ignore[attr-defined]

    def lookup(self, stamp_ns: int | None = None, index: int | None = None) -> FrameLabel | None:
        """Label of a frame by header stamp, else by its index on the topic."""
        found = self._by_stamp.get(stamp_ns) if stamp_ns is not None else None  # type: ignore[attr-defined]
        if found is None and index is not None:
            found = self._by_index.get(index)  # type: ignore[attr-defined]
        return found

    def match(self, frames: _FrameSetLike, match_on: Literal["auto", "stamp", "index"] = "auto") -> LabelMatch:
        """Align labels with frames (a FrameSet). ``auto``: stamp, else index.

        Frames of other topics stay unmatched. Raises LabelError when the label topic is not
        among the frames, or when nothing matches (or, in ``auto``, when the file has stamps but
        none of them occurs in the bag: that is a different recording, not a restamped one;
        pass ``match_on="index"`` to force index matching).
        """
        if match_on not in ("auto", "stamp", "index"):
            raise ValueError(f"match_on must be 'auto', 'stamp' or 'index', got {match_on!r}")
        topics = np.asarray(frames.topics).astype(str)
        where = f"{self.origin}: "
        stamps = np.asarray(frames.stamps_ns, np.int64)
        indices = np.asarray(frames.indices, np.int64)
        n = len(topics)
        on_topic = topics == self.topic
        if not on_topic.any():
            raise LabelError(f"{where}label topic {self.topic!r} is not among the frames' topics "
                             f"{sorted(set(topics.tolist()))}")
        by_stamp, by_index = self._by_stamp, self._by_index  # type: ignore[attr-defined]
        stamp_hits = [i for i in range(n) if on_topic[i] and int(stamps[i]) in by_stamp]
        if match_on == "auto" and by_stamp and not stamp_hits:
            raise LabelError(
                f"{where}none of the {int(on_topic.sum())} frame stamps on {self.topic} "
                f"({_span(stamps[on_topic])}) occurs in the label file ({_span(np.fromiter(by_stamp, np.int64))}); "
                "labels of another recording? (use match_on='index' if the bag was restamped)")
        chosen: list[FrameLabel | None] = [None] * n
        n_index = 0
        for i in range(n):
            if not on_topic[i]:
                continue
            if match_on != "index":
                chosen[i] = by_stamp.get(int(stamps[i]))
            if chosen[i] is None and match_on != "stamp":
                chosen[i] = by_index.get(int(indices[i]))
                n_index += chosen[i] is not None
        matched = np.array([c is not None for c in chosen], dtype=bool)
        if not matched.any():
            raise LabelError(f"{where}no frame on {self.topic} matches the label file by {match_on} "
                             f"(frame indices {_span(indices[on_topic])}, stamps {_span(stamps[on_topic])})")
        class_ids = boxes = box_ids = None
        if TASK_SPECS[self.task].label_payload == "label":
            class_ids = np.array([self.class_id(c.label) if c else -1 for c in chosen], np.int64)
        else:
            boxes, box_ids = [], []
            for c in chosen:
                bs = c.boxes if c and c.boxes else ()
                boxes.append(np.array([[b.x_min, b.y_min, b.x_max, b.y_max] for b in bs], np.float32).reshape(-1, 4))
                box_ids.append(np.array([self.class_id(b.class_name) for b in bs], np.int64))
        return LabelMatch(matched, class_ids, boxes, box_ids, int(n - matched.sum()), n_index)

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        frames = []
        for f in self.frames:
            entry: dict[str, Any] = {k: v for k, v in (("index", f.index), ("stamp_ns", f.stamp_ns)) if v is not None}
            if TASK_SPECS[self.task].label_payload == "label":
                entry["label"] = f.label
            else:
                entry["boxes"] = [{"x_min": b.x_min, "y_min": b.y_min, "x_max": b.x_max, "y_max": b.y_max,
                                   "class": b.class_name} for b in (f.boxes or ())]
            frames.append(entry)
        data: dict[str, Any] = {"format": FORMAT, "task": self.task, "topic": self.topic,
                                "classes": list(self.classes), "frames": frames}
        if self.source is not None:
            data["source"] = self.source
        return data

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<dict>") -> LabelFile:
        _validate(data, origin)
        boxes_of = (lambda f: tuple(LabelBox(float(b["x_min"]), float(b["y_min"]), float(b["x_max"]),
                                             float(b["y_max"]), b["class"]) for b in f["boxes"]))
        frames = tuple(
            FrameLabel(index=f.get("index"), stamp_ns=f.get("stamp_ns"), label=f.get("label"),
                       boxes=boxes_of(f) if TASK_SPECS[data["task"]].label_payload == "boxes" else None)
            for f in data["frames"])
        return cls(data["task"], data["topic"], tuple(data["classes"]), frames, data.get("source"), origin)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LabelFile:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"label file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise LabelError(f"{path}: not valid JSON: {err}") from None
        return cls.from_dict(data, str(path))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (tmp + rename), one frame per line for readable diffs."""
        path = Path(path)
        data = self.to_dict()
        frames = data.pop("frames")
        head = "".join(f" {json.dumps(k)}: {json.dumps(v)},\n" for k, v in data.items())
        body = ",\n".join("  " + json.dumps(f) for f in frames)
        text = f'{{\n{head} "frames": [\n{body}\n ]\n}}\n'
        return write_text(path, text)


def _span(values: np.ndarray) -> str:
    values = np.asarray(values)
    return f"{values.min()}..{values.max()}" if values.size else "none"


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _validate(data: Any, origin: str) -> None:
    """Check the whole structure; errors read like ``file: frames[12].label: ...``."""

    def fail(where: str, problem: str) -> LabelError:
        return LabelError(f"{origin}: {where}: {problem}")

    def check_keys(obj: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()) -> None:
        if not isinstance(obj, dict):
            raise fail(where, f"expected an object, got {type(obj).__name__}")
        for key in required:
            if key not in obj:
                raise fail(f"{where}.{key}" if where != "<top>" else key, "missing")
        for key in obj:
            if key not in required and key not in optional:
                raise fail(f"{where}.{key}" if where != "<top>" else key, "unknown key")

    check_keys(data, "<top>", ("format", "task", "topic", "classes", "frames"), ("source",))
    if data["format"] != FORMAT:
        raise fail("format", f"expected {FORMAT!r}, got {data['format']!r}")
    task = data["task"]
    if task not in TASK_SPECS:
        raise fail("task", f"expected one of {tuple(TASK_SPECS)}, got {task!r}")
    if not isinstance(data["topic"], str) or not data["topic"].startswith("/"):
        raise fail("topic", f"expected a topic name like '/camera/image_raw', got {data['topic']!r}")
    classes = data["classes"]
    if not isinstance(classes, (list, tuple)) or not classes:
        raise fail("classes", "expected a non-empty list of class names")
    for i, c in enumerate(classes):
        if not isinstance(c, str) or not c:
            raise fail(f"classes[{i}]", f"expected a non-empty string, got {c!r}")
    if len(set(classes)) != len(classes):
        raise fail("classes", "duplicate class names")
    if data.get("source") is not None and not isinstance(data["source"], dict):
        raise fail("source", "expected an object")
    known = set(classes)
    if not isinstance(data["frames"], (list, tuple)):
        raise fail("frames", "expected a list")
    stamps: dict[int, int] = {}
    indices: dict[int, int] = {}
    payload = TASK_SPECS[task].label_payload
    for i, f in enumerate(data["frames"]):
        where = f"frames[{i}]"
        check_keys(f, where, (payload,), ("index", "stamp_ns"))
        index, stamp = f.get("index"), f.get("stamp_ns")
        if index is None and stamp is None:
            raise fail(where, "needs stamp_ns or index")
        for key, value, seen in (("index", index, indices), ("stamp_ns", stamp, stamps)):
            if value is None:
                continue
            if not _is_int(value) or value < 0:
                raise fail(f"{where}.{key}", f"expected a non-negative integer, got {value!r}")
            if value in seen:
                raise fail(f"{where}.{key}", f"{value} repeats frames[{seen[value]}].{key}")
            seen[value] = i
        if payload == "label":
            if f["label"] not in known:
                raise fail(f"{where}.label", f"{f['label']!r} is not one of classes")
            continue
        if not isinstance(f["boxes"], (list, tuple)):
            raise fail(f"{where}.boxes", "expected a list")
        for j, b in enumerate(f["boxes"]):
            bw = f"{where}.boxes[{j}]"
            check_keys(b, bw, ("x_min", "y_min", "x_max", "y_max", "class"))
            for key in ("x_min", "y_min", "x_max", "y_max"):
                if not _is_number(b[key]):
                    raise fail(f"{bw}.{key}", f"expected a finite number, got {b[key]!r}")
            if b["x_max"] <= b["x_min"] or b["y_max"] <= b["y_min"]:
                raise fail(bw, "needs x_max > x_min and y_max > y_min")
            if b["class"] not in known:
                raise fail(f"{bw}.class", f"{b['class']!r} is not one of classes")


# --------------------------------------------------------------------------- labels -> a model's classes
def class_map(label_classes: Sequence[str], model_classes: Sequence[str]) -> np.ndarray:
    """Label-file class id -> the model's class id (-1 where the model lacks the class); one extra
    entry at the end maps the label file's -1 (no label) to -1. Every scorer uses this one map."""
    ours = {c: i for i, c in enumerate(model_classes)}
    return np.array([ours.get(c, -1) for c in label_classes] + [-1], np.int64)


def labels_onto_classes(label_file: LabelFile, class_ids: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Label-file class ids (-1 = no label) -> the model's class ids (-1 where the model lacks the class);
    an error when not one labelled class is a class of the model (labels for another model)."""
    mapped = class_map(label_file.classes, classes)[np.asarray(class_ids, np.int64)]
    if (np.asarray(class_ids) >= 0).any() and not (mapped >= 0).any():
        raise LabelError(f"{label_file.origin}: none of the label classes {list(label_file.classes)} is a class of "
                         f"the model {list(classes)}; labels for another model?")
    return mapped


@dataclass(frozen=True)
class ResolvedLabels:
    file: LabelFile
    path: Path
    automatic: bool  # found next to the bag rather than given


def resolve_labels(bag: str | os.PathLike[str], labels: str | os.PathLike[str] | None | bool, task: str,
                   topics: Sequence[str]) -> tuple[ResolvedLabels | None, str | None]:
    """The label file to score a bag against, and a note when an automatically found one is not used.

    ``labels``: a path; None/True = ``<bag>.labels.json`` if it exists; False = none."""
    if labels is False:
        return None, None
    automatic = labels is None or labels is True
    path = default_labels_path(bag) if automatic else Path(labels)  # type: ignore[arg-type]
    if automatic and not path.exists():
        return None, None
    label_file = LabelFile.load(path)
    if label_file.task != task:
        raise LabelError(f"{path}: a {label_file.task} label file, but the model is a {task} model")
    if label_file.topic not in topics:
        msg = (f"{path}: labels are for topic {label_file.topic!r}, which is not among the evaluated topics "
               f"{list(topics)}")
        if automatic:
            return None, msg + "; evaluated without labels"
        raise LabelError(msg)
    return ResolvedLabels(label_file, path, automatic), None
