"""Target clutter pasted into the renders: patches come from the target frames, never cover a source box,
follow (seed, step, rank), and the config keeps it detection-only and out of the digest when off."""

from __future__ import annotations

import pytest
import torch

from dann_ros.train.config import TargetPatchesConfig
from dann_ros.train.streaming import step_generator
from dann_ros.train.target_patches import paste_target_patches
from dann_ros.train.trainer import Trainer
from test.train.conftest import tiny_config, tiny_detection_config

H, W = 48, 64


def _source(n: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    boxes = [torch.tensor([[4.0, 6.0, 20.0, 30.0], [40.0, 10.0, 60.0, 40.0]])[: 1 + i % 2] for i in range(n)]
    return torch.zeros(n, 3, H, W), boxes


def test_patches_are_target_pixels_and_never_cover_a_source_box():
    x_s, boxes = _source(32)
    # each target image a distinct constant, so a pasted pixel tells which image it came from
    x_t = torch.arange(1, 5, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, H, W).contiguous()
    out = paste_target_patches(x_s, boxes, x_t, 1.0, 4, 3, 12, torch.Generator().manual_seed(0))
    assert torch.equal(x_s, torch.zeros_like(x_s))  # the input is not written
    changed = out != 0
    assert changed.any() and set(out.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    for i, b in enumerate(boxes):
        for x1, y1, x2, y2 in b.int().tolist():
            assert not changed[i, :, y1:y2, x1:x2].any(), f"image {i}: a patch covers the box {(x1, y1, x2, y2)}"


def test_one_patch_is_one_rectangle_with_sides_in_range():
    sides = set()
    for seed in range(40):
        out = paste_target_patches(torch.zeros(1, 3, H, W), [torch.zeros(0, 4)], torch.full((1, 3, H, W), 5.0), 1.0,
                                   1, 3, 9, torch.Generator().manual_seed(seed))
        ys, xs = torch.nonzero(out[0, 0], as_tuple=True)
        h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        assert len(ys) == h * w and 3 <= h <= 9 and 3 <= w <= 9  # a filled rectangle
        sides |= {h, w}
    assert {3, 9} <= sides  # both ends of the range are drawn


def test_share_and_determinism():
    x_s, boxes = _source(64)
    x_t = torch.full((8, 3, H, W), 9.0)
    assert paste_target_patches(x_s, boxes, x_t, 0.0, 3, 4, 8, torch.Generator().manual_seed(0)) is x_s
    a = paste_target_patches(x_s, boxes, x_t, 0.5, 3, 4, 8, torch.Generator().manual_seed(1))
    b = paste_target_patches(x_s, boxes, x_t, 0.5, 3, 4, 8, torch.Generator().manual_seed(1))
    c = paste_target_patches(x_s, boxes, x_t, 0.5, 3, 4, 8, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    touched = (a != 0).flatten(1).any(1).float().mean()
    assert 0.3 < touched < 0.7  # about half of the images got patches


def test_no_patch_is_cut_where_the_detector_sees_an_object():
    x_s, boxes = _source(64)
    # every target pixel a distinct value, so a pasted pixel tells where it was cut
    x_t = (torch.arange(H * W, dtype=torch.float32) + 1).view(1, 1, H, W).expand(2, 3, H, W).contiguous()
    cells = torch.zeros(2, H // 4, W // 4, dtype=torch.bool)  # a stride-4 map
    cells[:, 2:5, 3:6] = True  # pixels y 8..19, x 12..23 hold an object
    kept = paste_target_patches(x_s, boxes, x_t, 1.0, 4, 3, 10, torch.Generator().manual_seed(0))
    out = paste_target_patches(x_s, boxes, x_t, 1.0, 4, 3, 10, torch.Generator().manual_seed(0), avoid=cells)
    cut = out[out != 0].long() - 1
    ys, xs = cut // W, cut % W
    assert len(cut) and not ((ys >= 8) & (ys < 20) & (xs >= 12) & (xs < 24)).any()
    assert (out != 0).sum() < (kept != 0).sum()  # the same draws, fewer patches
    every = torch.ones_like(cells)
    assert torch.equal(paste_target_patches(x_s, boxes, x_t, 1.0, 4, 3, 10, torch.Generator().manual_seed(0),
                                            avoid=every), x_s)


@pytest.mark.parametrize("bad", [{"share": 1.5}, {"share": -0.1}, {"patches": 0}, {"min_side": 0},
                                 {"min_side": 9, "max_side": 8}, {"avoid_score": 1.0}, {"avoid_score": -0.1}])
def test_config_is_checked(bad):
    with pytest.raises(ValueError, match="target_patches"):
        TargetPatchesConfig(**bad)


def test_detection_only_and_digest(tiny_domains, tiny_detection_domains, tmp_path):
    with pytest.raises(ValueError, match="detection only"):
        tiny_config(tiny_domains, tmp_path, **{"adaptation.target_patches.share": 0.5})
    plain = tiny_detection_config(tiny_detection_domains, tmp_path)
    assert plain.digest() == plain.replace(**{"adaptation.target_patches.max_side": 20}).digest()  # the default
    on = plain.replace(**{"adaptation.target_patches.share": 0.5})
    assert on.digest() == on.replace(**{"adaptation.target_patches.avoid_score": 0.0}).digest()
    assert on.digest() != on.replace(**{"adaptation.target_patches.avoid_score": 0.2}).digest()
    assert plain.digest() != plain.replace(**{"adaptation.target_patches.share": 0.5}).digest()
    with pytest.raises(ValueError, match="target_patches.share"):
        plain.replace(**{"adaptation.method": "none", "adaptation.target_patches.share": 0.5, "target.bags": []})


def test_trainer_pastes_the_steps_target_frames_even_without_an_adversary(tiny_detection_domains, tmp_path):
    """With adaptation.method none the trainer still reads target frames when patches are on, and the
    step's source images are exactly paste_target_patches of that step's draws (stream 3)."""
    over = {"adaptation.method": "none", "adaptation.target_patches.share": 1.0,
            "adaptation.target_patches.patches": 4, "adaptation.target_patches.min_side": 4,
            "adaptation.target_patches.max_side": 10}
    plain = Trainer(tiny_detection_config(tiny_detection_domains, tmp_path / "plain", **{"adaptation.method": "none"}),
                    resume=False, show_progress=False)
    pasted = Trainer(tiny_detection_config(tiny_detection_domains, tmp_path / "pasted", **over), resume=False,
                     show_progress=False)
    assert plain._batch(2)[2] is None  # source-only reads no target frames
    x, y, x_t = pasted._batch(2)
    assert torch.equal(x_t, pasted.batches[2]["target"]["images"].to(x_t.dtype))  # the step's own target frames
    raw = pasted.batches[2]["source"]
    tp = pasted.cfg.adaptation.target_patches
    ref = paste_target_patches(raw["images"], raw["boxes"], x_t, tp.share, tp.patches, tp.min_side, tp.max_side,
                               step_generator(pasted.cfg.seed, 2, 0, 3))
    assert torch.equal(ref.to(x.dtype), x) and not torch.equal(x, plain._batch(2)[0])
    assert torch.equal(y["heatmap"], plain._batch(2)[1]["heatmap"])  # the boxes are not moved
    losses = pasted.train_step(2)  # and the step trains, on the source loss only
    assert set(losses) == {"task"} and torch.isfinite(losses["task"])


def test_the_objects_pass_leaves_the_model_as_it_was(tiny_detection_domains, tmp_path):
    """The guard's pass reads the heatmap in eval mode: BatchNorm statistics unchanged, train mode restored,
    one bool per heatmap cell; a threshold no score reaches avoids nothing, one every score reaches all."""
    over = {"adaptation.method": "none", "adaptation.target_patches.share": 1.0,
            "adaptation.target_patches.avoid_score": 0.5}
    trainer = Trainer(tiny_detection_config(tiny_detection_domains, tmp_path, **over), resume=False,
                      show_progress=False)
    trainer.model.train()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    x_t = trainer._batch(0)[2]
    seen = trainer._objects_seen(x_t, 0.5)
    assert trainer.model.training
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    heatmap = trainer.model.forward_train(x_t)[1]["heatmap"]
    assert seen.dtype == torch.bool and seen.shape == (len(x_t), *heatmap.shape[2:])
    assert not trainer._objects_seen(x_t, 0.999).any() and trainer._objects_seen(x_t, 1e-6).all()
    assert torch.isfinite(trainer.train_step(0)["task"])
