"""Box-aware augmentation for detection: the boxes follow the pixels, the frame-edge rule, per
(seed, step, rank) draws, the config's checks, and the trainer encoding the moved boxes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dann_ros.train.box_augment import box_augment, flip_class_ids, warp_with_boxes
from dann_ros.train.config import AugmentConfig
from dann_ros.train.trainer import Trainer
from test.train.conftest import tiny_detection_config

H, W = 48, 64
STILL = AugmentConfig(geometric=True, rotation=0, scale=0, shear=0, translate=0)


def _rectangles(n: int, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Black frames, each with one or two filled white rectangles (integer pixel corners) and their boxes."""
    rng = np.random.default_rng(seed)
    x = torch.zeros(n, 3, H, W)
    boxes, classes = [], []
    for i in range(n):
        k = 1 + i % 2
        bs = []
        for j in range(k):
            x0, y0 = int(rng.integers(4 + 28 * j, 14 + 28 * j)), int(rng.integers(6, 18))
            x1, y1 = x0 + int(rng.integers(6, 14)), y0 + int(rng.integers(8, 20))
            x[i, :, y0:y1, x0:x1] = 255.0
            bs.append([x0, y0, x1, y1])
        boxes.append(torch.tensor(bs, dtype=torch.float32))
        classes.append(torch.arange(k, dtype=torch.int64))
    return x, boxes, classes


def _ink_box(image: torch.Tensor, level: float = 127.5) -> tuple[float, float, float, float] | None:
    """The enclosing box (pixel corners) of the pixels above ``level`` in a (C, H, W) image."""
    ys, xs = torch.nonzero(image[0] > level, as_tuple=True)
    if len(ys) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1


@pytest.mark.parametrize("options", [
    dict(scale=0.3),  # zoom (crop / expand)
    dict(translate=0.15),
    dict(rotation=20.0),
    dict(shear=0.3),
    dict(rotation=10.0, scale=0.25, shear=0.15, translate=0.1),
])
def test_moved_box_encloses_the_moved_rectangle(options):
    """One rectangle per image, nothing else drawn: the moved box is the rectangle's enclosing box
    within 1.5 px (bilinear resampling blurs the edge by up to a pixel), for every image."""
    x, boxes, classes = _rectangles(24)
    x, boxes = x[::2], boxes[::2]  # the one-rectangle images
    classes = [torch.zeros(1, dtype=torch.int64)] * len(boxes)
    cfg = dataclasses.replace(STILL, fill=0.0, min_visible=0.0, min_box_side=0.0, **options)
    out, moved, _ = box_augment(x, boxes, classes, cfg, torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    checked = 0
    for img, b in zip(out, moved):
        ink = _ink_box(img)
        if ink is None or len(b) == 0:
            continue
        assert len(b) == 1
        # only boxes wholly inside the frame: the clipped ones are covered by the clip test
        if ink[0] <= 0 or ink[1] <= 0 or ink[2] >= W or ink[3] >= H:
            continue
        assert np.abs(np.array(ink) - b[0].numpy()).max() <= 1.5, (ink, b[0].tolist())
        checked += 1
    assert checked >= 8


def test_identity_and_mirror_of_a_mirror_safe_class():
    x, boxes, classes = _rectangles(6)
    out, moved, moved_classes = box_augment(x, boxes, classes, STILL, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-3)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(moved, boxes))
    assert all(torch.equal(a, b) for a, b in zip(moved_classes, classes))
    # class 0 mirror-safe, class 1 not: the one-box images (class 0) may flip, the two-box ones never
    cfg = dataclasses.replace(STILL, flip_classes=("a",))
    flipped_any = False
    for seed in range(6):
        out, moved, _ = box_augment(x, boxes, classes, cfg, torch.Generator().manual_seed(seed), flip_ids=[0])
        for i in range(len(x)):
            if torch.allclose(out[i], x[i], atol=1e-3):
                assert torch.allclose(moved[i], boxes[i], atol=1e-4)
                continue
            assert i % 2 == 0  # only images whose every box is mirror-safe
            assert torch.allclose(out[i], x[i].flip(-1), atol=1e-3)
            b = boxes[i].clone()
            b[:, [0, 2]] = W - boxes[i][:, [2, 0]]
            assert torch.allclose(moved[i], b, atol=1e-4)
            flipped_any = True
    assert flipped_any
    # no flip_classes (the default): nothing is mirrored whatever the draws
    for seed in range(6):
        out, _, _ = box_augment(x, boxes, classes, STILL, torch.Generator().manual_seed(seed), flip_ids=[])
        assert torch.allclose(out, x, atol=1e-3)


