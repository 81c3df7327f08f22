"""Labelled images in the common ImageFolder layout: <root>/<class name>/<image>."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def read_rgb(path: Path) -> np.ndarray:
    """Any image file as RGB uint8 (grey and 16-bit images converted)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: cannot decode image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def iter_image_folder(root: str | Path) -> Iterator[tuple[Path, str]]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root}: no class subfolders (expected <root>/<class name>/<image>)")
    for cls in classes:
        for path in sorted(cls.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield path, cls.name
