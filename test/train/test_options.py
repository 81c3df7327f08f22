"""Each opt-in extra on a real (tiny) domain pair: a short run whose loss moves as documented,
and the camera augmentation's effect on a batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dann_ros.model.adaptation import EntropyLoss, MinimumClassConfusionLoss
from dann_ros.train.augment import AugmentConfig, _gaussian_blur, camera_augment
from dann_ros.train.trainer import Trainer, train
from test.train.conftest import tiny_config

SHORT = {"train.steps": 40, "train.eval_every": 20, "train.checkpoint_every": 20, "train.batch_size": 32,
         "optim.optimizer": "adam", "optim.lr": 2e-3}


def _losses(trainer: Trainer, steps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    trainer.step_module.train()
    for _ in range(steps):
        trainer._apply_schedules(trainer.step)
        for k, v in trainer.train_step(trainer.step).items():
            out.setdefault(k, []).append(float(v.detach()))
        trainer.step += 1
    return out


def _early_late(values: list[float], n: int = 8) -> tuple[float, float]:
    return sum(values[:n]) / n, sum(values[-n:]) / n


@pytest.mark.parametrize("option,key,loss,factor", [
    # the tiny model is far from confident after 60 steps (uniform predictions: MCC 0.9), so the weights are
    # large enough for a clear margin (measured: MCC 0.75 vs 0.89, entropy 1.15 vs 2.25)
    ({"adaptation.target_losses.mcc_weight": 20.0, "adaptation.target_losses.mcc_temperature": 1.0}, "mcc",
     MinimumClassConfusionLoss(1.0), 0.93),
    ({"adaptation.target_losses.entropy_weight": 3.0}, "entropy", EntropyLoss(), 0.8)])
def test_target_regulariser_lowers_its_loss_against_the_same_run_without_it(tiny_domains, tmp_path, option, key,
                                                                           loss, factor):
    """Same seed, batches and steps with and without the extra: MCC leaves less class confusion on the
    target frames, entropy minimisation sharper target predictions (as documented)."""
    scores = {}
    for name, extra in (("with", option), ("without", {})):
        trainer = Trainer(tiny_config(tiny_domains, tmp_path / f"{key}_{name}", **{**SHORT, "optim.lr": 5e-3}, **extra),
                          resume=False, show_progress=False)
        losses = _losses(trainer, 60)
        assert (key in losses) == (name == "with")
        with torch.no_grad():
            trainer.model.eval()
            target = torch.cat([torch.from_numpy(t.read(np.arange(len(t)))) for t in trainer.data.target])
            scores[name] = float(loss(trainer.model(target.float())))
    print(f"{key} on the target frames after 60 steps: with {scores['with']:.3f}, without {scores['without']:.3f}")
    assert scores["with"] < factor * scores["without"]


def test_cdan_run_keeps_its_discriminator_near_chance_and_deploys_without_monitor(tiny_domains, tmp_path):
    result = train(tiny_config(tiny_domains, tmp_path / "cdan", **SHORT, **{"adaptation.method": "cdan"}),
                   show_progress=False)
    assert result["method"] == "cdan"
    acc = [h["domain_accuracy"] for h in result["history"]]
    print(f"CDAN discriminator accuracy {acc}")
    assert all(0.0 <= a <= 1.0 for a in acc) and abs(acc[-1] - 0.5) < 0.35
    from dann_ros.train import checkpoint

    assert checkpoint.load(tmp_path / "cdan" / "model.pt")["domain"] is None  # monitor takes plain features


def test_cdan_is_classification_only(tiny_detection_domains, tmp_path):
    from test.train.conftest import tiny_detection_config

    with pytest.raises(ValueError, match="classification only"):
        tiny_detection_config(tiny_detection_domains, tmp_path, **{"adaptation.method": "cdan"})


def test_source_only_with_mcc_reads_target_batches(tiny_domains, tmp_path):
    option = {"adaptation.method": "none", "adaptation.target_losses.mcc_weight": 1.0}
    trainer = Trainer(tiny_config(tiny_domains, tmp_path / "m", **SHORT, **option), resume=False, show_progress=False)
    assert trainer.adversarial is None and trainer.uses_target
    assert set(_losses(trainer, 2)) == {"task", "mcc"}


def test_camera_augmentation_changes_source_batches_reproducibly(tiny_domains, tmp_path):
    cfg = tiny_config(tiny_domains, tmp_path / "aug", **SHORT, **{"augment.camera": True})
    plain = Trainer(tiny_config(tiny_domains, tmp_path / "plain", **SHORT), resume=False, show_progress=False)
    aug = Trainer(cfg, resume=False, show_progress=False)
    x_plain, y_plain, _ = plain._batch(3)
    x_aug, y_aug, _ = aug._batch(3)
    assert torch.equal(y_plain, y_aug)  # the same images and labels, seen through another camera
    assert not torch.equal(x_plain, x_aug)
    assert torch.equal(aug._batch(3)[0], x_aug)  # a pure function of (seed, step): resume-safe
    result = train(cfg, show_progress=False)
    assert json.loads((tmp_path / "aug" / "metrics.json").read_text())["history"] == result["history"]


def test_camera_augment_parts():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(2, 1, 9, 9)
    x[:, :, 4, 4] = 255.0
    blurred = _gaussian_blur(x, torch.tensor([0.0, 1.0]))
    assert torch.allclose(blurred[0], x[0])  # sigma 0: identity
    assert blurred[1].sum() == pytest.approx(255.0, rel=1e-4) and blurred[1, 0, 4, 4] < 100  # mass kept, spread
    flat = torch.full((64, 1, 8, 8), 128.0)
    out = camera_augment(flat, AugmentConfig(camera=True, blur_sigma=0.0, noise_std=0.0, gamma=0.0), g)
    means = out.mean((1, 2, 3))
    assert means.std() > 5 and (means - 128).abs().max() <= 40.0 + 1e-3  # brightness within +-40
    with pytest.raises(ValueError, match="contrast"):
        AugmentConfig(contrast=1.5)


@pytest.mark.parametrize("mask, camera", [(0.0, False), (0.5, True)])
def test_pseudo_label_self_training_starts_after_adaptation_and_resumes_exactly(tiny_domains, tmp_path, mask, camera):
    """Off (zero) before pseudo_label_start, on after it with confident target labels; the teacher is part
    of the resume state, so a run killed mid-self-training resumes to the same weights (and, with the
    strong view, hides the same blocks and draws the same camera)."""
    option = {**SHORT, "train.steps": 40, "adaptation.self_training.weight": 1.0,
              "adaptation.self_training.start": 0.5,
              "adaptation.self_training.threshold": 0.2, "adaptation.self_training.ema": 0.9, "optim.lr": 5e-3,
              "adaptation.self_training.mask": mask, "adaptation.self_training.camera": camera}
    trainer = Trainer(tiny_config(tiny_domains, tmp_path / "pl", **option), resume=False, show_progress=False)
    losses = _losses(trainer, 40)["pseudo_label"]
    assert all(v == 0.0 for v in losses[:20])
    assert sum(v > 0.0 for v in losses[20:]) >= 5  # on: the teacher passes the threshold on target batches
    assert trainer.pseudo_label.teacher is not trainer.model and trainer.pseudo_label.mask_ratio == mask
    assert (trainer.pseudo_label.view is not None) == camera
    full = train(tiny_config(tiny_domains, tmp_path / "full", **option), show_progress=False)
    parted = tiny_config(tiny_domains, tmp_path / "parted", **option)
    assert Trainer(parted, show_progress=False).run(stop_after=30) is None  # killed during self-training
    resumed = Trainer(parted, show_progress=False).run()
    assert resumed["history"] == full["history"]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "parted" / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["target_losses"]:
        assert torch.equal(a["target_losses"][k], b["target_losses"][k]), k


def test_pseudo_label_mask_is_validated_at_the_config():
    from dann_ros.train.config import SelfTrainingConfig

    assert SelfTrainingConfig(mask=0.5, mask_block=4).mask_block == 4
    for bad in ({"mask": 1.0}, {"mask": -0.1}, {"mask_block": 0}):
        with pytest.raises(ValueError, match="adaptation.self_training.mask"):
            SelfTrainingConfig(**bad)


@pytest.mark.parametrize("mask, camera", [(0.0, False), (0.5, True)])
def test_detection_self_training_learns_from_the_teachers_target_boxes(tiny_detection_domains, tmp_path, mask,
                                                                       camera):
    """The detector's form: zero before pseudo_label_start, then a CenterNet loss on the teacher's target boxes
    (threshold 0.05: the heatmap prior 0.1 passes it, so boxes exist from the start), with MIC's masked view."""
    from dann_ros.model.adaptation.pseudo_label import DetectionPseudoLabelLoss
    from test.train.conftest import tiny_detection_config

    option = {"adaptation.self_training.weight": 1.0, "adaptation.self_training.start": 0.5,
              "adaptation.self_training.threshold": 0.05, "train.steps": 10, "adaptation.self_training.mask": mask,
              "adaptation.self_training.camera": camera}
    trainer = Trainer(tiny_detection_config(tiny_detection_domains, tmp_path / "pl", **option), resume=False,
                      show_progress=False)
    assert isinstance(trainer.pseudo_label, DetectionPseudoLabelLoss) and trainer.pseudo_label.threshold == 0.05
    assert trainer.pseudo_label.mask_ratio == mask and trainer.pseudo_label.has_second_view == camera
    losses = _losses(trainer, 10)["pseudo_label"]
    assert all(v == 0.0 for v in losses[:5]) and all(v > 0.0 for v in losses[5:])
    assert float(trainer.pseudo_label.last_mask_rate) >= 1.0  # pseudo-boxes per target frame


