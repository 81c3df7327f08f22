"""The demo's real detection target: real handwritten digits marked on real camera frames.

OpenCV's digits.png (5,000 handwritten digits) is pasted onto frames of OpenCV's
vtest.avi (a real outdoor CCTV camera), like numbers painted or chalked on a
surface: each digit's grey level is its ink coverage (white on black), so it is
used as an alpha mask and the ink takes a random dark or light colour, with
the real background showing through the anti-aliased edges. Boxes are tight
around the ink (alpha >= ``BOX_ALPHA``, the rule :mod:`dann_ros.demo_data.synth` uses
for its renders), so source and target boxes mean the same thing. They are stored as
pixel corners (``x_max`` exclusive), the label sidecar's convention; the simulator writes
BasicWriter's inclusive indices, which :mod:`dann_ros.data.replicator` converts on reading.

The digit cells are split per class before anything is drawn, so no handwritten
digit of the test bag ever appears in the training bag; frames of both bags come
from the whole video and play in time order. A third, dev bag (for tuning, so the
test bag is only reported) takes the video frames and digit cells neither of them
uses. A fourth, holdout bag paints other writers' digits (optdigits) on the test bag's
frames: handwriting that no recipe was tuned on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from dann_ros.data.labels import LabelBox, LabelFile, default_labels_path
from dann_ros.data.make_bag import DIGIT_CLASSES, digits_grid, write_detection_bag

BOX_ALPHA = 0.25  # a pixel belongs to the digit's tight box when its ink covers at least this much
REFERENCE_HEIGHT = 240  # digit_height defaults are given for 320x240 frames and scale with the frame
DEFAULT_DIGIT_HEIGHT = (24.0, 64.0)
MIN_CONTRAST = 0.25  # luminance difference between ink and the surface under it (0..1)
# the sidecars' "generator": the module's name before it moved to demo_data, kept so recordings stay identical
GENERATOR = "dann_ros.data.compose"
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class ComposedFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (K, 4) int32 x_min, y_min, x_max, y_max (pixel corners: x_max exclusive)
    cells: np.ndarray  # (K,) index of each digit in digits.png (row-major, 0..4999)
    classes: tuple[str, ...]


def _tight_ink(coverage: np.ndarray) -> np.ndarray:
    """An ink-coverage image (0..1) cropped tight to its ink; an empty one becomes a dot, so indices stay aligned."""
    ys, xs = np.nonzero(coverage >= BOX_ALPHA)
    if len(ys) == 0:
        return np.ones((1, 1), np.float32)
    return np.ascontiguousarray(coverage[ys.min():ys.max() + 1, xs.min():xs.max() + 1], np.float32)


def digit_masks(digits_png: str | os.PathLike[str]) -> tuple[list[np.ndarray], list[str]]:
    """digits.png -> per cell a float32 ink-coverage mask (0..1) cropped tight to its ink, and its class."""
    images, labels = digits_grid(digits_png)
    return [_tight_ink(image[:, :, 0].astype(np.float32) / 255.0) for image in images], labels


def optdigits_masks() -> tuple[list[np.ndarray], list[str]]:
    """scikit-learn's copy of UCI optdigits (1,797 digits, 8x8, ink 0..16), as :func:`digit_masks`.

    Other writers, another form and scanner than digits.png's: handwriting no demo bag holds and no
    recipe was tuned on (the holdout bag, :func:`record_holdout_scenes`).
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    return [_tight_ink(image.astype(np.float32) / 16.0) for image in data.images], [str(int(t)) for t in data.target]


