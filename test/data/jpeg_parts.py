"""Shared by the header and fuzz tests: a real JPEG cut into its marker segments, to rebuild crafted ones."""

import struct


def segments(jpeg: bytes) -> list[bytes]:
    """A baseline JPEG from cv2.imencode split into SOI, its header segments, and SOS + scan + EOI."""
    out, i = [jpeg[:2]], 2
    while jpeg[i + 1] != 0xDA:
        length = struct.unpack_from(">H", jpeg, i + 2)[0]
        out.append(jpeg[i:i + 2 + length])
        i += 2 + length
    return out + [jpeg[i:]]
