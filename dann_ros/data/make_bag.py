"""Write camera-stream rosbag2 bags from image folders, videos or OpenCV's digits.png.

These stand in for robot recordings (tests, demo, replays) and are written exactly like
one: sensor_msgs/Image or CompressedImage with header stamps 1/fps apart, log time = stamp.
"""

from __future__ import annotations

import argparse
import os
import itertools
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import get_typestore

from dann_ros.data.bags import ROS2_STORE
from dann_ros.data.images import COMPRESSED_FORMATS, WRITABLE_ENCODINGS, encode_compressed, rgb8_to_image_fields
from dann_ros.data.labels import FrameLabel, LabelFile, default_labels_path

DEFAULT_START_NS = 1_700_000_000_000_000_000  # fixed, so that bags written twice are identical
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DIGIT_CLASSES = tuple(str(d) for d in range(10))


def _open_writer(out_path: Path, storage: str) -> Writer:
    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    if out_path.exists():
        raise FileExistsError(f"bag output {out_path} exists already; choose a new path or delete it")
    try:
        return Writer(out_path, version=9, storage_plugin=plugins[storage])
    except WriterError:  # rosbags versions that only write version 8
        return Writer(out_path, version=8, storage_plugin=plugins[storage])


def make_bag(out_path: str | os.PathLike[str], images: Iterable[np.ndarray], topic: str = "/camera/image_raw",
             frame_id: str = "camera", fps: float = 30.0, compressed: bool | Literal["jpeg", "png"] = False,
             encoding: str = "rgb8", storage: Literal["mcap", "sqlite3"] = "mcap",
             start_ns: int = DEFAULT_START_NS, jpeg_quality: int = 90) -> list[int]:
    """Write RGB uint8 images as one camera topic; returns the header stamps (ns) in order."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    fmt = "jpeg" if compressed is True else compressed or None
    if fmt not in (None, "jpeg", "png"):
        raise ValueError(f"compressed must be False, True, 'jpeg' or 'png', got {compressed!r}")
    if not fmt and encoding not in WRITABLE_ENCODINGS:
        raise ValueError(f"cannot write encoding {encoding!r} (writable: {', '.join(WRITABLE_ENCODINGS)})")
    typestore = get_typestore(ROS2_STORE)
    images = iter(images)
    first = next(images, None)
    if first is None:
        raise ValueError(f"no images to write to {out_path}")
    writer = _open_writer(Path(out_path), storage)
    try:
        with writer:
            stamps = _write_frames(writer, typestore, itertools.chain([first], images), topic, frame_id, fps, fmt,
                                   encoding, start_ns, jpeg_quality)
    except BaseException:
        shutil.rmtree(out_path, ignore_errors=True)  # no half-written bag left behind
        raise
    return stamps


def _write_frames(writer: Writer, typestore: Any, images: Iterable[np.ndarray], topic: str, frame_id: str,
                  fps: float, fmt: str | None, encoding: str, start_ns: int, jpeg_quality: int) -> list[int]:
    types = typestore.types
    Header, Time = types["std_msgs/msg/Header"], types["builtin_interfaces/msg/Time"]
    msgtype = "sensor_msgs/msg/CompressedImage" if fmt else "sensor_msgs/msg/Image"
    connection = writer.add_connection(topic, msgtype, typestore=typestore)
    stamps: list[int] = []
    for i, image in enumerate(images):
        stamp = start_ns + round(i * 1e9 / fps)
        header = Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=frame_id)
        if fmt:
            data = encode_compressed(image, fmt, jpeg_quality)
            msg = types[msgtype](header=header, format=COMPRESSED_FORMATS[fmt], data=np.frombuffer(data, np.uint8))
        else:
            height, width, enc, step, data = rgb8_to_image_fields(image, encoding)
            msg = types[msgtype](header=header, height=height, width=width, encoding=enc, is_bigendian=0,
                                 step=step, data=np.frombuffer(data, np.uint8))
        writer.write(connection, stamp, typestore.serialize_cdr(msg, msgtype))
        stamps.append(stamp)
    return stamps


def images_from_folder(folder: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """RGB images of a folder's png/jpg/bmp files in sorted name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {folder}")

    def generate() -> Iterator[np.ndarray]:
        for file in files:
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot read image {file}")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    return generate()


