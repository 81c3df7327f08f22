"""Reader for Isaac Sim Replicator ``BasicWriter`` output (the synthetic source domain).

Layout, per frame, either directly under the root or in one subfolder per
camera / render product::

    rgb_<frame>.png                               RGBA 8-bit render
    bounding_box_2d_tight_<frame>.npy             structured array, one row per object
    bounding_box_2d_tight_labels_<frame>.json     {"<semanticId>": {"class": "<name>[,<name>...]"}}
    bounding_box_2d_tight_prim_paths_<frame>.json (ignored)

What real BasicWriter output holds, and how it is read (measured on Isaac Sim 4.2,
see the README's source-data section):

- Coordinates are inclusive pixel indices (``x_max`` reaches ``width - 1``). They are
  converted once, here, to this package's convention: pixel corners, ``x_max`` exclusive,
  so ``x_max - x_min`` is the width (label sidecars, detector targets, crops).
- A prim with semantic children has ``occlusionRatio`` -1, and parent and child often
  give the same box twice: rows with the same box and class are one object, kept once
  (the row with a measured occlusion wins) and counted in ``ReplicatorFrame.duplicates``.
- A label may join several semantic labels with commas (``"cone,obstacle"``): every name
  is kept (``Box.names``); the first is the class unless a training class list picks another.
- Newer releases write the ``bounding_box_2d_tight_fast`` annotator (no ``occlusionRatio``
  field), under the usual file names or, from writers that name files after the
  annotator, as ``bounding_box_2d_tight_fast_<frame>.npy`` / ``..._fast_labels_<frame>.json``.

A frame without the bounding-box annotator has no boxes and is used whole. The
simulator in :mod:`dann_ros.demo_data.synth` writes this same layout, inclusive boxes
included, so the trainer only ever reads what Isaac Sim produces.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

BBOX_FIELDS = ("semanticId", "x_min", "y_min", "x_max", "y_max")
#: What Isaac Sim writes for ``bounding_box_2d_tight`` (occlusionRatio is absent in older versions).
BBOX_DTYPE = np.dtype([
    ("semanticId", "<u4"),
    ("x_min", "<i4"),
    ("y_min", "<i4"),
    ("x_max", "<i4"),
    ("y_max", "<i4"),
    ("occlusionRatio", "<f4"),
])
BBOX_PREFIX = "bounding_box_2d_tight_"
LABELS_PREFIX = "bounding_box_2d_tight_labels_"
#: ``(array prefix, labels prefix)`` in the order they are looked for; the first found is read.
BBOX_FILE_KINDS = ((BBOX_PREFIX, LABELS_PREFIX),
                   ("bounding_box_2d_tight_fast_", "bounding_box_2d_tight_fast_labels_"))
#: Bumped whenever reading the same files gives different boxes (caches of read data key on it).
READER_VERSION = 2
_RGB_RE = re.compile(r"^rgb_(.+)\.(png|jpe?g)$", re.IGNORECASE)


class ReplicatorFormatError(ValueError):
    """A Replicator file is malformed; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Box:
    """A tight box in pixel corners (``x_max`` exclusive), whatever convention the file used."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    class_name: str
    occlusion: float | None = None  # fraction hidden by other objects; None when not recorded
    names: tuple[str, ...] = ()  # every semantic label of the prim ("cone,obstacle"), class_name first

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min

    def class_among(self, wanted: Collection[str] | None) -> str | None:
        """The box's class for a training class list: its first label in ``wanted`` (None: none is)."""
        if wanted is None:
            return self.class_name
        for name in self.names or (self.class_name,):
            if name in wanted:
                return name
        return None


@dataclass(frozen=True)
class ReplicatorFrame:
    camera: str  # subfolder of the render product, "" for frames directly under the root
    name: str  # frame name as written, e.g. "0042" or "0_0042"
    rgb_path: Path
    boxes: tuple[Box, ...] = ()
    duplicates: int = 0  # rows dropped as the same object written twice (parent and child prim)

    @property
    def key(self) -> str:
        """``<camera>/<name>``, or just ``<name>`` for frames at the root."""
        return f"{self.camera}/{self.name}" if self.camera else self.name

    def load_rgb(self) -> np.ndarray:
        """The render as RGB uint8 (H, W, 3); alpha is dropped."""
        return read_rgb(self.rgb_path)


