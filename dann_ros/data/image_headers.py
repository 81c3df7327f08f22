"""Frame size of PNG/JPEG bytes, read the way the decoder will read it, without decoding.

A size check is only as good as its agreement with the decoder: a header walker that
reads a segment the decoder skips (or skips one it reads) lets a crafted file through.
A 1 KB JPEG once read as 8x8 here and decoded by OpenCV as 20000x20000 (2.3 GB, 6.7 s):
our walker took ``FF 00`` for a marker with a length, libjpeg takes it for a stuffed zero
and keeps scanning. So both walkers below follow the decoder step by step and refuse
(FrameDecodeError) whatever they cannot follow exactly:

- JPEG: libjpeg(-turbo)'s ``read_markers``/``next_marker`` (jdmarker.c) from SOI to the
  first SOS, where ``jpeg_read_header`` stops and the size is fixed. Garbage and ``FF 00``
  between markers are skipped and ``FF`` fill bytes swallowed as libjpeg does; RSTn and TEM
  have no length; SOF0-3 and SOF9-11 give the size, exactly one of them before the SOS
  (a second is libjpeg's JERR_SOF_DUPLICATE); the SOFs libjpeg does not decode (5-7, 13-15,
  JPG) and the reserved markers are refused, as are a second SOI, EOI before the first scan,
  a zero dimension (DNL-defined heights are unsupported by libjpeg too) and a segment
  length below 2 or past the end of the data.
- PNG: OpenCV's PngDecoder (grfmt_png.cpp) takes the size from IHDR, which must be the
  first chunk with length 13 (libpng). It reads chunks itself up to the first IDAT (past an
  IEND), and an animated PNG's up to the IEND after it, allocating (and zeroing) each one's
  declared length before reading it: a 44-byte PNG declaring a 1.5 GB tEXt chunk costs 1.5 GB
  and 2.6 s in OpenCV 5.1, a 4 GB one after an early IEND 4 GB and 12 s, whatever IHDR says.
  So every chunk up to the IEND after the first IDAT must fit in the data, and their number
  is bounded.
"""

from __future__ import annotations

import struct

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"  # OpenCV's JPEG signature: anything else is not handed to libjpeg
# A camera PNG has IHDR, a few metadata chunks and one IDAT per 8 KB (libpng's default) or more.
MAX_PNG_CHUNKS = 100_000
# libjpeg skips (and warns about) stray bytes, FF fill and FF 00 between header segments; an encoder writes
# none, so a few are followed exactly and more are refused (each costs a Python step here).
MAX_JPEG_SKIPPED = 1024
# Markers before the first scan: a camera JPEG has about ten (APPn, DQT, SOF, DHT, DRI), a phone's some dozens.
MAX_JPEG_SEGMENTS = 1000
_PNG_MAX_LENGTH = 2**31 - 1  # libpng: chunk lengths and dimensions are 31-bit

# libjpeg's read_markers, by marker code
_SOF_DECODED = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB))  # get_sof (SOF3/11: lossless, libjpeg-turbo 3)
_SOF_REFUSED = frozenset((0xC5, 0xC6, 0xC7, 0xC8, 0xCD, 0xCE, 0xCF))  # JERR_SOF_UNSUPPORTED
_NO_LENGTH = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RST0-7: parameterless
# DHT, DAC, DNL, DQT, DRI, APP0-15, COM: a 2-byte length that counts itself, then skipped or parsed to its end
_LENGTH = frozenset((0xC4, 0xCC, 0xDB, 0xDC, 0xDD, *range(0xE0, 0xF0), 0xFE))
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA


class HeaderError(ValueError):
    """Bytes whose frame size cannot be read exactly as the decoder reads it."""


