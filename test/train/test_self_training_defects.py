"""Issue 21's self-training defects on the trainer's side: which checkpoints selection may pick, and the
second view's random draws per (seed, step, rank)."""

from __future__ import annotations

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