def split_cells(labels: Sequence[str], test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train / test cell indices, stratified per class."""
    labels = np.asarray(labels)
    train, test = [], []
    for cls in sorted(set(labels.tolist())):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_test = round(len(members) * test_fraction)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _ink_colour(rng: np.random.Generator, bg_luma: float) -> np.ndarray:
    """Dark or light paint at random, switched to the other when it would vanish into the surface."""
    dark = rng.random() < 0.5
    for _ in range(2):
        level = rng.uniform(0, 70) if dark else rng.uniform(185, 255)
        colour = np.clip(level + rng.normal(0, 15, 3), 0, 255).astype(np.float32)
        if abs(float(colour @ _LUMA) / 255 - bg_luma) >= MIN_CONTRAST:
            return colour
        dark = not dark
    return colour


def compose_frame(rng: np.random.Generator, background: np.ndarray, masks: Sequence[np.ndarray],
                  labels: Sequence[str], cells: np.ndarray, n_digits: int,
                  digit_height: tuple[float, float], margin: int = 2) -> ComposedFrame:
    """Paste ``n_digits`` digits drawn from ``cells`` onto an RGB frame without overlap.

    A digit that does not fit after 30 tries is left out, so crowded frames may carry fewer.
    """
    h, w = background.shape[:2]
    img = background.astype(np.float32)
    boxes: list[tuple[int, int, int, int]] = []
    used: list[int] = []
    for cell in rng.choice(cells, size=n_digits, replace=False):
        mask = masks[int(cell)]
        target_h = rng.uniform(*digit_height)
        s = target_h / mask.shape[0]
        ph, pw = max(1, round(mask.shape[0] * s)), max(1, round(mask.shape[1] * s))
        if ph + 2 * margin > h or pw + 2 * margin > w:
            continue
        alpha = cv2.resize(mask, (pw, ph), interpolation=cv2.INTER_LINEAR if s >= 1 else cv2.INTER_AREA)
        alpha = np.clip(alpha, 0, 1) * rng.uniform(0.8, 1.0)  # worn paint is not fully opaque
        ys, xs = np.nonzero(alpha >= BOX_ALPHA)
        if len(ys) == 0:
            continue
        for _ in range(30):
            y0 = int(rng.integers(margin, h - ph - margin + 1))
            x0 = int(rng.integers(margin, w - pw - margin + 1))
            box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
            if all(box[0] >= b[2] + margin or b[0] >= box[2] + margin or box[1] >= b[3] + margin
                   or b[1] >= box[3] + margin for b in boxes):
                break
        else:
            continue
        region = img[y0:y0 + ph, x0:x0 + pw]
        ink = alpha >= BOX_ALPHA
        bg_luma = float(region[ink].mean(axis=0) @ _LUMA) / 255
        a = alpha[:, :, None]
        region *= 1 - a
        region += a * _ink_colour(rng, bg_luma)
        boxes.append(box)
        used.append(int(cell))
    rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return ComposedFrame(rgb, np.array(boxes, np.int32).reshape(-1, 4), np.array(used, np.int64),
                         tuple(labels[c] for c in used))


def video_frame_count(video: str | os.PathLike[str]) -> int:
    """The container's frame count, else counted by reading (a wrong header fails later, by name)."""
    capture = _open_video(video)
    try:
        n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        while n <= 0 and capture.grab():
            n -= 1
        n = abs(n)
    finally:
        capture.release()
    if n == 0:
        raise ValueError(f"{video}: the video holds no readable frames")
    return n


def _open_video(video: str | os.PathLike[str]) -> cv2.VideoCapture:
    if not Path(video).is_file():
        raise FileNotFoundError(f"video not found: {video}")
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise ValueError(f"cv2.VideoCapture cannot open {video}")
    return capture


def iter_video_frames(video: str | os.PathLike[str], indices: Sequence[int],
                      size: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame resized to ``size`` = (width, height)) for sorted ``indices`` (repeats allowed)."""
    wanted = np.sort(np.asarray(indices, np.int64))
    capture = _open_video(video)
    try:
        pos, k = 0, 0
        while k < len(wanted):
            if pos < wanted[k]:
                if not capture.grab():
                    break
                pos += 1
                continue
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            while k < len(wanted) and wanted[k] == pos:
                yield pos, rgb
                k += 1
            pos += 1
    finally:
        capture.release()
    if k < len(wanted):
        raise ValueError(f"{video}: frame {int(wanted[k])} requested but the video ended at frame {pos}")


SPLITS = ("real_scenes_train", "real_scenes_test", "real_scenes_dev")
HOLDOUT = "real_scenes_holdout"
HOLDOUT_SPLIT_ID = 3  # its frames' random streams, beside train's 0, test's 1 and dev's 2


def _compose_frames(video: str | os.PathLike[str], frame_idx: Sequence[int], size: tuple[int, int],
                    stream: tuple[int, int], masks: Sequence[np.ndarray], labels: Sequence[str], cells: np.ndarray,
                    digits_per_frame: tuple[int, int], digit_height: tuple[float, float], boxes: list,
                    provenance: list) -> Iterator[np.ndarray]:
    """The composed frames of one bag, in time order; their boxes and provenance appended as they go. Frame i
    draws from its own random stream (``stream`` + i), so a bag does not depend on what else is recorded."""
    lo, hi = digits_per_frame
    for i, (video_index, background) in enumerate(iter_video_frames(video, frame_idx, size)):
        frng = np.random.default_rng([*stream, i])
        n = int(frng.integers(lo, hi + 1))
        composed = compose_frame(frng, background, masks, labels, cells, n, digit_height)
        boxes.append([LabelBox(*map(float, b), c) for b, c in zip(composed.boxes, composed.classes)])
        provenance.append({"video_frame": int(video_index), "cells": composed.cells.tolist()})
        yield composed.rgb


def record_digit_scenes(digits_png: str | os.PathLike[str], video: str | os.PathLike[str],
                        out_dir: str | os.PathLike[str], seed: int = 0, n_frames: int = 600,
                        test_fraction: float = 0.25, size: tuple[int, int] = (320, 240),
                        digits_per_frame: tuple[int, int] = (1, 4),
                        digit_height: tuple[float, float] | None = None, fps: float = 10.0,
                        storage: Literal["mcap", "sqlite3"] = "mcap",
                        compressed: bool | Literal["jpeg", "png"] = False, dev_frames: int = 150,
                        write: Sequence[str] = SPLITS) -> tuple[Path, Path, Path | None]:
    """out_dir/real_scenes_train, real_scenes_test and real_scenes_dev: camera bags with detection
    label sidecars; returns their paths (dev None when ``dev_frames`` is 0).

    ``size`` is (width, height) of the recorded frames; ``digit_height`` the range of the
    digits' ink height in pixels (default 24-64 at 240 rows, scaled with the frame height).
    ``n_frames`` frames are drawn from the whole video (without repeats while the video
    is long enough) and split ``test_fraction`` to the test bag.

    The dev bag (for tuning, so that test is only reported) takes up to ``dev_frames`` video
    frames that neither other bag uses, spread over the video, and paints only digit cells that
    neither other bag painted (the other bags' cell pools are far larger than what they draw), so the
    three bags share no frame and no handwritten digit while train and test stay byte-identical to
    a recording without dev. ``write`` names the bags to write (the demo adds a missing dev bag
    beside existing ones); a bag not written is read from its sidecar's provenance when it exists,
    else composed in memory, to know what dev must avoid.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be within (0, 1), got {test_fraction}")
    unknown = set(write) - set(SPLITS)
    if unknown:
        raise ValueError(f"write: unknown bags {sorted(unknown)}; choose among {list(SPLITS)}")
    if dev_frames < 0:
        raise ValueError(f"dev_frames must be >= 0, got {dev_frames}")
    lo, hi = digits_per_frame
    if lo < 0 or hi < lo or hi < 1:
        raise ValueError(f"digits_per_frame must be (min, max) with 0 <= min <= max, max >= 1; got {(lo, hi)}")
    width, height = int(size[0]), int(size[1])
    if width < 16 or height < 16:
        raise ValueError(f"size {size} is too small (width, height >= 16)")
    if digit_height is None:
        digit_height = tuple(v * height / REFERENCE_HEIGHT for v in DEFAULT_DIGIT_HEIGHT)
    if not 2 <= digit_height[0] <= digit_height[1] <= height - 4:
        raise ValueError(f"digit_height {digit_height} must satisfy 2 <= min <= max <= {height - 4}")
    n_test = round(n_frames * test_fraction)
    if n_test < 1 or n_frames - n_test < 1:
        raise ValueError(f"n_frames={n_frames} with test_fraction={test_fraction} leaves a split empty")

    rng = np.random.default_rng(seed)
    masks, labels = digit_masks(digits_png)
    train_cells, test_cells = split_cells(labels, test_fraction, rng)
    n_video = video_frame_count(video)
    picked = rng.choice(n_video, size=n_frames, replace=n_frames > n_video)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def compose(split_id: int, frame_idx: np.ndarray, cells: np.ndarray, boxes: list, provenance: list):
        return _compose_frames(video, frame_idx, (width, height), (seed, split_id), masks, labels, cells,
                               digits_per_frame, digit_height, boxes, provenance)

    dev = dev_frames > 0 and "real_scenes_dev" in write

    def record(name: str, split_id: int, frame_idx: np.ndarray, cells: np.ndarray) -> list[dict]:
        """Write the split (if in ``write``), else learn what it holds when dev needs that; its provenance."""
        bag, boxes, provenance = out_dir / name, [], []
        if name in write:
            write_detection_bag(bag, compose(split_id, frame_idx, cells, boxes, provenance), boxes, DIGIT_CLASSES,
                                fps=fps, storage=storage, compressed=compressed,
                                source={"generator": GENERATOR, "digits_png": str(digits_png),
                                        "video": str(video), "seed": seed, "split": name, "size": [width, height],
                                        "digit_height": list(digit_height), "frames": provenance})
        elif dev and default_labels_path(bag).is_file():  # what the bag on disk holds
            provenance = (LabelFile.load(default_labels_path(bag)).source or {}).get("frames", [])
        elif dev:
            for _ in compose(split_id, frame_idx, cells, boxes, provenance):
                pass
        return provenance

    used = [record("real_scenes_train", 0, np.sort(picked[n_test:]), train_cells),
            record("real_scenes_test", 1, np.sort(picked[:n_test]), test_cells)]
    if dev:
        taken = {f["video_frame"] for frames in used for f in frames} | set(picked.tolist())
        free = np.setdiff1d(np.arange(n_video), np.fromiter(taken, np.int64))
        if len(free) == 0:
            raise ValueError(f"{video}: all {n_video} frames go to real_scenes_train/test (n_frames={n_frames}); "
                             "none is left for real_scenes_dev: lower n_frames or set dev_frames=0")
        spread = np.unique(np.linspace(0, len(free) - 1, min(dev_frames, len(free))).round().astype(np.int64))
        painted = {c for frames in used for f in frames for c in f["cells"]}
        record("real_scenes_dev", 2, free[spread], np.setdiff1d(np.arange(len(labels)), np.fromiter(painted, np.int64)))
    return out_dir / "real_scenes_train", out_dir / "real_scenes_test", \
        out_dir / "real_scenes_dev" if dev_frames > 0 else None


def record_holdout_scenes(video: str | os.PathLike[str], test_bag: str | os.PathLike[str],
                          out_dir: str | os.PathLike[str], seed: int = 0, digits_per_frame: tuple[int, int] = (1, 4),
                          fps: float = 10.0, storage: Literal["mcap", "sqlite3"] = "mcap") -> Path:
    """out_dir/real_scenes_holdout: optdigits' handwriting (:func:`optdigits_masks`) painted on the test
    bag's own video frames, at its size and digit heights (``digits_per_frame``, ``fps``: the demo's).

    The same camera and frames the adaptation never saw, with writers no demo bag holds and nothing was
    tuned on: the closest offline stand-in for checking a recipe on real scenes nobody tuned on. The frames
    come from the test bag's label sidecar (its ``source.frames`` provenance).
    """
    test_bag = Path(test_bag)
    sidecar = default_labels_path(test_bag)
    source = LabelFile.load(sidecar).source or {}  # a missing sidecar: FileNotFoundError naming it
    frames = [f.get("video_frame") for f in source.get("frames", [])]
    if not frames or None in frames or "size" not in source or "digit_height" not in source:
        raise ValueError(f"{sidecar}: source.frames / size / digit_height are missing: its video frames are unknown "
                         "(recorded by an older version; delete the demo's real_scenes_* bags to record them again)")
    width, height = map(int, source["size"])
    masks, labels = optdigits_masks()
    boxes: list = []
    provenance: list = []
    bag = Path(out_dir) / HOLDOUT
    frame_iter = _compose_frames(video, frames, (width, height), (seed, HOLDOUT_SPLIT_ID), masks, labels,
                                 np.arange(len(masks)), digits_per_frame,
                                 tuple(source["digit_height"]), boxes, provenance)
    write_detection_bag(bag, frame_iter, boxes, DIGIT_CLASSES, fps=fps, storage=storage,
                        source={"generator": GENERATOR, "digits": "sklearn.datasets.load_digits (UCI optdigits)",
                                "video": str(video), "seed": seed, "split": HOLDOUT, "frames_of": str(test_bag),
                                "size": [width, height], "digit_height": list(source["digit_height"]),
                                "frames": provenance})
    return bag
