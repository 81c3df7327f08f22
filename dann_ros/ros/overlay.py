"""The overlay image: the input frame with the result written on it (only drawn for subscribers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from dann_ros.data.images import rgb8_to_image_fields


def draw_lines(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Write ``lines`` top-left on a dark band, in place (the image is the node's own decoded copy)."""
    h, w = image.shape[:2]
    scale = max(0.4, w / 900.0)
    thickness = max(1, round(scale * 1.5))
    (_, text_h), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    line_h = text_h + baseline + 4
    width = max(cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for s in lines) + 8
    band = image[: min(h, line_h * len(lines) + 4), : min(w, width)]
    band //= 3  # darken for contrast, in place
    for i, text in enumerate(lines):
        y = 2 + text_h + i * line_h
        cv2.putText(image, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), thickness, cv2.LINE_AA)
    return image


def draw_boxes(image: np.ndarray, boxes: Sequence[tuple[Sequence[float], str]]) -> np.ndarray:
    """Rectangles (x1, y1, x2, y2 in image pixels) with a caption above each, in place."""
    scale = max(0.35, image.shape[1] / 1200.0)
    thickness = max(1, round(image.shape[1] / 400))
    for (x1, y1, x2, y2), caption in boxes:
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(image, p1, p2, (0, 255, 0), thickness)
        cv2.putText(image, caption, (p1[0], max(p1[1] - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0),
                    1, cv2.LINE_AA)
    return image


def image_message(image: np.ndarray, header: Any):
    from sensor_msgs.msg import Image

    height, width, encoding, step, data = rgb8_to_image_fields(image)
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=step,
                 data=data)
