"""CenterNet decode: peaks picked on logits, so float16 heat maps give no duplicate peaks, fp32 is unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dann_ros.model.detector import decode_centernet


def _decode_on_sigmoid(heatmap, size, offset, stride, max_detections):
    """The previous decode (sigmoid, then peaks on the scores): the fp32 reference."""
    n, k, h, w = heatmap.shape
    hw = h * w
    heat = torch.sigmoid(heatmap)
    heat = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).to(heat.dtype)
    scores, idx = torch.topk(heat.reshape(n, -1), min(max_detections, k * hw), dim=1)
    classes = idx // hw
    spatial = idx - classes * hw
    ys, xs = spatial // w, spatial % w
    g = spatial.unsqueeze(1).expand(-1, 2, -1)
    wh = torch.gather(size.reshape(n, 2, hw), 2, g).clamp(min=0)
    off = torch.gather(offset.reshape(n, 2, hw), 2, g)
    cx, cy = (xs + off[:, 0]) * stride, (ys + off[:, 1]) * stride
    boxes = torch.stack([cx - wh[:, 0] * stride / 2, cy - wh[:, 1] * stride / 2,
                         cx + wh[:, 0] * stride / 2, cy + wh[:, 1] * stride / 2], dim=2)
    return boxes, scores, classes


def _maps(seed: int, n: int = 2, k: int = 3, h: int = 12, w: int = 16):
    g = torch.Generator().manual_seed(seed)
    heat = torch.randn(n, k, h, w, generator=g) * 3 - 2
    size = torch.rand(n, 2, h, w, generator=g) * 6
    offset = torch.rand(n, 2, h, w, generator=g)
    return heat, size, offset


def test_fp16_confident_neighbours_give_one_peak():
    heat, size, offset = _maps(0, n=1, k=1)
    heat[:] = -6.0
    heat[0, 0, 5, 7], heat[0, 0, 5, 8] = 7.6, 8.0  # one object spread over two cells
    heat[0, 0, 2, 2], heat[0, 0, 3, 3] = 9.0, 8.9  # diagonal neighbours, also one object
    heat16 = heat.half()
    assert torch.sigmoid(heat16[0, 0, 5, 7]) == torch.sigmoid(heat16[0, 0, 5, 8])  # the fp16 rounding at issue
    old = _decode_on_sigmoid(heat16, size.half(), offset.half(), 4, 10)[1]
    assert int((old > 0.5).sum()) > 2  # peaks picked on sigmoid scores: duplicates

    boxes, scores, classes = decode_centernet(heat16, size.half(), offset.half(), 4, 10)
    confident = scores[0] > 0.5
    assert int(confident.sum()) == 2  # exactly the two objects
    cx = ((boxes[0, confident, 0] + boxes[0, confident, 2]) / 2 / 4).floor().long().tolist()
    cy = ((boxes[0, confident, 1] + boxes[0, confident, 3]) / 2 / 4).floor().long().tolist()
    assert sorted(zip(cy, cx)) == [(2, 2), (5, 8)]  # the larger logit of each pair
    assert scores.dtype == torch.float16 and torch.all(scores[0, :-1] >= scores[0, 1:])  # best first


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fp32_boxes_unchanged(seed):
    heat, size, offset = _maps(seed)
    boxes, scores, classes = decode_centernet(heat, size, offset, 8, 40)
    ref_boxes, ref_scores, ref_classes = _decode_on_sigmoid(heat, size, offset, 8, 40)
    real = ref_scores > 0  # candidates that are peaks (non-peaks score 0 in both, in any order)
    assert torch.equal(real, scores > 0)
    assert torch.equal(scores[real], ref_scores[real])
    assert torch.equal(classes[real], ref_classes[real])
    assert torch.equal(boxes[real], ref_boxes[real])


def test_fp16_decode_matches_fp32_on_separated_peaks():
    heat, size, offset = _maps(3, n=1)
    b32, s32, c32 = decode_centernet(heat, size, offset, 4, 20)
    b16, s16, c16 = decode_centernet(heat.half(), size.half(), offset.half(), 4, 20)
    keep = s32[0] > 0.3
    np.testing.assert_allclose(s16[0, :int(keep.sum())].float().numpy(), s32[0, keep].numpy(), atol=2e-3)
