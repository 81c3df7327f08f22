"""dann_node under malformed input: >= 1,000 malformed raw Image and >= 300 malformed CompressedImage
messages (odd encodings, steps, truncated data and CDR, huge declared sizes, PNG/JPEG decompression
bombs) against the real node over DDS, then crafted bombs one at a time (each waited for until the
node refused it): a JPEG whose stuffed FF 00 hides a 20000 x 20000 frame header from a naive header
walker (which reads 8 x 8), a PNG whose IHDR declares 20000 x 20000, a CompressedImage above the byte
cap, a raw Image declaring 20000 x 20000 with 64 bytes of data. The node must stay up, stay under
400 MB resident (its peak, VmHWM from /proc, over its whole life) and answer >= 95 of the 100 good
frames sent right after. The figures are printed."""

from __future__ import annotations

import re
import struct
import time
import zlib

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Classification

from dann_ros.data.images import COMPRESSED_FORMATS, MAX_COMPRESSED_BYTES, encode_compressed
from dann_ros.ros import names
from ros_helpers import diagnostic_values, image_msg, peak_rss_mb, rgb_frame, rss_mb, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
GOOD_AFTER = 100
# The node's memory may grow by this much at most while it is fuzzed (its baseline, with the
# model, ONNX Runtime and rclpy loaded, is ~250 MB; decoding one 20000x20000 PNG bomb alone
# would take 1.2 GB).
MAX_GROWTH_MB = 300
MAX_RSS_MB = 400  # the node's peak resident memory, whole life (issue 22)