def images_from_video(path: str | os.PathLike[str], max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB frames of a video file (anything cv2.VideoCapture opens)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cv2.VideoCapture cannot open {path}")

    def generate() -> Iterator[np.ndarray]:
        try:
            count = 0
            while max_frames is None or count < max_frames:
                ok, bgr = capture.read()
                if not ok:
                    break
                count += 1
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    return generate()


def video_fps(path: str | os.PathLike[str]) -> float | None:
    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return float(fps) if fps and fps > 0 else None


def digits_grid(path: str | os.PathLike[str]) -> tuple[list[np.ndarray], list[str]]:
    """OpenCV's digits.png -> 5,000 20x20 RGB digits and their class names "0".."9"."""
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise FileNotFoundError(f"cannot read digits image {path}")
    if grey.shape != (1000, 2000):
        raise ValueError(f"{path} is {grey.shape[1]}x{grey.shape[0]}, expected OpenCV's 2000x1000 digits.png")
    cells = grey.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3)  # (row, col, 20, 20)
    images = [cv2.cvtColor(cells[r, c], cv2.COLOR_GRAY2RGB) for r in range(50) for c in range(100)]
    labels = [DIGIT_CLASSES[r // 5] for r in range(50) for _ in range(100)]
    return images, labels


def write_labelled_bag(out_path: str | os.PathLike[str], images: Sequence[np.ndarray], labels: Sequence[str],
                       classes: Sequence[str] | None = None, labels_path: str | os.PathLike[str] | None = None,
                       topic: str = "/camera/image_raw", source: dict | None = None, **bag_kwargs: Any) -> Path:
    """A classification bag plus its label sidecar (for evaluation only); returns the label path."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    stamps = make_bag(out_path, images, topic=topic, **bag_kwargs)
    label_file = LabelFile(
        task="classification", topic=topic, classes=tuple(classes or sorted(set(labels))),
        frames=tuple(FrameLabel(index=i, stamp_ns=s, label=lab) for i, (s, lab) in enumerate(zip(stamps, labels))),
        source=source,
    )
    path = Path(labels_path) if labels_path else default_labels_path(out_path)
    label_file.save(path)
    return path


def write_detection_bag(out_path: str | os.PathLike[str], images: Iterator[np.ndarray] | Sequence[np.ndarray],
                        boxes: list, classes: Sequence[str], labels_path: str | os.PathLike[str] | None = None,
                        topic: str = "/camera/image_raw", source: dict | None = None, **bag_kwargs: Any) -> Path:
    """A camera bag plus a detection label sidecar (for evaluation only); returns the label path.

    ``boxes`` is a list that holds, once ``images`` is exhausted, one sequence of
    :class:`LabelBox` per image, so a generator can fill it while the bag is written
    (no frame has to stay in memory).
    """
    stamps = make_bag(out_path, images, topic=topic, **bag_kwargs)
    if len(boxes) != len(stamps):
        raise ValueError(f"{len(stamps)} images but {len(boxes)} box lists")
    label_file = LabelFile(
        task="detection", topic=topic, classes=tuple(classes),
        frames=tuple(FrameLabel(index=i, stamp_ns=s, boxes=tuple(b)) for i, (s, b) in enumerate(zip(stamps, boxes))),
        source=source)
    path = Path(labels_path) if labels_path else default_labels_path(out_path)
    label_file.save(path)
    return path


def add_make_bag_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``make-bag`` subcommand; its handler is ``args.func(args)``."""
    p = subparsers.add_parser("make-bag", help="write a rosbag2 camera stream from images, a video or digits.png",
                              description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of png/jpg images (sorted by name)")
    src.add_argument("--video", type=Path, help="video file readable by OpenCV")
    src.add_argument("--digits", type=Path, help="OpenCV digits.png; also writes a classification label sidecar")
    p.add_argument("--labels-out", type=Path, help="label sidecar path for --digits (default: <out>.labels.json)")
    p.add_argument("--out", type=Path, required=True, help="bag directory to create (must not exist)")
    p.add_argument("--topic", default="/camera/image_raw")
    p.add_argument("--frame-id", default="camera")
    p.add_argument("--fps", type=float, help="frame rate of the header stamps (default: the video's, else 30)")
    p.add_argument("--compressed", choices=("jpeg", "png"), help="write sensor_msgs/CompressedImage")
    p.add_argument("--encoding", default="rgb8", choices=("rgb8", "bgr8", "mono8", "mono16"),
                   help="raw Image encoding (ignored with --compressed)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--shuffle-seed", type=int, default=0, help="frame order for --digits")
    p.add_argument("--limit", type=int, help="write at most this many frames")
    p.set_defaults(func=_run_make_bag)
    return p


def _run_make_bag(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"--limit must be >= 1, got {args.limit}")
    if args.labels_out and not args.digits:
        raise SystemExit("--labels-out only applies to --digits")
    fps = args.fps or (video_fps(args.video) if args.video else None) or 30.0
    kwargs = dict(topic=args.topic, frame_id=args.frame_id, fps=fps, compressed=args.compressed or False,
                  encoding=args.encoding, storage=args.storage)
    if args.digits:
        images, labels = digits_grid(args.digits)
        order = np.random.default_rng(args.shuffle_seed).permutation(len(images))[: args.limit]
        labels_path = write_labelled_bag(args.out, [images[i] for i in order], [labels[i] for i in order],
                                         DIGIT_CLASSES, labels_path=args.labels_out,
                                         source={"digits_png": str(args.digits), "seed": args.shuffle_seed,
                                                 "cells": [int(i) for i in order]}, **kwargs)
        print(f"wrote {len(order)} frames to {args.out} and labels to {labels_path}")
        return 0
    images = images_from_video(args.video, args.limit) if args.video else images_from_folder(args.images)
    if args.limit is not None and not args.video:
        images = (img for _, img in zip(range(args.limit), images))
    stamps = make_bag(args.out, images, **kwargs)
    print(f"wrote {len(stamps)} frames to {args.out} ({args.topic}, {fps:g} fps)")
    return 0
