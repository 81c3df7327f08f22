"""The one definition of preprocessing, shared by training, export and deployment.

Every image in dann_ros is an RGB ``uint8`` array of shape (H, W, 3) until it
reaches :meth:`Preprocess.prepare`, which resizes it and orders its channels
into the (C, H, W) ``uint8`` array the network takes (as float, 0..255).
Normalisation (mean/std) is a layer inside the network itself, so it travels
inside the exported ONNX graph and cannot be configured twice. The whole
record is written to the exported model's metadata and read back by the
Predictor, the node and the evaluators.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

ResizePolicy = Literal["stretch", "letterbox", "center_crop"]
ChannelOrder = Literal["rgb", "bgr", "grey"]


@dataclass(frozen=True)
class Geometry:
    """How input-image pixels map onto network pixels: net = in * scale + offset."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) x1, y1, x2, y2 boxes from network pixels back to input-image pixels."""
        boxes = np.asarray(boxes, dtype=np.float32).copy()
        boxes[:, 0::2] = (boxes[:, 0::2] - self.offset_x) / self.scale_x
        boxes[:, 1::2] = (boxes[:, 1::2] - self.offset_y) / self.scale_y
        return boxes


@dataclass(frozen=True)
class Preprocess:
    height: int = 28
    width: int = 28
    channels: ChannelOrder = "rgb"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    resize: ResizePolicy = "stretch"
    pad_value: int = 0

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"input size {self.height}x{self.width} is too small (minimum 8x8)")
        n = self.num_channels
        if len(self.mean) != n or len(self.std) != n:
            raise ValueError(f"mean and std need {n} values for channels={self.channels!r}")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")

    @property
    def num_channels(self) -> int:
        return 1 if self.channels == "grey" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.num_channels, self.height, self.width)

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """RGB uint8 (H, W, 3) -> network-ready uint8 (C, h, w) and the geometry used."""
        image = check_rgb8(image)
        resized, geometry = self._resize(image)
        if self.channels == "grey":
            out = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY)[None]
        elif self.channels == "bgr":
            out = resized[:, :, ::-1].transpose(2, 0, 1)
        else:
            out = resized.transpose(2, 0, 1)
        return np.ascontiguousarray(out), geometry

    def _resize(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        h, w = image.shape[:2]
        th, tw = self.height, self.width
        if self.resize == "stretch":
            sx, sy = tw / w, th / h
            return _cv_resize(image, tw, th), Geometry(sx, sy, 0.0, 0.0)
        if self.resize == "letterbox":
            s = min(tw / w, th / h)
            nw, nh = max(1, round(w * s)), max(1, round(h * s))
            canvas = np.full((th, tw, 3), self.pad_value, dtype=np.uint8)
            ox, oy = (tw - nw) // 2, (th - nh) // 2
            canvas[oy:oy + nh, ox:ox + nw] = _cv_resize(image, nw, nh)
            return canvas, Geometry(nw / w, nh / h, float(ox), float(oy))
        # center_crop: scale so the short side fits, then cut the middle
        s = max(tw / w, th / h)
        nw, nh = max(tw, round(w * s)), max(th, round(h * s))
        scaled = _cv_resize(image, nw, nh)
        ox, oy = (nw - tw) // 2, (nh - th) // 2
        return np.ascontiguousarray(scaled[oy:oy + th, ox:ox + tw]), Geometry(nw / w, nh / h, -float(ox), -float(oy))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocess:
        data = json.loads(text)
        for key in ("mean", "std"):
            data[key] = tuple(data[key])
        return cls(**data)


def _cv_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def check_rgb8(image: np.ndarray) -> np.ndarray:
    """Accept (H, W) grey or (H, W, 3) RGB uint8; anything else is a clear error."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    return image
