"""Bags for the evaluation tests: real rosbag2 files written like robot recordings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

CLASSES = tuple(str(i) for i in range(10))


def digit_images(n: int, size: tuple[int, int] = (40, 48), seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Small camera-like frames with a drawn digit, and their labels."""
    rng = np.random.default_rng(seed)
    h, w = size
    images, labels = [], []
    for i in range(n):
        digit = int(rng.integers(0, 10))
        image = np.clip(rng.normal(rng.uniform(60, 190), 15, (h, w, 3)), 0, 255).astype(np.uint8)
        cv2.putText(image, str(digit), (w // 4, int(h * 0.8)), cv2.FONT_HERSHEY_SIMPLEX, h / 32,
                    (255, 255, 255), 2)
        images.append(image)
        labels.append(str(digit))
    return images, labels


@pytest.fixture(scope="session")
def labelled_bag(tmp_path_factory) -> dict[str, Path]:
    from dann_ros.data.make_bag import write_labelled_bag

    root = tmp_path_factory.mktemp("labelled")
    images, labels = digit_images(90)
    bag = root / "cam_bag"
    label_path = write_labelled_bag(bag, images, labels, classes=CLASSES)
    return {"bag": bag, "labels": label_path, "n": len(images)}
