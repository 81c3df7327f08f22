"""Labelled images in the common ImageFolder layout: <root>/<class name>/<image> (read them with
dann_ros.data.replicator.read_rgb, the one image-file reader)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


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
