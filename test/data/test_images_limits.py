"""Frame size limits: dimensions read from the message or the PNG/JPEG header, before decoding."""

from __future__ import annotations

import struct
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from dann_ros.data.images import (DEFAULT_MAX_INPUT_PIXELS, MAX_JPEG_SCANS, FrameDecodeError, compressed_dimensions,
                                  encode_compressed, message_to_rgb8)


def png_bytes(width: int, height: int, rows: int | None = None) -> bytes:
    """A greyscale PNG declaring width x height whose pixels are zeros (``rows`` of them actually present)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = bytes(width + 1)
    idat = b"".join(comp.compress(row) for _ in range(height if rows is None else rows)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 segment is rewritten to declare width x height."""
    data = bytearray(encode_compressed(np.zeros((8, 8, 3), np.uint8), "jpeg"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def compressed(data: bytes, fmt: str = "jpeg") -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=data)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_header_dimensions_match_the_decoded_image(fmt):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert compressed_dimensions(encode_compressed(image, fmt)) == (fmt, 53, 37)


def test_progressive_jpeg_header_is_read():
    ok, buf = cv2.imencode(".jpg", np.zeros((30, 70, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and compressed_dimensions(buf.tobytes()) == ("jpeg", 70, 30)


def test_png_bomb_is_refused_from_its_header_without_decoding(monkeypatch):
    import dann_ros.data.images as images

    bomb = png_bytes(20000, 20000, rows=200)  # declares 400 MP; the header is all that is read
    decoded = []
    real_decode = images._imdecode
    monkeypatch.setattr(images, "_imdecode", lambda data: decoded.append(data) or real_decode(data))
    with pytest.raises(FrameDecodeError, match=r"PNG image \(header\) is 20000x20000 = 400000000 pixels, more than "
                                               r"max_input_pixels 12582912"):
        message_to_rgb8(compressed(bomb, "png"))
    assert decoded == []  # decoding it would take seconds and 1.2 GB
    small = png_bytes(40, 30, rows=30)
    assert message_to_rgb8(compressed(small, "png")).shape[:2] == (30, 40) and len(decoded) == 1  # the spy sees decodes


def test_jpeg_declaring_a_huge_frame_is_refused():
    with pytest.raises(FrameDecodeError, match=r"JPEG image \(header\) is 60000x50000"):
        message_to_rgb8(compressed(jpeg_declaring(60000, 50000)))


def test_limit_is_a_parameter_and_frames_at_the_limit_pass():
    image = np.zeros((30, 40, 3), np.uint8)
    for fmt in ("jpeg", "png"):
        msg = compressed(encode_compressed(image, fmt), fmt)
        assert message_to_rgb8(msg, max_pixels=1200).shape == (30, 40, 3)
        with pytest.raises(FrameDecodeError, match="more than max_input_pixels 1199"):
            message_to_rgb8(msg, max_pixels=1199)
    assert DEFAULT_MAX_INPUT_PIXELS == 4096 * 3072


def test_raw_frames_have_the_same_limit():
    raw = SimpleNamespace(encoding="rgb8", height=5000, width=5000, step=15000, is_bigendian=0, data=b"")
    with pytest.raises(FrameDecodeError, match="rgb8 image is 5000x5000 = 25000000 pixels"):
        message_to_rgb8(raw)
    small = SimpleNamespace(encoding="mono8", height=2, width=3, step=3, is_bigendian=0, data=bytes(6))
    assert message_to_rgb8(small, max_pixels=6).shape == (2, 3, 3)
    with pytest.raises(FrameDecodeError, match="max_input_pixels 5"):
        message_to_rgb8(small, max_pixels=5)


@pytest.mark.parametrize("data, reason", [
    (b"GIF89a" + bytes(30), "neither JPEG nor PNG"),
    (b"\x89PNG\r\n\x1a\n" + bytes(4), "PNG without an IHDR"),
    (b"\xff\xd8\xff\xe0\x00", "JPEG cut short"),
    (b"\xff\xd8\xff\xda\x00\x08", "before any frame header"),
    (b"\xff\xd8\xff\xe0\x00\x01", "has length 1"),
])
def test_malformed_headers_are_decode_errors(data, reason):
    with pytest.raises(FrameDecodeError, match=reason):
        message_to_rgb8(compressed(data))


def test_empty_declared_size_and_too_many_scans():
    with pytest.raises(FrameDecodeError, match="declares an empty 0x8"):
        message_to_rgb8(compressed(jpeg_declaring(0, 8)))
    good = encode_compressed(np.zeros((8, 8, 3), np.uint8), "jpeg")
    stalls = good[:-2] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" * (MAX_JPEG_SCANS + 1) + b"\xff\xd9"
    with pytest.raises(FrameDecodeError, match=f"more than {MAX_JPEG_SCANS} scans"):
        message_to_rgb8(compressed(stalls))
