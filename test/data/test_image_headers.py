"""Frame size limits that hold for any bytes: the header is read as the decoder reads it, OpenCV's own
pixel limit stands behind that, and compressed data has a byte cap."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import dann_ros.data.images as images
from dann_ros.data.decoder_limit import DECODER_MAX_PIXELS, DEFAULT_DECODER_MAX_PIXELS
from dann_ros.data.image_headers import MAX_JPEG_SEGMENTS, MAX_JPEG_SKIPPED, MAX_PNG_CHUNKS
from dann_ros.data.images import (DEFAULT_MAX_INPUT_PIXELS, MAX_COMPRESSED_BYTES, FrameDecodeError,
                                  compressed_dimensions, encode_compressed, message_to_rgb8)

from jpeg_parts import segments

SMALL = encode_compressed(np.full((8, 8, 3), 90, np.uint8), "jpeg")


def sof_declaring(width: int, height: int, jpeg: bytes = SMALL) -> bytes:
    sof = bytearray(next(s for s in segments(jpeg) if s[1] == 0xC0))
    struct.pack_into(">HH", sof, 5, height, width)
    return bytes(sof)


def crafted_jpeg(width: int, height: int) -> bytes:
    """The bypass of issue 22: under 1 KB, read as 8x8 by the old header walker, decoded as width x height.

    After SOI comes ``FF 00`` and two bytes. The old walker took them for a marker 0x00 with a length that
    jumps over the real frame header (width x height) and an APP15 header onto an 8x8 decoy SOF inside
    the APP15 segment. libjpeg takes ``FF 00`` for a stuffed zero, skips to the next marker, reads the real
    frame header, and skips APP15 with the decoy in it.
    """
    soi, *header, scan = segments(SMALL)
    decoy = next(s for s in header if s[1] == 0xC0)
    big = sof_declaring(width, height)
    jump = 2 + len(big) + 4
    app15 = b"\xff\xef" + struct.pack(">H", 2 + len(decoy)) + decoy
    rest = b"".join(s for s in header if s[1] != 0xC0)
    return soi + b"\xff\x00" + struct.pack(">H", jump) + big + app15 + rest + scan


def compressed(data: bytes, fmt: str = "jpeg") -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=data)


@pytest.fixture
def decodes(monkeypatch):
    """Every buffer handed to OpenCV by message_to_rgb8."""
    seen = []
    real = images._imdecode
    monkeypatch.setattr(images, "_imdecode", lambda data: seen.append(len(data)) or real(data))
    return seen


def test_the_crafted_jpeg_is_read_as_the_decoder_reads_it_and_refused_before_decoding(decodes):
    bomb = crafted_jpeg(20000, 20000)
    assert len(bomb) < 1024
    assert compressed_dimensions(bomb) == ("jpeg", 20000, 20000)
    with pytest.raises(FrameDecodeError, match=r"JPEG image \(header\) is 20000x20000 = 400000000 pixels"):
        message_to_rgb8(compressed(bomb))
    assert decodes == []
    # the same construction at a size OpenCV may decode here: the walker and libjpeg agree on it
    small = crafted_jpeg(96, 64)
    assert compressed_dimensions(small) == ("jpeg", 96, 64)
    assert cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_ANYCOLOR).shape == (64, 96, 3)
    assert message_to_rgb8(compressed(small)).shape == (64, 96, 3) and len(decodes) == 1


def _variants() -> dict[str, tuple[bytes, tuple[int, int] | str]]:
    """name -> (JPEG bytes, (width, height) the walker must read, or a refusal it must give)."""
    soi, *header, scan = segments(SMALL)
    sof = next(s for s in header if s[1] == 0xC0)
    others = [s for s in header if s[1] != 0xC0]
    plain = b"".join(others)
    progressive = cv2.imencode(".jpg", np.zeros((30, 70, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1]
    restarts = cv2.imencode(".jpg", np.zeros((40, 48, 3), np.uint8), [cv2.IMWRITE_JPEG_RST_INTERVAL, 1])[1]
    return {
        "fill bytes before every marker": (soi + b"".join(b"\xff\xff\xff" + s for s in header) + b"\xff" + scan,
                                           (8, 8)),
        "stray bytes between segments": (soi + others[0] + b"\x12\x34" + b"".join(others[1:]) + b"\x00" + sof + scan,
                                         (8, 8)),
        "stuffed zeros between segments": (soi + b"\xff\x00\xff\x00" + plain + sof + scan, (8, 8)),
        "RSTn and TEM markers (no length) in the header": (soi + b"\xff\xd3\xff\x01" + plain + b"\xff\xd7" + sof + scan,
                                                           (8, 8)),
        "DNL segment": (soi + plain + b"\xff\xdc\x00\x04\x00\x08" + sof + scan, (8, 8)),
        "SOF after the tables": (soi + plain + sof + scan, (8, 8)),
        "progressive": (progressive.tobytes(), (70, 30)),
        "restart interval": (restarts.tobytes(), (48, 40)),
        "frame header hidden in a COM segment": (soi + b"\xff\xfe" + struct.pack(">H", 2 + len(sof)) +
                                                 sof_declaring(30000, 30000) + plain + sof + scan, (8, 8)),
        "a second SOF": (soi + plain + sof + sof_declaring(16, 16) + scan, "second frame header"),
        "a second SOI": (soi + b"\xff\xd8" + plain + sof + scan, "second SOI"),
        "EOI before the scan": (soi + plain + sof + b"\xff\xd9" + scan, "EOI"),
        "SOF5 (differential, undecodable)": (soi + plain + b"\xff\xc5" + sof[2:] + scan, "SOF5"),
        "reserved marker": (soi + b"\xff\xf3\x00\x02" + plain + sof + scan, "reserved"),
        "height 0 (DNL-defined)": (soi + plain + sof_declaring(8, 0) + scan, "empty 8x0"),
        "SOF length does not match its components": (soi + plain + sof[:3] + bytes([sof[3] + 3]) + sof[4:] + b"\0\0\0"
                                                     + scan, "length 20 for 3 components"),
        "segment length 0": (soi + b"\xff\xfe\x00\x00" + plain + sof + scan, "has length 0"),
        "segment running past the end": (soi + plain + b"\xff\xe1\xff\xf0abc", "has length 65520"),
        "many fill bytes": (soi + b"\xff" * (MAX_JPEG_SKIPPED + 10) + plain + sof + scan,
                            f"more than {MAX_JPEG_SKIPPED}"),
        "many markers": (soi + b"\xff\xd0" * (MAX_JPEG_SEGMENTS + 1) + plain + sof + scan,
                         f"more than {MAX_JPEG_SEGMENTS} markers"),
        "no SOI": (b"\xff\xd9" + plain + sof + scan, "neither JPEG nor PNG"),
        "cut in the header": ((soi + plain + sof)[:-5], "has length 17; 12 bytes follow"),
        "cut before the scan": (soi + plain + sof, "cut short"),
    }


@pytest.mark.parametrize("name", list(_variants()))
def test_jpeg_headers_are_read_as_libjpeg_reads_them(name):
    """Where the walker gives a size, OpenCV decodes exactly that size; where it refuses, nothing is decoded."""
    data, want = _variants()[name]
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR)
    if isinstance(want, str):
        with pytest.raises(FrameDecodeError, match=want):
            compressed_dimensions(data)
    else:
        assert compressed_dimensions(data) == ("jpeg", *want)
        assert decoded is not None and decoded.shape[:2] == want[::-1]


def png(width: int, height: int, *extra: bytes, idat: bytes | None = None) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if idat is None:
        idat = zlib.compress(bytes(width + 1) * height)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + b"".join(extra) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_png_chunk_declaring_more_than_the_data_is_refused(decodes):
    """OpenCV 5.1 allocates and zeroes a chunk's declared length before reading it: 44 bytes declaring a
    1.5 GB tEXt chunk cost 1.5 GB and 2.6 s, whatever IHDR says (measured with this test's bytes)."""
    good = png(8, 8)
    bomb = good[:33] + struct.pack(">I", 1_500_000_000) + b"tEXtabc"
    assert len(bomb) == 44
    with pytest.raises(FrameDecodeError,
                       match=r"PNG chunk b'tEXt' at byte 33 declares 1500000000 bytes \(\+4 CRC\); 3 bytes follow"):
        message_to_rgb8(compressed(bomb, "png"))
    assert decodes == []
    assert message_to_rgb8(compressed(good, "png")).shape == (8, 8, 3)


def test_png_chunk_after_an_early_iend_is_checked_too(monkeypatch):
    """OpenCV reads chunks up to the first IDAT, past an IEND: 56 bytes with IEND before IDAT and then a
    chunk declaring 4 GB cost 4 GB and 12 s (found by test_images_fuzz.py with a walker stopping at IEND)."""
    monkeypatch.setattr(images, "_imdecode", lambda data: pytest.fail("handed to the decoder"))
    header = png(8, 8)[:33] + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    for kind in (b"fdAT", b"tEXt", b"IDAT"):
        bomb = header + struct.pack(">I", 2**32 - 1) + kind + b"abc"
        with pytest.raises(FrameDecodeError, match=f"PNG chunk {kind!r} at byte 45 declares 4294967295 bytes"):
            message_to_rgb8(compressed(bomb, "png"))


@pytest.mark.parametrize("data, reason", [
    (png(8, 8)[:-12], "no IEND"),
    (png(8, 8)[:-3], r"b'IEND' at byte 57 declares 0 bytes \(\+4 CRC\); 1 bytes follow"),
    (b"\x89PNG\r\n\x1a\n" + png(8, 8)[8:12] + b"IHDX" + png(8, 8)[16:], "IHDR"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0eIHDR" + png(8, 8)[16:], "IHDR chunk of 13 bytes"),
    (png(8, 8, *[struct.pack(">I", 0) + b"zzZz" + bytes(4)] * MAX_PNG_CHUNKS), f"more than {MAX_PNG_CHUNKS} chunks"),
])
def test_malformed_pngs_are_refused(data, reason):
    with pytest.raises(FrameDecodeError, match=reason):
        compressed_dimensions(data)


def test_compressed_data_above_the_byte_cap_is_refused_unread(decodes):
    assert MAX_COMPRESSED_BYTES == 4 * DEFAULT_MAX_INPUT_PIXELS
    with pytest.raises(FrameDecodeError, match=f"compressed image of {len(SMALL)} bytes \\(format 'jpeg'\\) is larger "
                                               f"than the {len(SMALL) - 1}-byte limit"):
        message_to_rgb8(compressed(SMALL), max_bytes=len(SMALL) - 1)
    assert message_to_rgb8(compressed(SMALL), max_bytes=len(SMALL)).shape == (8, 8, 3)
    huge = np.zeros(MAX_COMPRESSED_BYTES + 1, np.uint8)
    huge[:len(SMALL)] = np.frombuffer(SMALL, np.uint8)
    with pytest.raises(FrameDecodeError, match=f"compressed image of {MAX_COMPRESSED_BYTES + 1} bytes"):
        message_to_rgb8(compressed(huge))
    assert len(decodes) == 1


def test_frames_above_the_decoder_limit_are_refused_whatever_max_pixels(decodes):
    side = int(DECODER_MAX_PIXELS ** 0.5) + 1
    with pytest.raises(FrameDecodeError, match=f"more than the decoder's limit {DECODER_MAX_PIXELS} "
                                               r"\(OPENCV_IO_MAX_IMAGE_PIXELS\)"):
        message_to_rgb8(compressed(crafted_jpeg(side, side)), max_pixels=None)
    assert decodes == []


_BACKSTOP = """
import json, sys
from types import SimpleNamespace
import dann_ros.data.images as images  # sets OpenCV's limit before cv2 loads
import cv2
import numpy as np
from dann_ros.data import decoder_limit
bomb = bytes.fromhex(sys.argv[1])
def peak_rss_mb():  # VmHWM: a child's ru_maxrss starts from its parent's peak on Linux (kept across exec)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
out = {"env": __import__("os").environ["OPENCV_IO_MAX_IMAGE_PIXELS"], "active": decoder_limit.decoder_limit_active()}
try:
    out["imdecode"] = str(cv2.imdecode(np.frombuffer(bomb, np.uint8), cv2.IMREAD_ANYCOLOR).shape)
except cv2.error as exc:
    out["imdecode"] = "refused" if "CV_IO_MAX_IMAGE_PIXELS" in str(exc) else str(exc)
images.compressed_dimensions = lambda data: ("jpeg", 8, 8)  # a header check the bomb got past
try:
    images.message_to_rgb8(SimpleNamespace(format="jpeg", data=bomb))
    out["message_to_rgb8"] = "decoded"
except images.FrameDecodeError as exc:
    out["message_to_rgb8"] = exc.reason
out["peak_rss_mb"] = peak_rss_mb()
print(json.dumps(out))
"""


def test_opencv_refuses_a_bomb_that_got_past_the_header_check():
    """In a fresh process importing dann_ros.data.images (as the node and the readers do), cv2 itself refuses
    an image above DECODER_MAX_PIXELS after its header, before allocating it. The bomb is just above the
    limit (7100 x 7100 = 50.4 MP), so a missing backstop costs this test 150 MB, not 2.3 GB."""
    side = int(DEFAULT_DECODER_MAX_PIXELS ** 0.5) + 5
    bomb = crafted_jpeg(side, side)
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    run = subprocess.run([sys.executable, "-c", _BACKSTOP, bomb.hex()], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["env"] == str(DEFAULT_DECODER_MAX_PIXELS) and out["active"] is True
    assert out["imdecode"] == "refused"
    assert out["message_to_rgb8"].startswith("cannot decode compressed image data")
    assert out["peak_rss_mb"] < 300, out


_CV2_FIRST = """
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
import cv2
import dann_ros.data.images
from dann_ros.data import decoder_limit
print("loaded first", decoder_limit.CV2_LOADED_FIRST, "active", decoder_limit.decoder_limit_active())
"""


def test_cv2_loaded_before_dann_ros_is_reported():
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    run = subprocess.run([sys.executable, "-c", _CV2_FIRST], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "OpenCV's own pixel limit (OPENCV_IO_MAX_IMAGE_PIXELS=50331648) is not in force" in run.stdout
    assert "loaded first True active False" in run.stdout
