"""Anchor-free CenterNet detector (Zhou et al., "Objects as Points", 2019) on one output stride.

Chosen because its whole decode, peak picking included, is plain tensor algebra:
3x3 max-pool "NMS" on the logits (a location is kept only where it equals its
neighbourhood maximum) -> flatten -> TopK -> sigmoid -> gather. No NonMaxSuppression,
NonZero or other data-dependent shapes enter the graph, so the exported ONNX
(opset 17) builds in TensorRT without plugins. The output always holds
``max_detections`` candidates per image, best first, with their scores: the
consumer applies the score threshold.

Units: ``size`` is regressed in feature-map cells (box width/height divided
by the stride, as in CenterNet), ``offset`` is the sub-cell position of the box
centre in [0, 1). Decoded boxes are x1, y1, x2, y2 in network-input pixels
(map them to camera pixels with :meth:`dann_ros.data.preprocess.Geometry.to_image`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dann_ros.model.backbones import Backbone, build_backbone
from dann_ros.model.fpn import FeaturePyramidNeck
from dann_ros.model.layers import InputNormalize

HEATMAP_BIAS = -2.19  # sigmoid(-2.19) = 0.1: CenterNet's prior, keeps the focal loss stable at the start
MIN_OVERLAP = 0.7  # CenterNet's gaussian radius: a box shifted within the radius keeps this IoU


def _conv_bn_relu(cin: int, cout: int, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, cout, 1))


class CenterNetDetector(nn.Module):
    """Backbone (dense) -> neck -> heatmap / size / offset heads at the neck's output stride.

    ``neck="conv"``: ``neck_layers`` 3x3 conv-BN-ReLU (the second one dilated) on the
    backbone's last map widen the receptive field of the small demo CNNs (16 px for
    small_cnn) to about 50 px so a head sees a whole digit. ``neck="fpn"``: a feature
    pyramid over ``fpn_strides`` fused into one map at the finest of them
    (:class:`FeaturePyramidNeck`). Either way the neck's output is the feature map every
    head reads and the one ``forward_train`` hands to the pixel domain discriminator
    (``feature_channels`` wide), so adaptation shapes exactly the representation the heads use.
    """

    task = "detection"

    def __init__(self, backbone: Backbone, num_classes: int, input_shape: tuple[int, int, int],
                 mean: tuple[float, ...], std: tuple[float, ...], head_channels: int = 64,
                 max_detections: int = 100, neck_layers: int = 2, size_weight: float = 0.1,
                 offset_weight: float = 1.0, neck: str = "conv", fpn_strides: Sequence[int] = (4, 8, 16)) -> None:
        super().__init__()
        if num_classes < 1 or max_detections < 1 or head_channels < 1 or neck_layers < 0:
            raise ValueError("num_classes, max_detections and head_channels must be positive, neck_layers >= 0")
        self.normalize = InputNormalize(mean, std)
        self.backbone = backbone
        if neck == "fpn":
            self.neck: nn.Module = FeaturePyramidNeck(backbone, input_shape[0], fpn_strides, head_channels)
            width, stride = head_channels, self.neck.stride
        elif neck == "conv":
            layers: list[nn.Module] = []
            width, stride = backbone.out_channels, backbone.stride
            for i in range(neck_layers):
                layers += _conv_bn_relu(width, head_channels, dilation=2 if i % 2 else 1)
                width = head_channels
            self.neck = nn.Sequential(*layers)
        else:
            raise ValueError(f"model.neck: {neck!r} is not one of conv, fpn")
        self.feature_channels = width
        self.heatmap = _head(width, head_channels, num_classes)
        self.size = _head(width, head_channels, 2)
        self.offset = _head(width, head_channels, 2)
        nn.init.constant_(self.heatmap[-1].bias, HEATMAP_BIAS)
        self.num_classes = num_classes
        self.stride = stride
        self.input_shape = tuple(input_shape)
        self.size_weight = size_weight
        self.offset_weight = offset_weight
        with torch.no_grad():
            was_training = self.training
            self.eval()
            fmap = self._neck(torch.zeros(1, *input_shape))
            self.train(was_training)
        self.output_hw = (int(fmap.shape[2]), int(fmap.shape[3]))
        # TopK needs a constant K for TensorRT: fix it from the (static) input size
        self.max_detections = min(max_detections, num_classes * self.output_hw[0] * self.output_hw[1])
        self.loss_parts: dict[str, float] = {}

    # -- network ----------------------------------------------------------------------------
    def _neck(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.neck, FeaturePyramidNeck):
            return self.neck(self.backbone.forward_levels(x, self.neck.taps))
        return self.neck(self.backbone(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._neck(self.normalize(x))

    def heads(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"heatmap": self.heatmap(f), "size": self.size(f), "offset": self.offset(f)}

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(feature map for the pixel domain discriminator, raw head outputs) in one pass."""
        f = self.features(x)
        return f, self.heads(f)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decode(self.heads(self.features(x)))

    # -- targets and loss -------------------------------------------------------------------
    def encode_targets(self, boxes_list: Sequence, classes_list: Sequence) -> dict[str, torch.Tensor]:
        """Targets for this model's input and feature-map size (see :func:`encode_targets`)."""
        return encode_targets(boxes_list, classes_list, self.num_classes, self.input_shape[1:], self.stride,
                              output_hw=self.output_hw)

    def task_loss(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Focal heatmap loss + size_weight * L1(size) + offset_weight * L1(offset).

        The parts of the last call are in ``loss_parts`` (floats) for logging.
        """
        loss, self.loss_parts = centernet_loss(outputs, targets, self.size_weight, self.offset_weight)
        return loss

    # -- decode -----------------------------------------------------------------------------
    def decode(self, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Head outputs -> top ``max_detections`` (boxes (N, M, 4) input px, scores (N, M), classes (N, M) int64)."""
        return decode_centernet(outputs["heatmap"], outputs["size"], outputs["offset"], self.stride,
                                self.max_detections)


# --------------------------------------------------------------------------- decode

def decode_centernet(heatmap: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, stride: int,
                     max_detections: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peak picking with a 3x3 max-pool on the logits, then a flat TopK, then the sigmoid.

    Peaks are picked on the logits, not on sigmoid scores: in float16 the sigmoid
    saturates (sigmoid(7.6) and sigmoid(8.0) round to the same value), so
    ``peaks == heat`` would keep both of two confident neighbours and give duplicate
    boxes. The sigmoid is monotonic, so in float32 the result is unchanged.
    Only static shapes: K of TopK and the map size are Python ints, the batch stays symbolic.
    Index arithmetic uses truncating division of non-negative ints (plain ONNX Div, no Mod).
    """
    n, k, h, w = heatmap.shape
    hw = int(h) * int(w)
    m = min(int(max_detections), int(k) * hw)
    peaks = F.max_pool2d(heatmap, 3, stride=1, padding=1)
    lowest = torch.finfo(heatmap.dtype).min  # sigmoid(lowest) == 0: a non-peak scores 0, as before
    logits = torch.where(peaks == heatmap, heatmap, torch.full_like(heatmap, lowest))
    top, idx = torch.topk(logits.reshape(n, -1), m, dim=1)
    scores = torch.sigmoid(top)
    classes = torch.div(idx, hw, rounding_mode="trunc")
    spatial = idx - classes * hw
    ys = torch.div(spatial, int(w), rounding_mode="trunc")
    xs = spatial - ys * int(w)
    gather_idx = spatial.unsqueeze(1).expand(-1, 2, -1)  # (N, 2, M)
    wh = torch.gather(size.reshape(n, 2, hw), 2, gather_idx).clamp(min=0)
    off = torch.gather(offset.reshape(n, 2, hw), 2, gather_idx)
    cx = (xs.to(heatmap.dtype) + off[:, 0]) * stride
    cy = (ys.to(heatmap.dtype) + off[:, 1]) * stride
    half_w, half_h = wh[:, 0] * (stride / 2), wh[:, 1] * (stride / 2)
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=2)
    return boxes, scores, classes


# --------------------------------------------------------------------------- losses

def centernet_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], size_weight: float,
                   offset_weight: float, min_objects: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Focal heatmap loss + size_weight * L1(size) + offset_weight * L1(offset), and its parts as floats.
    The focal loss is divided by the number of objects, at least ``min_objects``.

    Shared by the source task loss and target pseudo-label self-training (model/adaptation/pseudo_label.py).
    """
    device = outputs["heatmap"].device
    t = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
    hm = focal_loss(outputs["heatmap"].float(), t["heatmap"], min_objects=min_objects)
    size = masked_l1(outputs["size"].float(), t["indices"], t["mask"], t["size"])
    off = masked_l1(outputs["offset"].float(), t["indices"], t["mask"], t["offset"])
    parts = {"heatmap": float(hm.detach()), "size": float(size.detach()), "offset": float(off.detach())}
    return hm + size_weight * size + offset_weight * off, parts


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0,
               min_objects: float = 1.0) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, summed and divided by the number of objects, at
    least ``min_objects`` and at least 1 (self-training's target batches: see DetectionPseudoLabelLoss).

    Written with log-sigmoid (no clamping of probabilities) so it stays finite in fp16/AMP.
    """
    pos = target.eq(1).to(logits.dtype)
    p = torch.sigmoid(logits)
    pos_loss = F.logsigmoid(logits) * (1 - p).pow(alpha) * pos
    neg_loss = F.logsigmoid(-logits) * p.pow(alpha) * (1 - target).pow(beta) * (1 - pos)
    num_pos = pos.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos.clamp(min=max(1.0, min_objects))


def masked_l1(pred: torch.Tensor, indices: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the (N, 2, h, w) map read at object centres and (N, maxObj, 2) targets.

    Averaged per coordinate over real objects (CenterNet's RegL1Loss), so the default
    weights (size 0.1, offset 1.0) mean what they mean in CenterNet.
    """
    n, c = pred.shape[:2]
    picked = torch.gather(pred.reshape(n, c, -1), 2, indices.unsqueeze(1).expand(-1, c, -1)).transpose(1, 2)
    m = mask.unsqueeze(2).to(pred.dtype)
    return (torch.abs(picked - target) * m).sum() / (m.sum() * c).clamp(min=1e-4)


# --------------------------------------------------------------------------- targets

def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float = MIN_OVERLAP) -> torch.Tensor:
    """CenterNet's radius (the original, including its well-known quirk) so results compare with it."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def encode_targets(boxes_list: Sequence, classes_list: Sequence, num_classes: int, input_hw: Sequence[int],
                   stride: int, output_hw: Sequence[int] | None = None,
                   max_objects: int | None = None) -> dict[str, torch.Tensor]:
    """Per-image boxes (K, 4) x1, y1, x2, y2 in network-input pixels and class ids (K,) -> CenterNet targets.

    Returns ``heatmap`` (N, C, h, w) gaussian peaks (exactly 1 at each centre cell),
    ``indices`` (N, maxObj) int64 centre cell y * w + x, ``mask`` (N, maxObj) float,
    ``size`` (N, maxObj, 2) box w, h in cells, ``offset`` (N, maxObj, 2) sub-cell centre.
    ``output_hw`` defaults to input_hw // stride; pass the model's (``model.output_hw``)
    when its padding rounds differently. ``max_objects`` defaults to the most boxes of
    any image. Boxes are clipped to the image; empty ones are dropped. All gaussians of
    a batch are drawn in one vectorised pass (a scatter-amax), a few ms for 64 images.
    """
    n = len(boxes_list)
    if len(classes_list) != n:
        raise ValueError(f"{n} box arrays but {len(classes_list)} class arrays")
    in_h, in_w = int(input_hw[0]), int(input_hw[1])
    h, w = (int(output_hw[0]), int(output_hw[1])) if output_hw is not None else (in_h // stride, in_w // stride)
    boxes_np, cls_np, img_np = [], [], []
    for i, (b, c) in enumerate(zip(boxes_list, classes_list)):
        b = np.asarray(b, np.float32).reshape(-1, 4)
        c = np.asarray(c, np.int64).reshape(-1)
        if len(b) != len(c):
            raise ValueError(f"image {i}: {len(b)} boxes but {len(c)} classes")
        if len(c) and (c.min() < 0 or c.max() >= num_classes):
            raise ValueError(f"image {i}: class ids {c.tolist()} outside 0..{num_classes - 1}")
        boxes_np.append(b)
        cls_np.append(c)
        img_np.append(np.full(len(c), i, np.int64))
    boxes = torch.from_numpy(np.concatenate(boxes_np)) if n else torch.zeros(0, 4)
    classes = torch.from_numpy(np.concatenate(cls_np)) if n else torch.zeros(0, dtype=torch.int64)
    images = torch.from_numpy(np.concatenate(img_np)) if n else torch.zeros(0, dtype=torch.int64)
    boxes = torch.stack([boxes[:, 0].clamp(0, in_w), boxes[:, 1].clamp(0, in_h),
                         boxes[:, 2].clamp(0, in_w), boxes[:, 3].clamp(0, in_h)], dim=1)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, classes, images = boxes[keep] / stride, classes[keep], images[keep]

    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    centre = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], dim=1)
    cell = torch.stack([centre[:, 0].floor().clamp(0, w - 1), centre[:, 1].floor().clamp(0, h - 1)], dim=1)
    offset = centre - cell
    cell = cell.long()
    radius = gaussian_radius(torch.ceil(bh), torch.ceil(bw)).floor().clamp(min=0)
    sigma = (2 * radius + 1) / 6

    heatmap = torch.zeros(n * num_classes, h * w)
    if len(classes):
        dx = torch.arange(w, dtype=torch.float32)[None, :] - cell[:, :1]  # (B, w)
        dy = torch.arange(h, dtype=torch.float32)[None, :] - cell[:, 1:]  # (B, h)
        gx = torch.exp(-dx ** 2 / (2 * sigma[:, None] ** 2)) * (dx.abs() <= radius[:, None])
        gy = torch.exp(-dy ** 2 / (2 * sigma[:, None] ** 2)) * (dy.abs() <= radius[:, None])
        g = (gy[:, :, None] * gx[:, None, :]).reshape(len(classes), h * w)
        g = torch.where(g < torch.finfo(torch.float32).eps * g.amax(dim=1, keepdim=True), 0.0, g)  # as CenterNet
        rows = (images * num_classes + classes)[:, None].expand(-1, h * w)
        heatmap.scatter_reduce_(0, rows, g, "amax")
    heatmap = heatmap.reshape(n, num_classes, h, w)

    counts = torch.bincount(images, minlength=n) if n else torch.zeros(0, dtype=torch.int64)
    most = int(counts.max()) if len(counts) else 0
    if max_objects is None:
        max_objects = max(1, most)
    elif most > max_objects:
        raise ValueError(f"an image has {most} boxes, more than max_objects={max_objects}")
    slot = torch.arange(len(images)) - torch.cumsum(counts, 0).sub(counts)[images] if len(images) else images
    indices = torch.zeros(n, max_objects, dtype=torch.int64)
    mask = torch.zeros(n, max_objects)
    size_t = torch.zeros(n, max_objects, 2)
    offset_t = torch.zeros(n, max_objects, 2)
    indices[images, slot] = cell[:, 1] * w + cell[:, 0]
    mask[images, slot] = 1.0
    size_t[images, slot] = torch.stack([bw, bh], dim=1)
    offset_t[images, slot] = offset
    return {"heatmap": heatmap, "indices": indices, "mask": mask, "size": size_t, "offset": offset_t}


# --------------------------------------------------------------------------- builder

def build_detector(model_cfg, num_classes: int, preprocess) -> CenterNetDetector:
    """From ``model:`` config and the Preprocess; optional config fields (``head_channels``,
    ``max_detections``, ``neck_layers``, ``size_weight``, ``offset_weight``, ``neck``, ``fpn_strides``)
    fall back to defaults."""
    backbone = build_backbone(model_cfg.backbone, preprocess.num_channels, dense=True,
                              weights_path=model_cfg.backbone_weights)
    opt = {k: getattr(model_cfg, k) for k in ("head_channels", "max_detections", "neck_layers", "size_weight",
                                               "offset_weight", "neck", "fpn_strides")
           if getattr(model_cfg, k, None) is not None}
    return CenterNetDetector(backbone, num_classes, preprocess.input_shape, preprocess.mean, preprocess.std, **opt)


__all__ = ["CenterNetDetector", "build_detector", "centernet_loss", "decode_centernet", "encode_targets",
           "focal_loss", "gaussian_radius", "masked_l1"]
