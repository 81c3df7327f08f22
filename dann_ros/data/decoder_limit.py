"""OpenCV's own pixel limit, set before OpenCV is loaded: the backstop behind the header checks.

``OPENCV_IO_MAX_IMAGE_PIXELS`` (default 2**30) is read once, when the cv2 extension loads (a
static initialiser in imgcodecs/loadsave.cpp; checked for OpenCV 5.1: setting it after
``import cv2``, even before the first decode, has no effect). imdecode/imread then refuse any
image above it after reading the header and before allocating the pixels. So this module
must run before the first ``import cv2`` of the process: it is imported by
``dann_ros.data`` (every reader, the node and training import that package before any
module of theirs imports cv2) and first thing by ``dann_ros.data.images``.

An operator's own ``OPENCV_IO_MAX_IMAGE_PIXELS`` (a positive integer) is kept: that is how a
camera above the default limit is decoded at all.
"""

from __future__ import annotations

import os
import sys

ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
# 4096 x 3072: the largest common camera sensor output (12.6 MP); dann_node's default max_input_pixels.
DEFAULT_MAX_INPUT_PIXELS = 4096 * 3072
# The decoder refuses 4x the frame limit: above every frame a default configuration accepts and above
# the photos an image folder may hold (imread shares the limit), far below a bomb (20000^2 = 400 MP).
DEFAULT_DECODER_MAX_PIXELS = 4 * DEFAULT_MAX_INPUT_PIXELS

# True when cv2 was loaded before this module ran: OpenCV then kept whatever limit it saw (see decoder_limit_active).
CV2_LOADED_FIRST = "cv2" in sys.modules


def _install() -> int:
    value = os.environ.get(ENV, "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    os.environ[ENV] = str(DEFAULT_DECODER_MAX_PIXELS)
    return DEFAULT_DECODER_MAX_PIXELS


DECODER_MAX_PIXELS = _install()

_active: bool | None = None


def decoder_limit_active() -> bool:
    """Whether OpenCV in this process refuses images above DECODER_MAX_PIXELS (probed once).

    The probe is a 60-byte greyscale PNG declaring just over the limit: refused after its header
    when the limit holds; otherwise OpenCV reserves (and never fills) one byte per pixel and fails
    on the missing pixel data.
    """
    global _active
    if _active is None:
        import struct
        import zlib

        import cv2
        import numpy as np

        side = int(DECODER_MAX_PIXELS ** 0.5) + 1
        while side * side <= DECODER_MAX_PIXELS:
            side += 1

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        probe = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                 + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
        try:
            cv2.imdecode(np.frombuffer(probe, np.uint8), cv2.IMREAD_GRAYSCALE)
            _active = False
        except cv2.error as exc:
            _active = "CV_IO_MAX_IMAGE_PIXELS" in str(exc)
    return _active