def read_rgb(path: str | Path) -> np.ndarray:
    """A render as RGB uint8; a file that cannot be read whole is a ReplicatorFormatError naming it.

    libjpeg decodes a cut-off JPEG with a warning and grey rows where the data stopped, so a JPEG
    must end with its end-of-image marker; OpenCV's pixel limit (dann_ros.data.decoder_limit)
    refuses a header declaring a huge image before its pixels are allocated."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise ReplicatorFormatError(f"{path}: cannot read: {exc}") from None
    if data.size == 0:
        raise ReplicatorFormatError(f"{path}: empty file")
    if data[:3].tobytes() == b"\xff\xd8\xff" and not _ends_with_eoi(data):
        raise ReplicatorFormatError(f"{path}: JPEG cut short (no end-of-image marker): written only in part?")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ReplicatorFormatError(f"{path}: cannot decode the image: {str(exc).strip()}") from None
    if image is None:
        raise ReplicatorFormatError(f"{path}: cannot read or decode the image")
    if image.dtype == np.uint16:  # 16-bit PNGs exist in some pipelines; keep the top byte
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ReplicatorFormatError(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    raise ReplicatorFormatError(f"{path}: unsupported channel count {channels}")


def _ends_with_eoi(data: np.ndarray) -> bool:
    """Whether a JPEG ends with FF D9 (zero padding after it allowed: some writers pad to a block)."""
    tail = data[-4096:].tobytes().rstrip(b"\x00")
    return tail.endswith(b"\xff\xd9")


def natural_key(text: str) -> tuple:
    """Sort "9" before "10" so frame order survives padding overflow (frame 10000+)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


# --------------------------------------------------------------------------- scanning

def scan(root: str | Path, read_boxes: bool = True) -> list[ReplicatorFrame]:
    """All frames under ``root`` (and its camera subfolders), sorted by camera then frame.

    ``read_boxes=False`` skips the annotation files (faster for whole-frame use).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Replicator folder not found: {root}")
    frames: list[ReplicatorFrame] = []
    frames.extend(_scan_dir(root, "", read_boxes))
    with os.scandir(root) as entries:
        subdirs = sorted((e.name for e in entries if e.is_dir() and not e.name.startswith(".")), key=natural_key)
    for sub in subdirs:
        frames.extend(_scan_dir(root / sub, sub, read_boxes))
    duplicates = sum(f.duplicates for f in frames)
    if duplicates:
        log.info("%s: %d duplicate boxes (parent and child prim with the same box) dropped", root, duplicates)
    if not frames:
        what = "is empty" if not any(root.iterdir()) else "holds no rgb_<frame>.png files"
        raise ReplicatorFormatError(
            f"Replicator folder {root} {what} (looked in it and in its immediate subfolders)")
    return frames


def _scan_dir(folder: Path, camera: str, read_boxes: bool) -> list[ReplicatorFrame]:
    with os.scandir(folder) as entries:
        names = {e.name for e in entries if e.is_file()}
    rgb = {}
    for fname in names:
        m = _RGB_RE.match(fname)
        if m:
            if m.group(1) in rgb:  # rgb_0001.png and rgb_0001.jpg: ambiguous
                raise ReplicatorFormatError(f"{folder}: two rgb images for frame {m.group(1)!r}")
            rgb[m.group(1)] = fname
    frames = []
    for name in sorted(rgb, key=natural_key):
        boxes: tuple[Box, ...] = ()
        duplicates = 0
        for box_prefix, labels_prefix in BBOX_FILE_KINDS if read_boxes else ():
            npy = f"{box_prefix}{name}.npy"
            if npy in names:
                labels = f"{labels_prefix}{name}.json"
                boxes, duplicates = load_boxes(folder / npy, folder / labels if labels in names else None)
                break
        frames.append(ReplicatorFrame(camera, name, folder / rgb[name], boxes, duplicates))
    return frames


def read_boxes_file(npy_path: Path, labels_path: Path | None) -> tuple[Box, ...]:
    """The boxes of one ``bounding_box_2d_tight`` array and its labels file (duplicates dropped)."""
    return load_boxes(npy_path, labels_path)[0]


def load_boxes(npy_path: Path, labels_path: Path | None) -> tuple[tuple[Box, ...], int]:
    """(boxes, duplicate rows dropped) of one ``bounding_box_2d_tight`` array and its labels file.

    Inclusive pixel indices become pixel corners (``x_max + 1``); see the module docstring.
    """
    try:
        _check_npy_size(npy_path)
        data = np.load(npy_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ReplicatorFormatError(f"{npy_path}: not a readable .npy file: {exc}") from None
    if not isinstance(data, np.ndarray) or data.dtype.names is None:
        dtype = getattr(data, "dtype", type(data).__name__)
        raise ReplicatorFormatError(
            f"{npy_path}: expected a structured array with fields {', '.join(BBOX_FIELDS)}, got dtype {dtype}")
    missing = [f for f in BBOX_FIELDS if f not in data.dtype.names]
    if missing:
        raise ReplicatorFormatError(
            f"{npy_path}: missing field(s) {', '.join(missing)} (has: {', '.join(data.dtype.names)})")
    data = data.reshape(-1)
    if len(data) == 0:
        return (), 0
    if labels_path is None:
        raise ReplicatorFormatError(f"{npy_path}: has {len(data)} boxes but its labels file "
                                    f"{LABELS_PREFIX}<frame>.json is missing")
    labels = _read_labels(labels_path)
    for name in BBOX_FIELDS:
        if data.dtype[name].kind not in "iu":
            raise ReplicatorFormatError(
                f"{npy_path}: field {name} must hold integers (pixel indices), has dtype {data.dtype[name]}")
    has_occ = "occlusionRatio" in data.dtype.names
    boxes: list[Box] = []
    where: dict[tuple, int] = {}  # (corners, names) -> index in boxes
    duplicates = 0
    for i, row in enumerate(data):
        sid = str(int(row["semanticId"]))
        if sid not in labels:
            raise ReplicatorFormatError(f"{labels_path}: no entry for semanticId {sid} used in {npy_path.name}")
        x0, y0, x1, y1 = (int(row[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
        if x1 < x0 or y1 < y0:
            field = "x_max" if x1 < x0 else "y_max"
            raise ReplicatorFormatError(
                f"{npy_path}: row {i} (semanticId {sid}): {field} is below its minimum ({(x0, y0, x1, y1)}); "
                "tight boxes hold inclusive pixel indices with x_min <= x_max")
        occ = float(row["occlusionRatio"]) if has_occ else None
        if occ is not None and not (0.0 <= occ <= 1.0):  # Isaac writes -1 for prims with semantic children
            occ = None
        names = labels[sid]
        box = Box(float(x0), float(y0), float(x1 + 1), float(y1 + 1), names[0], occ, names)
        key = (x0, y0, x1, y1, names)
        if key in where:  # parent and child prim, same box: one object
            duplicates += 1
            kept = where[key]
            if boxes[kept].occlusion is None and occ is not None:  # keep the row whose occlusion was measured
                boxes[kept] = box
            continue
        where[key] = len(boxes)
        boxes.append(box)
    return tuple(boxes), duplicates


def _check_npy_size(path: Path) -> None:
    """Refuse an .npy whose header declares more data than the file holds, before numpy allocates it
    (a cut-off file, or a crafted header declaring terabytes: np.load would try to allocate them)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in readers:
            return  # np.load checks what it reads
        shape, _, dtype = readers[version](f)
        have = os.fstat(f.fileno()).st_size - f.tell()
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > have:
        raise ValueError(f"its header declares shape {shape} of {dtype} ({need} bytes), the file holds {have}")


