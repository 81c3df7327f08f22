"""ROS image messages <-> RGB uint8 arrays, with cv_bridge's encoding semantics but no cv_bridge.

Works on rosbags-deserialized messages and on rclpy messages alike (duck typing on the
fields). Raw images are decoded here rather than by ``rosbags.image.image_to_cvimage``
because that ignores ``step`` (padded rows come out sheared) and scales 16-bit data by a
float multiply; compressed images are decoded by ``cv2.imdecode`` as
``rosbags.image.compressed_image_to_cvimage`` does (IMREAD_ANYCOLOR).
16-bit data becomes 8-bit as ``value >> 8`` (the full 16-bit range maps onto 0..255).

Size limits, for any bytes: a frame with more than ``max_pixels`` pixels is refused before any
pixel is touched. Raw images say their size; compressed ones say it in the PNG IHDR or the
JPEG SOF, read here (dann_ros.data.image_headers) exactly as the decoder reads it, and
anything that cannot be read so is refused: a 400 KB PNG can declare 20000 x 20000 (1.2 GB
and seconds to decode), which on a robot is an outage, not a frame. Behind that, OpenCV's own
pixel limit (dann_ros.data.decoder_limit, set before cv2 loads) refuses what a header check
might ever miss, and compressed data above ``max_bytes`` is refused unread. Only PNG and JPEG
(what image_transport's compressed publisher writes) are decoded. Every failure is a
FrameDecodeError, so readers skip and count the frame and the node drops it.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

import cv2
import numpy as np

# (dann_ros/data/__init__ imported decoder_limit before cv2 loaded)
from dann_ros.data import decoder_limit
from dann_ros.data.decoder_limit import DECODER_MAX_PIXELS, DEFAULT_MAX_INPUT_PIXELS
from dann_ros.data.decoder_limit import ENV as DECODER_LIMIT_ENV
from dann_ros.data.image_headers import PNG_MAGIC, HeaderError, jpeg_size, png_size
from dann_ros.data.preprocess import check_rgb8

log = logging.getLogger(__name__)

# Progressive JPEGs need a few to ~20 scans. Empty DC scans of a 4096x3072 frame: 0.35 s for 10 scans,
# 0.47 s for 100, 1.8 s for 1,000 (an 18 KB file); so at most 100.
MAX_JPEG_SCANS = 100
# CompressedImage data above this is refused unread: an 8-bit RGBA frame at the default pixel limit (50 MB),
# which no JPEG and no 8-bit PNG (even of noise) of a frame within the limit reaches.
MAX_COMPRESSED_BYTES = 4 * DEFAULT_MAX_INPUT_PIXELS

if decoder_limit.CV2_LOADED_FIRST and not decoder_limit.decoder_limit_active():
    log.warning("cv2 was imported before dann_ros: OpenCV's own pixel limit (%s=%d) is not in force in this "
                "process, only dann_ros's header checks are; import dann_ros first or set %s in the environment",
                DECODER_LIMIT_ENV, DECODER_MAX_PIXELS, DECODER_LIMIT_ENV)


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


def message_to_rgb8(msg: Any, max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS,
                    max_bytes: int = MAX_COMPRESSED_BYTES) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage (rosbags or rclpy) -> (H, W, 3) uint8 RGB.

    Frames above ``max_pixels`` (width x height; None = only the decoder's limit) and compressed
    data above ``max_bytes`` raise FrameDecodeError, as does anything else that is no frame.
    """
    if hasattr(msg, "format"):
        return _compressed_to_rgb8(msg, max_pixels, max_bytes)
    return _raw_to_rgb8(msg, max_pixels)


