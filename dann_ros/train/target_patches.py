"""Real-camera clutter pasted into the renders as background (detection; opt-in ``adaptation.target_patches``).

Why: a detector trained on renders learns what is *not* an object only from the renders'
backgrounds and distractors. The real camera shows clutter no render has (people, poles, signs),
and on the demo's real scenes those, not missed objects, are most of the errors: the digits are
found but pedestrians score as "1"s above them. Small patches cut from the unlabelled target
frames and pasted into source images, away from the source boxes, are learnt as background by the
ordinary source loss: the real scene's clutter becomes labelled negatives, with no target label.

The rule that keeps it label-free and safe: a patch is small (``max_side``, less than a typical
object) so it rarely holds a whole unlabelled real object, and it never covers a source box, so
no source label is hidden. Where objects are small next to the patches, ``avoid`` (the cells where
the detector already sees an object on the target frame) keeps patches off them. Drawn per
(seed, step, rank) like the rest of the step's augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def paste_target_patches(x_s: torch.Tensor, boxes: Sequence[torch.Tensor], x_t: torch.Tensor, share: float,
                         patches: int, min_side: int, max_side: int, generator: torch.Generator,
                         avoid: torch.Tensor | None = None) -> torch.Tensor:
    """Source images (N, C, H, W) with up to ``patches`` rectangles (sides in [min_side, max_side] network-input
    pixels) copied from random places of random target images (M, C, H, W), on a ``share`` of the images.
    A rectangle that would overlap a source box (x1, y1, x2, y2, network-input pixels) is not pasted, nor one
    cut where ``avoid`` (M, h, w) bool, the target cells where the detector sees an object (a map at any
    stride: a cell covers H / h by W / w pixels), is set. Returns a new tensor; the boxes are unchanged."""
    if share <= 0 or patches <= 0 or len(x_t) == 0:
        return x_s
    n, _, h, w = x_s.shape
    hi = min(max_side, h, w, x_t.shape[2], x_t.shape[3])
    lo = min(min_side, hi)
    out = x_s.clone()
    picked = torch.rand(n, generator=generator) < share
    sides = torch.randint(lo, hi + 1, (n, patches, 2), generator=generator)
    where = torch.rand(n, patches, 4, generator=generator)
    which = torch.randint(0, len(x_t), (n, patches), generator=generator)
    for i in range(n):
        if not picked[i]:
            continue
        b = boxes[i].to("cpu", torch.float32).reshape(-1, 4)
        for j in range(patches):
            ph, pw = int(sides[i, j, 0]), int(sides[i, j, 1])
            y = int(where[i, j, 0] * (h - ph + 1))
            x = int(where[i, j, 1] * (w - pw + 1))
            if len(b) and bool(((b[:, 0] < x + pw) & (b[:, 2] > x) & (b[:, 1] < y + ph) & (b[:, 3] > y)).any()):
                continue
            t = x_t[int(which[i, j])]
            ty = int(where[i, j, 2] * (t.shape[1] - ph + 1))
            tx = int(where[i, j, 3] * (t.shape[2] - pw + 1))
            if avoid is not None and _holds_object(avoid[int(which[i, j])], ty, tx, ph, pw, t.shape[1], t.shape[2]):
                continue
            out[i, :, y:y + ph, x:x + pw] = t[:, ty:ty + ph, tx:tx + pw].to(out.dtype)
    return out


def _holds_object(cells: torch.Tensor, y: int, x: int, ph: int, pw: int, h: int, w: int) -> bool:
    """Whether the rectangle (y, x, ph, pw) of an (h, w) image touches a set cell of its (hc, wc) map."""
    hc, wc = cells.shape
    y1, x1 = y * hc // h, x * wc // w
    y2, x2 = -(-(y + ph) * hc // h), -(-(x + pw) * wc // w)  # ceil: any overlap counts
    return bool(cells[y1:y2, x1:x2].any())


__all__ = ["paste_target_patches"]