def _read_labels(path: Path) -> dict[str, tuple[str, ...]]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplicatorFormatError(f"{path}: cannot read: {exc}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ReplicatorFormatError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ReplicatorFormatError(f"{path}: expected an object {{\"<semanticId>\": {{\"class\": ...}}}}")
    out = {}
    for sid, entry in raw.items():
        if not isinstance(entry, dict) or "class" not in entry:
            raise ReplicatorFormatError(f"{path}: entry {sid!r} has no \"class\"")
        value = entry["class"]
        if not isinstance(value, str):
            raise ReplicatorFormatError(f"{path}: entry {sid!r}: \"class\" must be a string, got {value!r}")
        names = tuple(n.strip() for n in value.split(",") if n.strip())  # several labels, comma-joined
        if not names:
            raise ReplicatorFormatError(f"{path}: entry {sid!r} has an empty class")
        out[str(sid)] = names
    return out


# --------------------------------------------------------------------------- object crops

@dataclass(frozen=True)
class CropSpec:
    margin: float = 0.15  # fraction of the box's longer side added on each side
    square: bool = True  # square crop around the box centre keeps the object's aspect ratio
    min_size: int = 8  # boxes narrower or shorter than this (pixels) are skipped
    max_occlusion: float = 0.6  # boxes hidden more than this are skipped

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {self.min_size}")
        if not 0.0 <= self.max_occlusion <= 1.0:
            raise ValueError(f"max_occlusion must be within 0..1, got {self.max_occlusion}")


@dataclass
class CropStats:
    frames: int = 0
    crops: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> boxes: class, small, occluded, outside, duplicate
    bad_frames: int = 0  # images that could not be read (their boxes are not counted above)
    frames_without_boxes: int = 0


class CropStream(Iterator[tuple[np.ndarray, str]]):
    """Iterator of (RGB crop, class name); ``stats`` counts what was skipped and why."""

    def __init__(self, frames: Iterable[ReplicatorFrame], spec: CropSpec, classes: set[str] | None):
        self.stats = CropStats()
        self._gen = self._run(frames, spec, None if classes is None else set(classes))

    def __iter__(self) -> CropStream:
        return self

    def __next__(self) -> tuple[np.ndarray, str]:
        return next(self._gen)

    def _run(self, frames, spec, classes):
        stats = self.stats
        for frame in frames:
            stats.frames += 1
            if frame.duplicates:
                stats.skipped["duplicate"] += frame.duplicates
            if not frame.boxes:
                stats.frames_without_boxes += 1
                continue
            wanted = []
            for box in frame.boxes:
                name = box.class_among(classes)
                reason = "class" if name is None else _skip_reason(box, spec)
                if reason:
                    stats.skipped[reason] += 1
                else:
                    wanted.append((box, name))
            if not wanted:
                continue
            try:
                image = frame.load_rgb()
            except ReplicatorFormatError as exc:
                stats.bad_frames += 1
                log.warning("skipping frame: %s", exc)
                continue
            for box, name in wanted:
                crop = crop_box(image, box, spec)
                if crop is None:
                    stats.skipped["outside"] += 1
                    continue
                stats.crops += 1
                yield crop, name


def _skip_reason(box: Box, spec: CropSpec) -> str | None:
    if box.width < spec.min_size or box.height < spec.min_size:
        return "small"
    if box.occlusion is not None and box.occlusion > spec.max_occlusion:
        return "occluded"
    return None


def iter_crops(frames: Iterable[ReplicatorFrame], spec: CropSpec = CropSpec(),
               classes: set[str] | None = None) -> CropStream:
    """Object crops for classification; read ``.stats`` after iterating for the skip counts."""
    return CropStream(frames, spec, classes)


def crop_box(image: np.ndarray, box: Box, spec: CropSpec) -> np.ndarray | None:
    """Crop around ``box`` with margin (square if asked); borders are replicated where it leaves the image."""
    h, w = image.shape[:2]
    bw, bh = box.width, box.height
    cx, cy = (box.x_min + box.x_max) / 2, (box.y_min + box.y_max) / 2
    pad = spec.margin * max(bw, bh)
    if spec.square:
        cw = ch = max(bw, bh) + 2 * pad
    else:
        cw, ch = bw + 2 * pad, bh + 2 * pad
    x0, y0 = int(round(cx - cw / 2)), int(round(cy - ch / 2))
    x1, y1 = x0 + max(1, int(round(cw))), y0 + max(1, int(round(ch)))
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix0 >= ix1 or iy0 >= iy1:
        return None
    crop = image[iy0:iy1, ix0:ix1]
    if (ix0, iy0, ix1, iy1) != (x0, y0, x1, y1):
        crop = cv2.copyMakeBorder(crop, iy0 - y0, y1 - iy1, ix0 - x0, x1 - ix1, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(crop)


# --------------------------------------------------------------------------- whole-frame labels

def frame_labels(root: str | Path, label_file: str | Path) -> list[tuple[ReplicatorFrame, str]]:
    """Frames labelled by a JSON file ``{"<camera>/<frame>" or "<frame>": "<class>"}``.

    A bare frame name means the frame at the root, or the only camera that has
    it. Frames the file does not mention are left out.
    """
    label_file = Path(label_file)
    try:
        raw = json.loads(label_file.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"label file not found: {label_file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplicatorFormatError(f"{label_file}: cannot read: {exc}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ReplicatorFormatError(f"{label_file}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ReplicatorFormatError(f"{label_file}: expected an object {{\"<frame>\": \"<class>\"}}")
    frames = scan(root, read_boxes=False)
    by_key = {f.key: f for f in frames}
    by_name: dict[str, list[ReplicatorFrame]] = {}
    for f in frames:
        by_name.setdefault(f.name, []).append(f)
    chosen: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str) or not value.strip():
            raise ReplicatorFormatError(f"{label_file}: key {key!r}: class must be a non-empty string, got {value!r}")
        frame = by_key.get(key)
        if frame is None:
            matches = by_name.get(key, [])
            if len(matches) > 1:
                cams = ", ".join(m.camera for m in matches)
                raise ReplicatorFormatError(
                    f"{label_file}: key {key!r} is ambiguous (cameras {cams}); write it as <camera>/{key}")
            if not matches:
                raise ReplicatorFormatError(f"{label_file}: key {key!r} matches no frame under {root}")
            frame = matches[0]
        previous = chosen.get(frame.key)
        if previous is not None and previous != value.strip():
            raise ReplicatorFormatError(
                f"{label_file}: key {key!r} labels frame {frame.key} {value!r}, but it is already {previous!r}")
        chosen[frame.key] = value.strip()
    return [(f, chosen[f.key]) for f in frames if f.key in chosen]