def _check_size(width: int, height: int, max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise FrameDecodeError(f"{what} is {width}x{height} = {width * height} pixels, more than "
                               f"max_input_pixels {max_pixels}")


def compressed_dimensions(data: Any) -> tuple[str, int, int]:
    """("png" | "jpeg", width, height) of PNG or JPEG bytes, read as the decoder reads them, without decoding.

    Raises FrameDecodeError for anything else, and for bytes the header reader cannot follow
    exactly as OpenCV's decoder would (see dann_ros.data.image_headers).
    """
    buf = _as_bytes(data).tobytes()
    try:
        if buf[:8] == PNG_MAGIC:
            return ("png", *png_size(buf))
        if buf[:2] == b"\xff\xd8":
            return ("jpeg", *jpeg_size(buf))
    except HeaderError as exc:
        raise FrameDecodeError(str(exc)) from None
    raise FrameDecodeError(f"neither JPEG nor PNG data ({len(buf)} bytes starting {buf[:4].hex()}); "
                           f"only these are decoded")


def _as_bytes(data: Any) -> np.ndarray:
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        return np.asarray(data, dtype=np.uint8)


def _raw_to_rgb8(msg: Any, max_pixels: int | None) -> np.ndarray:
    encoding = str(msg.encoding)
    if encoding not in _RAW:
        raise FrameDecodeError(
            f"unsupported encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    dtype, channels, conversion = _RAW[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise FrameDecodeError(f"empty image: {width}x{height} ({encoding})")
    _check_size(width, height, max_pixels, f"the {encoding} image")
    if channels == 2 and width % 2:
        raise FrameDecodeError(f"odd width {width}: {encoding} stores pixel pairs (one U and V per two pixels)")
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
        try:
            return cv2.cvtColor(np.ascontiguousarray(src), conversion)
        except cv2.error as exc:  # any frame OpenCV cannot convert is a bad frame, not a crash
            raise FrameDecodeError(f"cannot convert a {width}x{height} {encoding} image: {_cv_reason(exc)}") from None
    return np.array(pixels, dtype=np.uint8, copy=True)  # own the memory; the message buffer may be reused


def _cv_reason(exc: Exception) -> str:
    """'OpenCV (-215:Assertion failed): sz.width % 2 == 0' from a cv2.error's multi-line text."""
    match = re.search(r"error: \(([^)]*)\) ?(.*?)(?:\s*in function|$)", str(exc), re.M)
    if match is None:
        return str(exc).strip()
    return f"OpenCV ({match[1]})" + (f": {match[2]}" if match[2] else "")


def _compressed_to_rgb8(msg: Any, max_pixels: int | None, max_bytes: int) -> np.ndarray:
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        raise FrameDecodeError(f"compressedDepth images are not camera frames (format {fmt!r})")
    size = len(msg.data)
    if size > max_bytes:
        raise FrameDecodeError(f"compressed image of {size} bytes (format {fmt!r}) is larger than the "
                               f"{max_bytes}-byte limit for one frame")
    data = _as_bytes(msg.data)
    if data.size == 0:
        raise FrameDecodeError(f"empty compressed image (format {fmt!r})")
    try:
        kind, width, height = compressed_dimensions(data)
    except FrameDecodeError as exc:
        raise FrameDecodeError(f"cannot decode compressed image data (format {fmt!r}, {data.size} bytes): "
                               f"{exc.reason}") from None
    if width <= 0 or height <= 0:
        raise FrameDecodeError(f"{kind.upper()} header declares an empty {width}x{height} image")
    _check_size(width, height, max_pixels, f"the {kind.upper()} image (header)")
    if width * height > DECODER_MAX_PIXELS:
        raise FrameDecodeError(f"the {kind.upper()} image (header) is {width}x{height} = {width * height} pixels, "
                               f"more than the decoder's limit {DECODER_MAX_PIXELS} ({DECODER_LIMIT_ENV})")
    if kind == "jpeg" and data.tobytes().count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise FrameDecodeError(f"JPEG with more than {MAX_JPEG_SCANS} scans (a decoder stall, not a camera frame)")
    image = _imdecode(data)
    if image is None or image.size == 0:
        raise FrameDecodeError(f"cannot decode compressed image data (format {fmt!r}, {data.size} bytes)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _imdecode(data: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode as rosbags-image calls it; None for data OpenCV refuses (its pixel limit included)."""
    try:
        return cv2.imdecode(data, cv2.IMREAD_ANYCOLOR)
    except cv2.error:
        return None


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