def test_detection_class_balanced_thresholds_read_the_source_batches_class_mix(tiny_detection_domains, tmp_path):
    """The trainer gives the loss each step's source objects per class (class-balanced self-training's
    portions); the class thresholds are resume state, logged per class."""
    from test.train.conftest import tiny_detection_config

    option = {"adaptation.self_training.weight": 1.0, "adaptation.self_training.start": 0.5,
              "adaptation.self_training.threshold": 0.3, "adaptation.self_training.class_portion": 0.5,
              "adaptation.self_training.threshold_floor": 0.05, "train.steps": 10}
    trainer = Trainer(tiny_detection_config(tiny_detection_domains, tmp_path / "cb", **option), resume=False,
                      show_progress=False)
    _losses(trainer, 10)
    pl = trainer.pseudo_label
    _, y_s, _ = trainer._batch(9)
    assert torch.equal(pl.source_classes, trainer.task.class_counts(y_s))  # the last step's source objects
    assert int(pl.source_classes.sum()) == int(y_s["mask"].sum())
    t = pl.class_threshold
    assert t.shape == (len(trainer.data.classes),)
    assert not torch.equal(t, torch.full_like(t, 0.3))  # moved from the start by the source's class counts
    assert "pseudo_label.class_threshold" in trainer._target_losses().state_dict()
    with pytest.raises(ValueError, match="threshold_floor"):
        tiny_detection_config(tiny_detection_domains, tmp_path / "bad",
                              **{**option, "adaptation.self_training.threshold_floor": 0.4})


