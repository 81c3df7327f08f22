"""Box-aware source augmentation for detection (``augment.geometric`` on a detection run).

Renders show their objects upright and whole inside the frame; real cameras see them tilted,
slanted, at other scales and cut by the frame edge. Each source image gets its own random zoom
(zoom > 1 crops, < 1 expands onto a grey canvas), shift, rotation and shear, an optional
horizontal flip (only for images whose every box is of a mirror-safe class: a mirrored "2" is
not a "2") and, optionally, first a 2x2 mosaic of four images. The boxes move with the pixels:
their four corners go through the same map and the enclosing axis-aligned box is kept.

Boxes leaving the frame (the rule ``augment.min_visible`` / ``augment.min_box_side``): a moved
box is clipped to the frame and dropped when the clipped box keeps less than ``min_visible`` of
the moved box's area, or when its shorter side is under ``min_box_side`` network-input pixels;
an object mostly outside the frame is no longer recognisable and must not be taught as one.

Batched on the step's float tensors (one ``affine_grid`` / ``grid_sample`` for the batch; the
boxes of the whole batch in one tensor), drawn from the step's (seed, step, rank) generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dann_ros.train.config import AugmentConfig


def flip_class_ids(cfg: AugmentConfig, classes: Sequence[str]) -> list[int]:
    """``augment.flip_classes`` as class ids of ``classes``; an unknown name is an error naming it."""
    unknown = [c for c in cfg.flip_classes if c not in classes]
    if unknown:
        raise ValueError(f"augment.flip_classes: {unknown} are not among the classes {list(classes)}")
    return [list(classes).index(c) for c in cfg.flip_classes]


def _flat(boxes: Sequence[torch.Tensor], classes: Sequence[torch.Tensor]):
    """Ragged per-image boxes -> one (K, 4) float32 tensor, (K,) classes and (K,) image index."""
    n = len(boxes)
    b = torch.cat([torch.as_tensor(x, dtype=torch.float32).reshape(-1, 4) for x in boxes]) if n else torch.zeros(0, 4)
    c = torch.cat([torch.as_tensor(x, dtype=torch.int64).reshape(-1) for x in classes]) if n \
        else torch.zeros(0, dtype=torch.int64)
    img = torch.repeat_interleave(torch.arange(n), torch.tensor([len(x) for x in classes], dtype=torch.int64))
    return b, c, img


def _mosaic(x: torch.Tensor, b: torch.Tensor, c: torch.Tensor, img: torch.Tensor, share: float,
            g: torch.Generator):
    """Replace ``share`` of the images (drawn per image) by a 2x2 mosaic of it and three others of the
    batch, each at half size; the boxes of the four are halved and moved to their quarter."""
    n, _, h, w = x.shape
    use = torch.rand(n, generator=g) < share
    others = torch.randint(n, (n, 3), generator=g)
    if not bool(use.any()):
        return x, b, c, img
    idx = torch.nonzero(use).flatten()
    quads = torch.cat([idx[:, None], others[idx]], 1)  # (M, 4): top-left, top-right, bottom-left, bottom-right
    dev = x.device
    q = quads.to(dev)
    big = torch.cat([torch.cat([x[q[:, 0]], x[q[:, 1]]], 3), torch.cat([x[q[:, 2]], x[q[:, 3]]], 3)], 2)
    out = x.clone()
    out[idx.to(dev)] = F.interpolate(big, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    keep = ~use[img]  # boxes of images that stay as they were
    nb, nc, ni = [b[keep]], [c[keep]], [img[keep]]
    for k, (qx, qy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        src = quads[:, k]  # image id per mosaic at this quarter
        hit = (img[:, None] == src[None, :])  # (K, M): box belongs to the image in quarter k of mosaic m
        box_i, m_i = torch.nonzero(hit, as_tuple=True)
        moved = b[box_i] * 0.5 + torch.tensor([qx * w / 2, qy * h / 2] * 2)
        nb.append(moved)
        nc.append(c[box_i])
        ni.append(idx[m_i])
    return out, torch.cat(nb), torch.cat(nc), torch.cat(ni)


def box_augment(x: torch.Tensor, boxes: Sequence[torch.Tensor], classes: Sequence[torch.Tensor], cfg: AugmentConfig,
                generator: torch.Generator, flip_ids: Sequence[int] = ()
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """(N, C, H, W) float 0..255 images with per-image boxes ((K, 4) x1, y1, x2, y2 network-input pixels)
    and class ids -> the warped images and their moved, clipped (or dropped) boxes, still per image.
    ``flip_ids``: the mirror-safe class ids (:func:`flip_class_ids`)."""
    n, _, h, w = x.shape
    g = generator
    b, c, img = _flat(boxes, classes)
    if cfg.mosaic > 0:
        x, b, c, img = _mosaic(x, b, c, img, cfg.mosaic, g)

    def u(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * limit

    angle, zoom, shear = u(math.radians(cfg.rotation)), 1 + u(cfg.scale), u(cfg.shear)
    shift = torch.stack([u(cfg.translate) * w, u(cfg.translate) * h], 1)  # (N, 2) pixels
    flip = torch.rand(n, generator=g) < 0.5
    safe = torch.zeros(n, dtype=torch.bool)
    if flip_ids:  # only images whose every box is mirror-safe (an image without boxes is)
        safe[:] = True
        safe[img[~torch.isin(c, torch.tensor(list(flip_ids), dtype=torch.int64))]] = False
    # A = rotation @ shear @ mirror, times the zoom (in pixels, so a rotation stays a rotation on
    # non-square frames)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    shr = torch.eye(2, dtype=torch.float64).repeat(n, 1, 1)
    shr[:, 0, 1] = shear
    mirror = torch.eye(2, dtype=torch.float64).repeat(n, 1, 1)
    mirror[flip & safe, 0, 0] = -1.0
    return warp_with_boxes(x, b, c, img, rot @ shr @ mirror * zoom.view(n, 1, 1), shift, cfg)


def warp_with_boxes(x: torch.Tensor, b: torch.Tensor, c: torch.Tensor, img: torch.Tensor, a: torch.Tensor,
                    shift: torch.Tensor, cfg: AugmentConfig
                    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Image i under the pixel map p' = a[i] (p - centre) + centre + shift[i] ((N, 2, 2) and (N, 2)
    float64), and the boxes (b (K, 4), classes c, image index img) with it, by the module's rule."""
    n, _, h, w = x.shape
    centre = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    # the images: grid_sample reads input at output's (normalised, align_corners=False) coordinates,
    # n_in = D A^-1 D^-1 n_out - D A^-1 shift with D = diag(2/w, 2/h)
    inv = torch.linalg.inv(a)
    d = torch.diag(torch.tensor([2 / w, 2 / h], dtype=torch.float64))
    d_inv = torch.diag(torch.tensor([w / 2, h / 2], dtype=torch.float64))
    theta = torch.cat([d @ inv @ d_inv, -(d @ inv @ shift[:, :, None])], 2)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    fill = float(cfg.fill)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.add_(fill).clamp_(0, 255)
    nhwc = x.is_contiguous(memory_format=torch.channels_last)  # keep the step's layout
    out = out.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)

    # the boxes: the four corners through the same map, then the enclosing box, clipped, the rule applied
    corners = torch.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], 1).double()  # (K, 4, 2)
    moved = torch.einsum("kij,kcj->kci", a[img], corners - centre) + centre + shift[img][:, None]
    lo, hi = moved.amin(1), moved.amax(1)
    area = (hi - lo).prod(1)
    clo = torch.stack([lo[:, 0].clamp(0, w), lo[:, 1].clamp(0, h)], 1)
    chi = torch.stack([hi[:, 0].clamp(0, w), hi[:, 1].clamp(0, h)], 1)
    side = chi - clo
    keep = (side.amin(1) >= cfg.min_box_side) & (side.amin(1) > 0) & (side.prod(1) >= cfg.min_visible * area)
    order = torch.argsort(img[keep], stable=True)  # per image again (a mosaic appends its boxes last)
    moved_boxes = torch.cat([clo, chi], 1).float()[keep][order]
    c, img = c[keep][order], img[keep][order]
    counts = torch.bincount(img, minlength=n).tolist()
    return out, list(moved_boxes.split(counts)), list(c.split(counts))


__all__ = ["box_augment", "flip_class_ids", "warp_with_boxes"]