def _shifted(dx: float, cfg: AugmentConfig):
    """A 20x20 box at x 30..50 of a 64-wide frame, shifted right by ``dx`` pixels."""
    b = torch.tensor([[30.0, 10.0, 50.0, 30.0]])
    one = torch.zeros(1, dtype=torch.int64)
    return warp_with_boxes(torch.zeros(1, 3, H, W), b, one, one, torch.eye(2, dtype=torch.float64)[None],
                           torch.tensor([[dx, 0.0]], dtype=torch.float64), cfg)[1][0]


def test_boxes_leaving_the_frame_are_clipped_or_dropped_by_the_documented_rule():
    """Shifted right by 24 px the box spans x 54..74: 10 of its 20 columns visible, kept clipped to
    54..64 at min_visible 0.3, dropped at 0.6. Shifted by 31 px (3 columns, 15% visible) it is dropped
    at 0.3; with min_visible 0 a min_box_side of 4 px drops that 3-px sliver, one of 2 px keeps it."""
    cfg = dataclasses.replace(STILL, min_visible=0.3, min_box_side=2.0)
    kept = _shifted(24.0, cfg)
    assert len(kept) == 1 and np.allclose(kept[0].numpy(), [54.0, 10.0, 64.0, 30.0])
    assert len(_shifted(24.0, dataclasses.replace(cfg, min_visible=0.6))) == 0
    assert len(_shifted(31.0, cfg)) == 0
    assert len(_shifted(31.0, dataclasses.replace(cfg, min_visible=0.0, min_box_side=4.0))) == 0
    sliver = _shifted(31.0, dataclasses.replace(cfg, min_visible=0.0, min_box_side=2.0))
    assert np.allclose(sliver.numpy(), [[61.0, 10.0, 64.0, 30.0]])
    assert len(_shifted(70.0, dataclasses.replace(cfg, min_visible=0.0, min_box_side=0.0))) == 0  # wholly out
    # rotation inflates the enclosing box; its area is the reference for min_visible, not the original's
    rot = torch.tensor([[[0.0, -1.0], [1.0, 0.0]]], dtype=torch.float64)  # 90 degrees about the centre
    b = torch.tensor([[30.0, 10.0, 50.0, 30.0]])
    one = torch.zeros(1, dtype=torch.int64)
    turned = warp_with_boxes(torch.zeros(1, 3, H, W), b, one, one, rot, torch.zeros(1, 2, dtype=torch.float64),
                             cfg)[1][0]
    # centre (32, 24): x' = -(y - 24) + 32, y' = (x - 32) + 24 -> x 26..46, y 22..42
    assert np.allclose(turned.numpy(), [[26.0, 22.0, 46.0, 42.0]], atol=1e-5)


