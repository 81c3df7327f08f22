"""Issue 21's self-training defects on the trainer's side: which checkpoints selection may pick, the
second view's random draws per (seed, step, rank), and the source object count the target loss is divided by."""

from __future__ import annotations

import torch

from dann_ros.train.trainer import final_stage


def test_selection_excludes_the_evaluation_at_the_start_step_which_had_no_self_training():
    """Self-training is on for training step t when t >= start (``_apply_schedules``); the evaluation recorded
    as step s follows steps 0 .. s - 1. So s = start (integer start) or s = ceil(start) (fractional) had none."""
    hist = [{"step": s} for s in (1400, 1500, 1600, 1700)]
    assert [h["step"] for h in final_stage(hist, 1500)] == [1600, 1700]  # 1500: steps 0..1499, none on
    assert [h["step"] for h in final_stage(hist, 1499)] == [1500, 1600, 1700]  # step 1499 was self-trained
    assert [h["step"] for h in final_stage(hist, 1499.5)] == [1600, 1700]  # first on: step 1500, seen from 1501
    short = [{"step": s} for s in (12, 13, 14)]
    assert [h["step"] for h in final_stage(short, 12.5)] == [14]  # 13: steps 0..12, all below 12.5
    assert [h["step"] for h in final_stage(hist, 0)] == [1400, 1500, 1600, 1700]  # no self-training: all
    assert final_stage(hist, 1700) == hist[-1:]  # none self-trained: the last evaluation stays a candidate


def _bn_buffers(model) -> dict:
    return {k: v.clone() for k, v in model.named_buffers() if k.rsplit(".", 1)[-1] in
            ("running_mean", "running_var", "num_batches_tracked")}


def test_a_step_with_the_masked_camera_view_leaves_the_running_statistics_of_the_step_without(
        tiny_detection_domains, tmp_path):
    """Self-training on from step 0: after one step, the student's and the teacher's BatchNorm running statistics
    are those of the same step without the second view (the clean source + target pass's alone)."""
    from dann_ros.train.trainer import Trainer
    from test.train.conftest import tiny_detection_config

    stats = {}
    for name, mask, camera in (("plain", 0.0, False), ("masked", 0.5, True)):
        cfg = tiny_detection_config(tiny_detection_domains, tmp_path / name, **{
            "adaptation.self_training.weight": 1.0, "adaptation.self_training.start": 0.0,
            "adaptation.self_training.threshold": 0.05, "adaptation.self_training.mask": mask,
            "adaptation.self_training.camera": camera})
        trainer = Trainer(cfg, resume=False, show_progress=False)
        assert trainer.pseudo_label.has_second_view == (name == "masked")
        trainer.step_module.train()
        trainer._apply_schedules(0)
        assert float(trainer.train_step(0)["pseudo_label"].detach()) > 0  # self-training ran
        trainer.pseudo_label.update_teacher()  # what the next step's loss does first
        stats[name] = (_bn_buffers(trainer.model), _bn_buffers(trainer.pseudo_label.teacher))
    assert stats["plain"][0]
    for i in (0, 1):  # the student's, then the teacher's
        for k, v in stats["plain"][i].items():
            assert torch.equal(stats["masked"][i][k], v), k


def _masked_trainer(domains, out):
    from dann_ros.train.trainer import Trainer
    from test.train.conftest import tiny_detection_config

    cfg = tiny_detection_config(domains, out, **{
        "adaptation.self_training.weight": 1.0, "adaptation.self_training.start": 0.0,
        "adaptation.self_training.threshold": 0.05, "adaptation.self_training.mask": 0.5,
        "adaptation.self_training.camera": True})
    return Trainer(cfg, resume=False, show_progress=False)


def test_ranks_draw_their_own_masks_and_cameras_reproducibly(tiny_detection_domains, tmp_path):
    """The second view's draws are a pure function of (seed, step, rank): rank 1 hides other blocks through
    another camera than rank 0 at the same step, and the same (seed, step, rank) draws the same again."""
    trainer = _masked_trainer(tiny_detection_domains, tmp_path / "views")
    _, _, x_t = trainer._batch(3)
    pl = trainer.pseudo_label

    def view(step: int, rank: int) -> torch.Tensor:
        return pl.second_view(x_t, trainer.second_view_generator(step, rank))

    torch.manual_seed(0)  # the global generator: not what the draws come from
    rank0 = view(3, 0)
    torch.manual_seed(1)
    assert torch.equal(view(3, 0), rank0)
    assert not torch.equal(view(3, 1), rank0) and not torch.equal(view(4, 0), rank0)
    mean = pl.student.normalize.mean.to(x_t.dtype)
    hidden0, hidden1 = ((view(3, r) == mean).all(1) for r in (0, 1))
    assert not torch.equal(hidden0, hidden1)  # the masks themselves differ, not only the cameras


def test_a_step_on_another_rank_trains_on_another_second_view(tiny_detection_domains, tmp_path):
    """The training step's own code path: the same batch (built for rank 0) and weights, one step with the
    trainer's rank set to 0 and to 1; only the second view's draws depend on it, so the weights differ."""
    import dataclasses

    weights = {}
    for rank in (0, 1):
        trainer = _masked_trainer(tiny_detection_domains, tmp_path / f"rank{rank}")
        trainer.dist = dataclasses.replace(trainer.dist, rank=rank)  # world size 1: no process group needed
        trainer.step_module.train()
        trainer._apply_schedules(0)
        torch.manual_seed(0)
        trainer.train_step(0)
        weights[rank] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_trainer_tells_self_training_the_steps_source_object_count(tiny_detection_domains, tmp_path):
    """What the target loss is divided by at least: the objects of the same step's source batch."""
    trainer = _masked_trainer(tiny_detection_domains, tmp_path / "count")
    trainer.step_module.train()
    trainer._apply_schedules(0)
    trainer.train_step(0)
    _, y_s, _ = trainer._batch(0)
    assert trainer.pseudo_label.source_objects == float(y_s["mask"].sum()) > 0
