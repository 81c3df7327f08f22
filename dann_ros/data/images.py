"""ROS image messages <-> RGB uint8 arrays, with cv_bridge's encoding semantics but no cv_bridge.

Works on rosbags-deserialized messages and on rclpy messages alike (duck typing on the
fields). Raw images are decoded here rather than by ``rosbags.image.image_to_cvimage``
because that ignores ``step`` (padded rows come out sheared) and scales 16-bit data by a
float multiply; compressed images go through ``rosbags.image.compressed_image_to_cvimage``.
16-bit data becomes 8-bit as ``value >> 8`` (the full 16-bit range maps onto 0..255).
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from rosbags.image import ImageError, compressed_image_to_cvimage

from dann_ros.data.preprocess import check_rgb8


class FrameDecodeError(ValueError):
    """A message that cannot become an RGB frame; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# encoding -> (dtype, channels, cv2 conversion to RGB or None when already RGB)
_RAW: dict[str, tuple[type, int, int | None]] = {
    "rgb8": (np.uint8, 3, None),
    "bgr8": (np.uint8, 3, cv2.COLOR_BGR2RGB),
    "rgba8": (np.uint8, 4, cv2.COLOR_RGBA2RGB),
    "bgra8": (np.uint8, 4, cv2.COLOR_BGRA2RGB),
    "mono8": (np.uint8, 1, cv2.COLOR_GRAY2RGB),
    "8UC1": (np.uint8, 1, cv2.COLOR_GRAY2RGB),
    # Generic 3-channel data has no channel order; like cv_bridge, its bytes are taken as they are.
    "8UC3": (np.uint8, 3, None),
    "mono16": (np.uint16, 1, cv2.COLOR_GRAY2RGB),
    "16UC1": (np.uint16, 1, cv2.COLOR_GRAY2RGB),
    "rgb16": (np.uint16, 3, None),
    "bgr16": (np.uint16, 3, cv2.COLOR_BGR2RGB),
    "rgba16": (np.uint16, 4, cv2.COLOR_RGBA2RGB),
    "bgra16": (np.uint16, 4, cv2.COLOR_BGRA2RGB),
    "yuv422": (np.uint8, 2, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (np.uint8, 2, cv2.COLOR_YUV2RGB_UYVY),
    "yuyv": (np.uint8, 2, cv2.COLOR_YUV2RGB_YUYV),
    "yuv422_yuy2": (np.uint8, 2, cv2.COLOR_YUV2RGB_YUYV),
}
for _bits, _dtype in ((8, np.uint8), (16, np.uint16)):
    for _pattern in ("rggb", "bggr", "gbrg", "grbg"):
        # OpenCV's *RGGB* names (not the old BG/RG ones) match ROS's pattern names.
        _RAW[f"bayer_{_pattern}{_bits}"] = (_dtype, 1, getattr(cv2, f"COLOR_Bayer{_pattern.upper()}2RGB"))

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_RAW)
WRITABLE_ENCODINGS: tuple[str, ...] = (
    "rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3",
    "mono16", "16UC1", "rgb16", "bgr16", "rgba16", "bgra16",
)
# What image_transport's compressed publisher writes, so our bags look like robot recordings.
COMPRESSED_FORMATS = {"jpeg": "rgb8; jpeg compressed bgr8", "png": "rgb8; png compressed bgr8"}


def message_to_rgb8(msg: Any) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage (rosbags or rclpy) -> (H, W, 3) uint8 RGB."""
    if hasattr(msg, "format"):
        return _compressed_to_rgb8(msg)
    return _raw_to_rgb8(msg)


def _as_bytes(data: Any) -> np.ndarray:
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        return np.asarray(data, dtype=np.uint8)


def _raw_to_rgb8(msg: Any) -> np.ndarray:
    encoding = str(msg.encoding)
    if encoding not in _RAW:
        raise FrameDecodeError(
            f"unsupported encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    dtype, channels, conversion = _RAW[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise FrameDecodeError(f"empty image: {width}x{height} ({encoding})")
    row_bytes = width * channels * np.dtype(dtype).itemsize
    if step < row_bytes:
        raise FrameDecodeError(f"step {step} is smaller than width {width} x {row_bytes // width} bytes ({encoding})")
    data = _as_bytes(msg.data)
    if data.size < height * step:
        raise FrameDecodeError(
            f"data has {data.size} bytes, expected {height * step} (height {height} x step {step}, {encoding})")
    rows = data[: height * step].reshape(height, step)[:, :row_bytes]
    if dtype is np.uint16:
        order = ">" if msg.is_bigendian else "<"
        pixels = np.ascontiguousarray(rows).view(f"{order}u2").reshape(height, width, channels)
        pixels = (pixels >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, channels)
    if conversion is not None:
        src = pixels[:, :, 0] if channels == 1 else pixels
        return cv2.cvtColor(np.ascontiguousarray(src), conversion)
    return np.array(pixels, dtype=np.uint8, copy=True)  # own the memory; the message buffer may be reused


def _compressed_to_rgb8(msg: Any) -> np.ndarray:
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        raise FrameDecodeError(f"compressedDepth images are not camera frames (format {fmt!r})")
    if _as_bytes(msg.data).size == 0:
        raise FrameDecodeError(f"empty compressed image (format {fmt!r})")
    try:
        image = compressed_image_to_cvimage(msg)
    except (AssertionError, cv2.error, ImageError):
        image = None
    if image is None:
        raise FrameDecodeError(f"cannot decode compressed image data (format {fmt!r}, {len(msg.data)} bytes)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def rgb8_to_image_fields(image: np.ndarray, encoding: str = "rgb8") -> tuple[int, int, str, int, bytes]:
    """RGB uint8 -> (height, width, encoding, step, data) for a little-endian sensor_msgs/Image.

    16-bit encodings store ``value * 257`` so that decoding (``>> 8``) gives the input back.
    """
    image = check_rgb8(image)
    if encoding not in WRITABLE_ENCODINGS:
        raise ValueError(f"cannot write encoding {encoding!r} (writable: {', '.join(WRITABLE_ENCODINGS)})")
    height, width = image.shape[:2]
    if encoding in ("mono8", "8UC1", "mono16", "16UC1"):
        pixels = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    else:
        pixels = image[:, :, ::-1] if encoding.startswith("bgr") else image
        if encoding[3:4] == "a":  # rgba / bgra: opaque alpha
            pixels = np.concatenate([pixels, np.full((height, width, 1), 255, np.uint8)], axis=2)
    if encoding.endswith("16") or encoding == "16UC1":
        pixels = pixels.astype("<u2") * np.uint16(257)
    data = np.ascontiguousarray(pixels).tobytes()
    return height, width, encoding, len(data) // height, data


def encode_compressed(image: np.ndarray, fmt: Literal["jpeg", "png"] = "jpeg", quality: int = 90) -> bytes:
    """RGB uint8 -> JPEG or PNG bytes for a CompressedImage (quality only applies to JPEG)."""
    image = check_rgb8(image)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if fmt == "jpeg":
        if not 1 <= quality <= 100:
            raise ValueError(f"jpeg quality must be within 1..100, got {quality}")
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", bgr)
    else:
        raise ValueError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    if not ok:
        raise ValueError(f"cv2.imencode failed for {fmt} of shape {image.shape}")
    return buf.tobytes()