def _png(width: int, height: int, rows: int, bit_depth: int = 8, colour: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(6)
    row = bytes(width * max(1, bit_depth // 8) + 1)
    idat = b"".join(comp.compress(row) for _ in range(rows)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _jpeg_declaring(good: bytes, width: int, height: int) -> bytes:
    data = bytearray(good)
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _jpeg_segments(jpeg: bytes) -> list[tuple[int, bytes]]:
    """(marker, segment bytes) of a baseline JPEG after SOI; the last one is SOS with the scan data and EOI."""
    out, i = [], 2
    while True:
        marker, length = jpeg[i + 1], struct.unpack_from(">H", jpeg, i + 2)[0]
        if marker == 0xDA:
            return out + [(marker, jpeg[i:])]
        out.append((marker, jpeg[i:i + 2 + length]))
        i += 2 + length


def stuffed_sof_jpeg(width: int = 20000, height: int = 20000) -> bytes:
    """A ~640-byte JPEG that libjpeg decodes to width x height while a header walker that takes FF 00
    for a marker with a length reads 8 x 8: after SOI comes FF 00 (a stuffed zero to libjpeg, which
    scans on) whose 'length' covers the real tables, a width x height SOF, the scan and EOI; the walker
    lands on an 8 x 8 SOF placed after them, which libjpeg never reaches."""
    small = encode_compressed(np.full((8, 8, 3), 128, np.uint8), "jpeg")
    segments = [(m, b) for m, b in _jpeg_segments(small) if m != 0xE0]  # JFIF APP0 not needed
    sof = next(b for m, b in segments if m == 0xC0)
    big = bytearray(sof)
    struct.pack_into(">HH", big, 5, height, width)
    hidden = b"".join(bytes(big) if m == 0xC0 else b for m, b in segments)
    length = struct.pack(">H", len(hidden) + 2)
    assert b"\xff" not in length
    return b"\xff\xd8\xff\x00" + length + hidden + sof + b"\xff\xd9"


def crafted_compressed_bombs() -> list[tuple[str, CompressedImage, str]]:
    """(name, message, the reason the node must log/report for it)."""
    fmt_j, fmt_p = COMPRESSED_FORMATS["jpeg"], COMPRESSED_FORMATS["png"]
    oversized = encode_compressed(rgb_frame(3, 64, 48), "jpeg")
    oversized += bytes(MAX_COMPRESSED_BYTES + 1 - len(oversized))  # a small real JPEG, then padding past the cap
    return [
        ("stuffed FF 00 JPEG (8x8 to a naive walker, 20000x20000 to OpenCV)",
         CompressedImage(format=fmt_j, data=stuffed_sof_jpeg()), r"JPEG image \(header\) is 20000x20000"),
        ("PNG IHDR 20000x20000, one row of data", CompressedImage(format=fmt_p, data=_png(20000, 20000, rows=1)),
         r"PNG image \(header\) is 20000x20000"),
        (f"CompressedImage of {len(oversized)} bytes", CompressedImage(format=fmt_j, data=oversized),
         rf"compressed image of {len(oversized)} bytes .* larger than the {MAX_COMPRESSED_BYTES}-byte limit"),
    ]


def crafted_raw_bombs() -> list[tuple[str, Image, str]]:
    return [("raw rgb8 20000x20000 with 64 bytes", Image(height=20000, width=20000, encoding="rgb8", step=60000,
                                                        data=bytes(64)),
             r"the rgb8 image is 20000x20000 = 400000000 pixels, more than max_input_pixels")]


def malformed_raw(n: int, rng: np.random.Generator) -> list:
    """n malformed sensor_msgs/Image messages (or serialized bytes), cycling through the kinds."""
    base = Image(height=48, width=64, encoding="rgb8", step=192, data=bytes(48 * 192))
    serialized = serialize_message(base)
    kinds = [
        lambda i: Image(height=4, width=4, encoding=["", "rgb9", "jpeg", "32FC1", "bgr8 ", "ñ" * 3, "x" * 300][i % 7],
                        step=12, data=bytes(48)),
        lambda i: Image(height=48, width=64, encoding="rgb8", step=int(rng.integers(0, 192)), data=bytes(48 * 192)),
        lambda i: Image(height=48, width=64, encoding="rgb8", step=192, data=bytes(int(rng.integers(0, 9216)))),
        lambda i: Image(height=2**32 - 1, width=2**32 - 1, encoding="rgb8", step=2**32 - 1, data=bytes(64)),
        lambda i: Image(height=2**31, width=3, encoding="mono8", step=3, data=bytes(9)),
        lambda i: Image(height=0, width=int(rng.integers(0, 100)), encoding="mono8", step=100, data=b""),
        lambda i: Image(height=5, width=int(rng.integers(1, 9)) * 2 + 1, encoding=["yuv422", "yuyv", "uyvy"][i % 3],
                        step=40, data=bytes(200)),
        lambda i: Image(height=int(rng.integers(1, 4)), width=int(rng.integers(1, 4)),
                        encoding=["bayer_rggb8", "bayer_grbg16", "bayer_bggr8"][i % 3], step=8, data=bytes(32)),
        lambda i: Image(height=3, width=3, encoding=["mono16", "rgb16", "bgra16"][i % 3], step=int(rng.integers(7, 30)),
                        data=bytes(100)),
        lambda i: Image(height=4, width=4, encoding="rgb16", step=24, is_bigendian=int(rng.integers(2, 256)),
                        data=bytes(96)),
        lambda i: Image(height=2, width=2**30, encoding="rgb8", step=3 * 2**30, data=bytes(16)),
        # serialized bytes: truncated CDR, random bytes, another encapsulation, a length field of 2^32-1
        lambda i: serialized[: int(rng.integers(0, len(serialized)))],
        lambda i: rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes(),
        lambda i: bytes([0, 9, 0, 0]) + serialized[4:],
        lambda i: serialized[:20] + b"\xff\xff\xff\xff" + serialized[24:],
    ]
    out = [kinds[i % len(kinds)](i) for i in range(n)]
    # a few frames just above max_input_pixels, with all their data (12.6 MB each)
    big = Image(height=3072, width=4097, encoding="mono8", step=4097, data=bytes(4097 * 3072))
    return out + [big] * 3


def malformed_compressed(n: int, rng: np.random.Generator) -> list:
    jpeg = encode_compressed(rgb_frame(1, 320, 240), "jpeg")
    png = encode_compressed(rgb_frame(2, 64, 48), "png")
    bomb = _png(20000, 20000, rows=20000)  # a complete, valid 400 MP all-zero PNG: ~390 KB
    fmt_j, fmt_p = COMPRESSED_FORMATS["jpeg"], COMPRESSED_FORMATS["png"]
    base = CompressedImage(format=fmt_j, data=jpeg)
    serialized = serialize_message(base)
    kinds = [
        lambda i: CompressedImage(format=fmt_p, data=bomb),
        lambda i: CompressedImage(format=fmt_p, data=_png(100_000, 1 + i % 7, rows=1)),
        lambda i: CompressedImage(format=fmt_p, data=_png(5000, 5000, rows=10, bit_depth=16, colour=2)),
        lambda i: CompressedImage(format=fmt_j, data=_jpeg_declaring(jpeg, 60000, 50000)),
        lambda i: CompressedImage(format=fmt_j, data=_jpeg_declaring(jpeg, 65535, 65535)),
        lambda i: CompressedImage(format=fmt_j, data=_jpeg_declaring(jpeg, 0, 240)),
        lambda i: CompressedImage(format=fmt_j, data=jpeg[: int(rng.integers(0, len(jpeg)))]),
        lambda i: CompressedImage(format=fmt_p, data=png[: int(rng.integers(0, len(png)))]),
        lambda i: CompressedImage(format=fmt_j, data=rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()),
        lambda i: CompressedImage(format=["", "compressedDepth png", "16UC1; compressedDepth", "bmp", "jpeg"][i % 5],
                                  data=[b"", b"BM" + bytes(60), b"GIF89a" + bytes(30), png, b"\xff\xd8"][i % 5]),
        lambda i: CompressedImage(format=fmt_j, data=jpeg[:-2] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" * 1200),
        lambda i: serialized[: int(rng.integers(0, len(serialized)))],
        lambda i: serialized[:24] + b"\xff\xff\xff\x7f" + serialized[28:],
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


def _publish_all(pub, messages, pause_s: float) -> None:
    for msg in messages:
        pub.publish(msg)
        time.sleep(pause_s)


def _camera_values(diagnostics, name: str):
    for array in reversed(diagnostics.snapshot()):
        values = diagnostic_values(array, name)
        if values is not None:
            return values
    return None


def _bombs(diagnostics, pub, node, name: str, bombs) -> None:
    """Each bomb alone, until the node reports refusing it (newest-frame-wins cannot drop it)."""
    for what, msg, reason in bombs:
        before = _camera_values(diagnostics, name)
        errors = int(before["decode errors"]) if before else 0
        t0 = time.monotonic()
        pub.publish(msg)
        try:
            wait_for(lambda errors=errors, reason=reason: (v := _camera_values(diagnostics, name))
                     and int(v["decode errors"]) > errors and re.search(reason, v["last error"]),
                     timeout=30, what=f"the node to refuse the bomb: {what}")
        except pytest.fail.Exception:
            state = f"peak RSS {peak_rss_mb(node.proc.pid):.0f} MB" if node.proc.poll() is None else "dead"
            pytest.fail(f"the node did not refuse {what} ({state}; last status "
                        f"{_camera_values(diagnostics, name)}):\n{node.log()[-2000:]}")
        assert node.proc.poll() is None, f"dann_node died on {what}:\n{node.log()[-3000:]}"
        print(f"  bomb refused in {time.monotonic() - t0:.2f} s, node peak RSS so far "
              f"{peak_rss_mb(node.proc.pid):.0f} MB: {what}")


def _fuzz(ros, node, msg_type, topic: str, out_topic: str, messages: list, good, record_property, label: str,
          bombs=()):
    diagnostics = ros.subscribe(DiagnosticArray, names.DIAGNOSTICS, 50)
    pub = ros.publisher(msg_type, topic, RELIABLE)
    out = ros.subscribe(Classification, out_topic)
    wait_for(lambda: pub.get_subscription_count() > 0, what="dann_node subscribing the input")
    pid = node.proc.pid
    # warm up: the first good frames load everything inference needs
    for i in range(20):
        pub.publish(good(i, "warmup"))
        time.sleep(0.05)
    wait_for(lambda: out.find(lambda m: m.header.frame_id == "warmup"), what="a warm-up output")
    baseline = rss_mb(pid)

    t0 = time.monotonic()
    _publish_all(pub, messages, pause_s=0.003)
    fuzz_s = time.monotonic() - t0
    time.sleep(1.0)
    assert node.proc.poll() is None, f"dann_node died during the fuzz:\n{node.log()[-3000:]}"
    name = f"/{label}/dann_node: {topic}"
    wait_for(lambda: (v := _camera_values(diagnostics, name)) and int(v["frames received"]) >= len(messages) and v,
             what="diagnostics after the fuzz")
    print(f"\n{label}: crafted bombs")
    _bombs(diagnostics, pub, node, name, bombs)

    out.clear()
    for i in range(GOOD_AFTER):
        pub.publish(good(i, f"after_{i}"))
        time.sleep(0.05)
    wait_for(lambda: len({m.header.frame_id for m in out.snapshot()}) >= GOOD_AFTER * 0.95, timeout=20,
             what=f">= 95 % of {GOOD_AFTER} good frames answered")
    time.sleep(0.5)
    answered = len({m.header.frame_id for m in out.snapshot() if m.header.frame_id.startswith("after_")})
    peak = peak_rss_mb(pid)
    values = wait_for(lambda: (v := _camera_values(diagnostics, name))
                      and int(v["frames received"]) >= len(messages) + len(bombs) and v, what="diagnostics after all")
    figures = dict(sent=len(messages), bombs=len(bombs), fuzz_s=round(fuzz_s, 1), answered_after=answered,
                   good_after=GOOD_AFTER, rss_before_mb=round(baseline), peak_rss_mb=round(peak),
                   received=int(values["frames received"]), decode_errors=int(values["decode errors"]),
                   drops=int(values["drops"]))
    print(f"{label} fuzz: {figures}")
    record_property(f"{label}_fuzz", figures)
    assert node.proc.poll() is None
    assert answered >= 0.95 * GOOD_AFTER, figures
    assert peak - baseline < MAX_GROWTH_MB, figures
    assert peak < MAX_RSS_MB, figures
    # the malformed frames the node got to (newest-frame-wins drops the rest) were refused as decode errors
    assert figures["decode_errors"] >= 0.5 * (figures["received"] - figures["drops"] - GOOD_AFTER - 20), figures
    assert "skipped a frame" in node.log()


def test_raw_fuzz(ros, start_node, tiny_onnx, record_property):
    node = start_node(tiny_onnx, namespace="fuzz_raw",
                      parameters={"qos_reliability": "reliable", "qos_depth": 50, "diagnostics_period": 0.5})
    node.wait_log(r"\]: active: ")
    messages = malformed_raw(1000, np.random.default_rng(12))
    assert len(messages) >= 1000

    def good(i, tag):
        return image_msg(rgb_frame(i), ros.now(), tag)

    _fuzz(ros, node, Image, "/fuzz_raw/image", "/fuzz_raw/classification", messages, good, record_property,
          "fuzz_raw", crafted_raw_bombs())
    log = node.log()
    assert "more than max_input_pixels 12582912" in log


def test_compressed_fuzz(ros, start_node, tiny_onnx, record_property):
    node = start_node(tiny_onnx, namespace="fuzz_comp",
                      parameters={"compressed": True, "qos_reliability": "reliable", "qos_depth": 50,
                                  "diagnostics_period": 0.5})
    node.wait_log(r"\]: active: ")
    messages = malformed_compressed(300, np.random.default_rng(13))
    jpeg_of = {i: encode_compressed(rgb_frame(i), "jpeg") for i in range(GOOD_AFTER)}

    def good(i, tag):
        msg = CompressedImage(format=COMPRESSED_FORMATS["jpeg"], data=jpeg_of[i % GOOD_AFTER])
        msg.header.stamp, msg.header.frame_id = ros.now(), tag
        return msg

    _fuzz(ros, node, CompressedImage, "/fuzz_comp/image", "/fuzz_comp/classification", messages, good,
          record_property, "fuzz_comp", crafted_compressed_bombs())
    # newest-frame-wins may have dropped every bomb of the burst: one more, alone, must be refused
    # from its header (and logged: the burst's random payloads must not use up the log's kinds)
    pub = ros.publisher(CompressedImage, "/fuzz_comp/image", RELIABLE)
    pub.publish(CompressedImage(format=COMPRESSED_FORMATS["png"], data=_png(20000, 20000, rows=20000)))
    node.wait_log(r"PNG image \(header\) is \d+x\d+ = \d+ pixels, more than max_input_pixels", timeout=20)
    assert node.proc.poll() is None