def test_class_balanced_thresholds_are_detection_only(tiny_domains, tmp_path):
    option = {**SHORT, "adaptation.self_training.weight": 1.0, "adaptation.self_training.threshold": 0.9,
              "adaptation.self_training.class_portion": 0.5}
    with pytest.raises(ValueError, match="class_portion .* is for detection"):
        Trainer(tiny_config(tiny_domains, tmp_path / "cls", **option), resume=False, show_progress=False)


def test_geometric_augmentation_warps_each_source_image_reproducibly(tiny_domains, tmp_path):
    plain = Trainer(tiny_config(tiny_domains, tmp_path / "plain", **SHORT), resume=False, show_progress=False)
    geo = Trainer(tiny_config(tiny_domains, tmp_path / "geo", **SHORT, **{"augment.geometric": True}),
                  resume=False, show_progress=False)
    x_plain, y_plain, _ = plain._batch(3)
    x_geo, y_geo, _ = geo._batch(3)
    assert torch.equal(y_plain, y_geo) and x_geo.shape == x_plain.shape
    changed = (x_geo - x_plain).abs().flatten(1).amax(1) > 1.0
    assert bool(changed.all())  # every image gets its own warp
    assert torch.equal(geo._batch(3)[0], x_geo)  # a pure function of (seed, step): resume-safe
    assert float(x_geo.min()) >= 0.0 and float(x_geo.max()) <= 255.0 + 1e-3  # bilinear, border repeated: no new range


def test_geometric_augment_identity_and_rotation(tiny_detection_domains, tmp_path):
    from dann_ros.train.augment import geometric_augment
    from test.train.conftest import tiny_detection_config

    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 2:7] = 255.0  # a horizontal bar through the centre
    still = AugmentConfig(geometric=True, rotation=0, scale=0, shear=0, translate=0)
    assert torch.equal(geometric_augment(x, still, torch.Generator().manual_seed(0)), x)
    seed = next(s for s in range(100)
                if abs(float(torch.rand(1, generator=torch.Generator().manual_seed(s))) * 2 - 1) > 0.95)
    turned = geometric_augment(x, AugmentConfig(geometric=True, rotation=90, scale=0, shear=0, translate=0),
                               torch.Generator().manual_seed(seed))  # its first draw: an angle of about +-90 degrees
    assert float(turned[0, 0, 4].sum()) < 0.5 * float(x[0, 0, 4].sum())  # the bar left the centre row ...
    assert float(turned[0, 0, :, 4].sum()) > 3 * 255.0  # ... for the centre column
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(geometric=True, scale=1.0)
    # detection takes the box-aware warp instead (test/train/test_box_augment.py); its extras stay detection-only
    assert tiny_detection_config(tiny_detection_domains, tmp_path, **{"augment.geometric": True}).augment.geometric
