"""Fuzz message_to_rgb8 and compressed_dimensions with generated hostile frames (issue 22).

Every input must end in a frame of at most the limit's pixels or in a FrameDecodeError: never another
exception, never more pixels. Where the header reader gives a size and OpenCV decodes the frame, the
two must agree (the bypass of issue 22 was a disagreement). The inputs: truncated, bit-flipped and
spliced real JPEGs and PNGs, stuffed/fill/RST bytes and decoy frame headers between segments, forged
SOF/IHDR sizes, chunk and segment lengths past the end (the crafted 20000x20000 JPEG and 1.5 GB PNG
chunk among them), and raw images with wrong encodings, sizes, steps and data lengths.

The fuzz runs in a child process so that its peak RSS is its own: VmHWM, not ru_maxrss, since on
Linux a child's ru_maxrss starts from its parent's peak (kept across exec). Deterministic (seeded).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

from jpeg_parts import segments

SEED = 22
N_COMPRESSED = 7000
N_RAW = 4000
LIMIT = 128 * 128  # small, so that accepted frames decode fast; the limit logic is the same at 12.6 MP
PEAK_RSS_BOUND_MB = 250  # the crafted JPEG costs 2.3 GB decoded, the PNG chunk bomb 1.5 GB


def test_fuzz_frames_end_in_a_bounded_frame_or_a_frame_decode_error():
    run = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"\nimage fuzz: {report['inputs']} inputs ({report['compressed']} compressed, {report['raw']} raw) in "
          f"{report['seconds']:.1f} s; outcomes {report['outcomes']}; peak RSS {report['peak_rss_mb']:.0f} MB")
    assert report["failures"] == [], report["failures"][:5]
    assert report["inputs"] >= 10_000
    # both ends are exercised: frames decoded, frames refused for their size, frames refused as malformed
    assert min(report["outcomes"].values()) >= 200, report["outcomes"]
    assert report["agreements"] >= 500  # decoded frames whose header size was checked against the decoder's
    assert report["peak_rss_mb"] < PEAK_RSS_BOUND_MB


# ----------------------------------------------------------------------------- the child

def _chunk(kind: bytes, data: bytes, length: int | None = None) -> bytes:
    return (struct.pack(">I", len(data) if length is None else length) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def _png(width: int, height: int, depth: int = 8, colour: int = 0, extra: bytes = b"", interlace: int = 0) -> bytes:
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    row = bytes(1 + (width * channels * depth + 7) // 8)
    plte = _chunk(b"PLTE", bytes(range(48))) if colour == 3 else b""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
    return (b"\x89PNG\r\n\x1a\n" + ihdr
            + plte + extra + _chunk(b"IDAT", zlib.compress(row * height)) + _chunk(b"IEND", b""))


def _sof(width: int, height: int, template: bytes) -> bytes:
    sof = bytearray(template)
    struct.pack_into(">HH", sof, 5, height & 0xFFFF, width & 0xFFFF)
    return bytes(sof)


class Fuzzer:
    def __init__(self, seed: int) -> None:
        import cv2
        import numpy as np

        from dann_ros.data.images import SUPPORTED_ENCODINGS, encode_compressed

        self.np, self.rng = np, np.random.default_rng(seed)
        self.encodings = list(SUPPORTED_ENCODINGS) + ["32FC1", "", "RGB8", "bgr8 ", "mono12", "16SC1"]
        r = np.random.default_rng(0)
        images = [r.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((8, 8), (24, 16), (17, 33), (40, 48))]
        self.jpegs = [encode_compressed(im, "jpeg", q) for im, q in zip(images, (90, 20, 75, 95))]
        self.jpegs += [cv2.imencode(".jpg", images[2], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
                       cv2.imencode(".jpg", images[3], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes(),
                       cv2.imencode(".jpg", cv2.cvtColor(images[1], cv2.COLOR_RGB2GRAY))[1].tobytes()]
        self.pngs = [encode_compressed(im, "png") for im in images[:3]]
        self.pngs += [_png(20, 10, 16, 2), _png(12, 9, 8, 6), _png(9, 7, 2, 3), _png(16, 16, 1, 0), _png(10, 6, 8, 4),
                      _png(13, 11, 8, 2, interlace=1),
                      _png(16, 12, 8, 6, extra=_chunk(b"acTL", struct.pack(">II", 2, 0))
                           + _chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, 16, 12, 0, 0, 1, 10, 0, 0)))]

    # -- generic mutations
    def _int(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi))

    def _bytes(self, n: int) -> bytes:
        return self.rng.integers(0, 256, n, dtype=self.np.uint8).tobytes()

    def _size(self) -> int:
        """A dimension: mostly small, sometimes huge or at the 16/31-bit edges."""
        pick = self.rng.random()
        if pick < 0.5:
            return self._int(0, 140)
        if pick < 0.8:
            return self._int(0, 70000)
        return int(self.rng.choice([0, 1, 65535, 65536, 20000, 2**31 - 1, 2**31, 2**32 - 1]))

    def flip(self, data: bytes, head: int = 300) -> bytes:
        if not data:
            return data
        b = bytearray(data)
        for _ in range(self._int(1, 9)):
            i = self._int(0, min(len(b), head if self.rng.random() < 0.8 else len(b)))
            b[i] = self._int(0, 256)
        return bytes(b)

    def truncate(self, data: bytes) -> bytes:
        return data[:self._int(0, len(data) + 1)]

    # -- JPEG
    def jpeg(self) -> bytes:
        base = self.jpegs[self._int(0, len(self.jpegs))]
        soi, *header, scan = segments(base)
        sof = next(s for s in header if 0xC0 <= s[1] <= 0xC2)
        for _ in range(self._int(1, 4)):
            op = self._int(0, 11)
            if op == 0 and sof in header:  # forged frame size
                k = header.index(sof)
                sof = header[k] = _sof(self._size(), self._size(), sof)
            elif op == 1:  # stuffed zeros, fill bytes, RST/TEM markers or stray bytes between segments
                junk = [b"\xff\x00", b"\xff" * self._int(1, 40), bytes([0xFF, self._int(0xD0, 0xD8)]), b"\xff\x01",
                        self._bytes(self._int(1, 6))]
                header.insert(self._int(0, len(header) + 1), junk[self._int(0, len(junk))])
            elif op == 2:  # a decoy frame header: a second SOF, or one hidden in an APPn/COM segment
                decoy = _sof(self._size(), self._size(), sof)
                if self.rng.random() < 0.5:
                    code = int(self.rng.choice([0xE0, 0xE1, 0xEF, 0xFE]))
                    decoy = bytes([0xFF, code]) + struct.pack(">H", 2 + len(decoy)) + decoy
                header.insert(self._int(0, len(header) + 1), decoy)
            elif op == 3:  # the bypass: FF 00 + a length jumping over the real SOF to a decoy
                big = _sof(self._size(), self._size(), sof)
                app = b"\xff\xef" + struct.pack(">H", 2 + len(sof)) + sof
                header = [b"\xff\x00" + struct.pack(">H", 2 + len(big) + 4) + big + app] + [
                    s for s in header if s is not sof]
            elif op == 4:  # a segment of a random marker with a random length
                code = self._int(1, 255)
                length = self._int(0, 70) if self.rng.random() < 0.8 else self._int(0, 65536)
                body = self._bytes(min(length, 80))
                header.insert(self._int(0, len(header) + 1), bytes([0xFF, code]) + struct.pack(">H", length) + body)
            elif op == 5 and header:  # a segment's length field rewritten
                k = self._int(0, len(header))
                if len(header[k]) >= 4 and header[k][0] == 0xFF:
                    header[k] = header[k][:2] + struct.pack(">H", self._int(0, 65536)) + header[k][4:]
            elif op == 6 and header:  # a segment's marker code rewritten
                k = self._int(0, len(header))
                if len(header[k]) >= 2:
                    header[k] = header[k][:1] + bytes([self._int(0, 256)]) + header[k][2:]
            elif op == 7 and header:  # a segment dropped or duplicated
                k = self._int(0, len(header))
                header = header[:k] + header[k + 1:] if self.rng.random() < 0.5 else header[:k + 1] + header[k:]
            elif op == 8:  # many scans: SOS headers repeated after the first scan
                scan = scan[:-2] + bytes(scan[:14]) * self._int(1, 30) + b"\xff\xd9"
            elif op == 9 and sof in header:  # SOF type changed (progressive, lossless, arithmetic, unsupported)
                k = header.index(sof)
                sof = bytes([0xFF, self._int(0xC0, 0xD0)]) + sof[2:]
                header[k] = sof
        data = soi + b"".join(header) + scan
        pick = self.rng.random()
        if pick < 0.2:
            data = self.truncate(data)
        elif pick < 0.45:
            data = self.flip(data)
        return data

    # -- PNG
    def png(self) -> bytes:
        base = self.pngs[self._int(0, len(self.pngs))]
        chunks, i = [], 8
        while i < len(base):
            length = struct.unpack_from(">I", base, i)[0]
            chunks.append(base[i:i + 12 + length])
            i += 12 + length
        for _ in range(self._int(1, 4)):
            op = self._int(0, 7)
            if op == 0:  # forged IHDR size, CRC recomputed so that libpng reads on
                body = bytearray(chunks[0][8:21])
                struct.pack_into(">II", body, 0, self._size(), self._size())
                chunks[0] = _chunk(b"IHDR", bytes(body))
            elif op == 1:  # a chunk declaring more bytes than follow (the 1.5 GB tEXt of issue 22's fuzz)
                kind = [b"tEXt", b"IDAT", b"zTXt", b"iCCP", b"fdAT", b"PLTE", b"tRNS", b"abCd"][self._int(0, 8)]
                length = int(self.rng.choice([self._int(0, 100), 1_500_000_000, 2**31 - 1, 2**32 - 1]))
                chunks.insert(self._int(1, len(chunks) + 1), struct.pack(">I", length) + kind + b"abc")
            elif op == 2:  # a random extra chunk, animation control included
                kind = [b"acTL", b"fcTL", b"tEXt", b"bKGD", b"eXIf", b"IHDR", b"CgBI"][self._int(0, 7)]
                body = self._bytes(self._int(0, 40))
                chunks.insert(self._int(1, len(chunks) + 1), _chunk(kind, body))
            elif op == 3 and len(chunks) > 1:  # a chunk dropped (IEND or IDAT included)
                k = self._int(1, len(chunks))
                chunks = chunks[:k] + chunks[k + 1:]
            elif op == 4:  # many empty chunks
                chunks.insert(1, _chunk(b"abCd", b"") * self._int(1, 300))
            elif op == 5:  # the IDAT replaced by random or cut-short deflate data
                k = next((j for j, c in enumerate(chunks) if c[4:8] == b"IDAT"), None)
                if k is not None:
                    idat = chunks[k][8:-4]
                    chunks[k] = _chunk(b"IDAT", self.truncate(idat) if self.rng.random() < 0.5 else self.flip(idat))
        data = b"\x89PNG\r\n\x1a\n" + b"".join(chunks)
        pick = self.rng.random()
        if pick < 0.2:
            data = self.truncate(data)
        elif pick < 0.4:
            data = self.flip(data, head=60)
        return data

    def compressed(self) -> tuple[str, bytes]:
        pick = self.rng.random()
        if pick < 0.55:
            return "jpeg", self.jpeg()
        if pick < 0.95:
            return "png", self.png()
        magic = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b""][self._int(0, 5)]
        return "jpeg", magic + self._bytes(self._int(0, 200))

    # -- raw
    def raw(self) -> SimpleNamespace:
        encoding = self.encodings[self._int(0, len(self.encodings))]
        width = int(self.rng.choice([self._int(-2, 70), self._int(0, 300), self._size(), -self._size()]))
        height = int(self.rng.choice([self._int(-2, 70), self._int(0, 300), self._size()]))
        bpp = {1: 1, 2: 2, 3: 3, 4: 4}.get(self._int(1, 5), 3) * int(self.rng.choice([1, 2]))
        step = int(self.rng.choice([width * bpp, width * bpp + self._int(-4, 9), self._int(-10, 1000), self._size()]))
        want = max(0, height) * max(0, step)
        size = int(self.rng.choice([want, want - self._int(1, 10), want + self._int(1, 50), self._int(0, 5000)]))
        size = max(0, min(size, 200_000))
        data = self._bytes(size)
        return SimpleNamespace(encoding=encoding, width=width, height=height, step=step, data=data,
                               is_bigendian=int(self.rng.integers(0, 2)))


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def main() -> None:
    import numpy as np

    from dann_ros.data.images import FrameDecodeError, compressed_dimensions, message_to_rgb8

    fuzz = Fuzzer(SEED)
    failures: list[str] = []
    outcomes = {"decoded": 0, "refused: size": 0, "refused: malformed": 0}
    agreements = 0
    start = time.perf_counter()

    def run(msg, what: str, header: tuple[int, int] | None) -> None:
        nonlocal agreements
        try:
            out = message_to_rgb8(msg, max_pixels=LIMIT)
        except FrameDecodeError as exc:
            big = "max_input_pixels" in exc.reason or "decoder's limit" in exc.reason
            outcomes["refused: size" if big else "refused: malformed"] += 1
            return
        except Exception as exc:  # noqa: BLE001 - the property under test
            failures.append(f"{what}: {type(exc).__name__}: {exc}")
            return
        outcomes["decoded"] += 1
        if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3):
            failures.append(f"{what}: returned {type(out).__name__} {getattr(out, 'shape', '')}")
        elif out.shape[0] * out.shape[1] > LIMIT:
            failures.append(f"{what}: a {out.shape} frame, above the limit {LIMIT}")
        elif header is not None:
            if sorted(header) != sorted(out.shape[:2]):  # sorted: EXIF orientation may turn the frame
                failures.append(f"{what}: header read as {header}, decoded as {out.shape[:2]}")
            agreements += 1

    for k in range(N_COMPRESSED):
        fmt, data = fuzz.compressed()
        what = f"compressed #{k} ({fmt}, {len(data)} bytes, {data[:48].hex()}...)"
        header = None
        try:
            kind, width, height = compressed_dimensions(data)
            header = (height, width)
            if kind not in ("jpeg", "png") or min(width, height) < 0:
                failures.append(f"{what}: compressed_dimensions gave {(kind, width, height)}")
        except FrameDecodeError:
            pass
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{what}: compressed_dimensions raised {type(exc).__name__}: {exc}")
        run(SimpleNamespace(format=fmt, data=data), what, header)
    for k in range(N_RAW):
        msg = fuzz.raw()
        run(msg, f"raw #{k} ({msg.encoding!r} {msg.width}x{msg.height} step {msg.step}, {len(msg.data)} bytes)", None)
    print(json.dumps({"inputs": N_COMPRESSED + N_RAW, "compressed": N_COMPRESSED, "raw": N_RAW,
                      "seconds": time.perf_counter() - start, "outcomes": outcomes, "agreements": agreements,
                      "failures": failures[:20], "peak_rss_mb": _peak_rss_mb()}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main()