def png_size(buf: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes: IHDR, after checking every chunk OpenCV may read fits in ``buf``.

    OpenCV reads chunks up to the first IDAT (an IEND before it does not stop it), and for an
    animated PNG on from there to the next IEND: the walk covers both.
    """
    n = len(buf)
    if n < 33 or buf[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise HeaderError(f"PNG without an IHDR chunk of 13 bytes first ({n} bytes)")
    width, height = struct.unpack_from(">II", buf, 16)
    i, chunks, image_data = 8, 0, False
    while True:
        if i + 8 > n:
            raise HeaderError(f"PNG cut short: {n - i} bytes at byte {i} where a chunk should start "
                              f"(no IEND after the image data)")
        length = struct.unpack_from(">I", buf, i)[0]
        kind = buf[i + 4:i + 8]
        if length > _PNG_MAX_LENGTH or i + 12 + length > n:
            raise HeaderError(f"PNG chunk {kind!r} at byte {i} declares {length} bytes (+4 CRC); "
                              f"{n - i - 8} bytes follow")
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise HeaderError(f"PNG with more than {MAX_PNG_CHUNKS} chunks")
        i += 12 + length
        image_data = image_data or kind == b"IDAT"
        if kind == b"IEND" and image_data:
            return width, height


def _next_marker(buf: bytes, i: int, skipped: int) -> tuple[int, int, int]:
    """libjpeg's next_marker: skip non-FF bytes, swallow FF fill, treat FF 00 as a stuffed zero.

    Returns (marker code, index after it, bytes skipped so far); refuses past MAX_JPEG_SKIPPED.
    """
    n = len(buf)
    while True:
        at = buf.find(b"\xff", i)
        if at < 0:
            raise HeaderError(f"JPEG cut short ({n} bytes) before its first scan")
        skipped += at - i
        i = at + 1
        while i < n and buf[i] == 0xFF and skipped <= MAX_JPEG_SKIPPED:
            i += 1
            skipped += 1
        if skipped > MAX_JPEG_SKIPPED:
            raise HeaderError(f"JPEG with more than {MAX_JPEG_SKIPPED} fill, stuffed or stray bytes between its "
                              f"header segments (byte {i})")
        if i >= n:
            raise HeaderError(f"JPEG cut short ({n} bytes) before its first scan")
        code = buf[i]
        i += 1
        if code != 0x00:
            return code, i, skipped
        skipped += 2


def jpeg_size(buf: bytes) -> tuple[int, int]:
    """(width, height) from the one SOF libjpeg reads before the first SOS."""
    n = len(buf)
    if buf[:3] != JPEG_MAGIC:
        raise HeaderError(f"not a JPEG: starts {buf[:3].hex()}, not ffd8ff")
    i, size, skipped = 2, None, 0
    for _ in range(MAX_JPEG_SEGMENTS):
        code, i, skipped = _next_marker(buf, i, skipped)
        at = i - 2
        if code in _NO_LENGTH:
            continue
        if code == _SOI:
            raise HeaderError(f"JPEG with a second SOI marker at byte {at}")
        if code == _EOI:
            raise HeaderError(f"JPEG ends (EOI at byte {at}) before its first scan")
        if code in _SOF_REFUSED:
            raise HeaderError(f"JPEG frame type SOF{code - 0xC0} at byte {at} is not decoded by libjpeg")
        if code not in _SOF_DECODED and code not in _LENGTH and code != _SOS:
            raise HeaderError(f"JPEG marker ff{code:02x} at byte {at} is reserved (libjpeg refuses it)")
        if code == _SOS and size is None:
            raise HeaderError(f"JPEG scan (SOS at byte {at}) before any frame header (SOF)")
        if i + 2 > n:
            raise HeaderError(f"JPEG cut short in the segment at byte {at}")
        length = (buf[i] << 8) | buf[i + 1]
        if length < 2 or i + length > n:
            raise HeaderError(f"JPEG segment ff{code:02x} at byte {at} has length {length}; "
                              f"{n - i} bytes follow")
        if code == _SOS:
            return size
        if code in _SOF_DECODED:
            if size is not None:
                raise HeaderError(f"JPEG with a second frame header (SOF at byte {at})")
            if length < 8:
                raise HeaderError(f"JPEG frame header at byte {at} has length {length}")
            height, width, components = struct.unpack_from(">HHB", buf, i + 3)
            if length != 8 + 3 * components:
                raise HeaderError(f"JPEG frame header at byte {at}: length {length} for {components} components")
            if width == 0 or height == 0 or components == 0:
                raise HeaderError(f"JPEG frame header declares an empty {width}x{height} image "
                                  f"({components} components)")
            size = (width, height)
        i += length
    raise HeaderError(f"JPEG with more than {MAX_JPEG_SEGMENTS} markers before its first scan")