def test_draws_are_a_function_of_the_generator_and_the_fill_is_grey():
    x, boxes, classes = _rectangles(8)
    cfg = AugmentConfig(geometric=True, rotation=5, scale=0.3, shear=0.1, translate=0.2)
    a = box_augment(x, boxes, classes, cfg, torch.Generator().manual_seed(1))
    b = box_augment(x, boxes, classes, cfg, torch.Generator().manual_seed(1))
    c = box_augment(x, boxes, classes, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and all(torch.equal(p, q) for p, q in zip(a[1], b[1]))
    assert not torch.equal(a[0], c[0])
    # zoomed out or shifted: some of the frame is the fill grey (114), never the replicated border
    assert bool(((a[0] - 114.0).abs() < 1e-3).any())
    assert float(a[0].min()) >= 0.0 and float(a[0].max()) <= 255.0 + 1e-3


def test_mosaic_puts_four_images_in_quarters_with_their_boxes():
    x, boxes, classes = _rectangles(4)
    cfg = dataclasses.replace(STILL, mosaic=1.0, fill=0.0)
    out, moved, moved_classes = box_augment(x, boxes, classes, cfg, torch.Generator().manual_seed(0))
    for i in range(4):
        total = sum(len(b) for b in boxes)
        assert 4 <= len(moved[i]) <= 2 * 4 and len(moved_classes[i]) == len(moved[i]) and total == 6
        for b in moved[i]:  # each moved box holds its (half-size) rectangle
            x0, y0, x1, y1 = (int(round(float(v))) for v in b)
            assert x1 - x0 >= 2 and float(out[i, 0, y0:y1, x0:x1].mean()) > 100.0
        ink = out[i, 0] > 127.5
        inside = torch.zeros_like(ink)
        for b in moved[i]:
            x0, y0, x1, y1 = (int(round(float(v))) for v in b)
            inside[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = True
        assert not bool((ink & ~inside).any())  # no rectangle left without its box


def test_config_checks_name_the_key(tiny_detection_domains, tmp_path):
    with pytest.raises(ValueError, match="min_visible"):
        AugmentConfig(geometric=True, min_visible=1.5)
    with pytest.raises(ValueError, match="fill"):
        AugmentConfig(geometric=True, fill=300.0)
    with pytest.raises(ValueError, match="augment.geometric"):
        AugmentConfig(flip_classes=("0",))
    with pytest.raises(ValueError, match="flip_classes"):
        tiny_detection_config(tiny_detection_domains, tmp_path, **{"augment.geometric": True,
                                                                   "augment.flip_classes": ["z"]})
    with pytest.raises(ValueError, match="flip_classes"):
        flip_class_ids(AugmentConfig(geometric=True, flip_classes=("z",)), ("0", "1"))
    assert flip_class_ids(AugmentConfig(geometric=True, flip_classes=("1",)), ("0", "1")) == [1]
    from test.train.conftest import tiny_config
    with pytest.raises(ValueError, match="detection only"):
        tiny_config(tiny_detection_domains, tmp_path, **{"augment.geometric": True, "augment.mosaic": 0.5})
    # the detection config takes the box-aware warp; new keys at their defaults keep old digests
    cfg = tiny_detection_config(tiny_detection_domains, tmp_path, **{"augment.geometric": True})
    assert cfg.augment.geometric
    plain = tiny_detection_config(tiny_detection_domains, tmp_path)
    assert plain.digest() == plain.replace(**{"augment.mosaic": 0.0}).digest()
    assert plain.replace(**{"augment.geometric": True}).digest() != \
        plain.replace(**{"augment.geometric": True, "augment.mosaic": 0.5}).digest()


def test_trainer_encodes_the_moved_boxes_per_seed_step_and_rank(tiny_detection_domains, tmp_path):
    """The step's heatmap targets are those of the augmented boxes, the batch is a pure function of
    (seed, step, rank), and another rank or step draws another warp."""
    aug = {"augment.geometric": True, "augment.rotation": 5.0, "augment.scale": 0.3, "augment.shear": 0.1,
           "augment.translate": 0.15}
    plain = Trainer(tiny_detection_config(tiny_detection_domains, tmp_path / "plain"), resume=False,
                    show_progress=False)
    geo = Trainer(tiny_detection_config(tiny_detection_domains, tmp_path / "geo", **aug), resume=False,
                  show_progress=False)
    x_plain, y_plain, _ = plain._batch(2)
    x_geo, y_geo, _ = geo._batch(2)
    assert x_geo.shape == x_plain.shape and not torch.equal(x_geo, x_plain)
    assert not torch.equal(y_geo["heatmap"], y_plain["heatmap"])  # the targets moved with the pixels
    # the targets are exactly those of box_augment's boxes for this step's generator
    raw = plain.batches[2]["source"]
    g = geo.sampling.augment_generator(2, 0)
    x_ref, b_ref, c_ref = box_augment(raw["images"].float(), raw["boxes"], raw["box_classes"], geo.cfg.augment, g)
    expected = geo.model.encode_targets([b.numpy() for b in b_ref], [c.numpy() for c in c_ref])
    assert torch.equal(expected["heatmap"], y_geo["heatmap"]) and torch.equal(expected["mask"], y_geo["mask"])
    assert torch.allclose(x_ref, x_geo.contiguous(), atol=1e-4)
    # deterministic per (seed, step, rank); another step, or the same batch on rank 1, draws another warp
    assert torch.equal(geo._batch(2)[0], x_geo)
    assert not torch.equal(geo._batch(3)[0], x_geo)
    x_r1, _, _ = box_augment(raw["images"].float(), raw["boxes"], raw["box_classes"], geo.cfg.augment,
                             geo.sampling.augment_generator(2, 1))
    assert not torch.equal(x_r1, x_ref)
