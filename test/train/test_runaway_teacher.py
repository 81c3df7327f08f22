"""A detection teacher that labels its own mistakes: its pseudo-boxes per source object are recorded at each
evaluation, warned about above ``adaptation.self_training.max_box_ratio``, and such evaluations are not picked."""

from __future__ import annotations

import json
import logging

import pytest

from dann_ros.train.trainer import final_stage, runaway

KEY = "pseudo_boxes_per_source_object"


def test_selection_leaves_out_the_evaluations_where_the_teacher_ran_away():
    hist = [{"step": 1400}, {"step": 1600, KEY: 0.9}, {"step": 1800, KEY: 1.7}, {"step": 2000, KEY: 2.6},
            {"step": 2200, KEY: 4.4}, {"step": 3000, KEY: 24.0}]
    assert [h["step"] for h in final_stage(hist, 1500, 3.0)] == [1600, 1800, 2000]
    assert [h["step"] for h in final_stage(hist, 1500, 2.0)] == [1600, 1800]
    assert [h["step"] for h in final_stage(hist, 1500, 0.0)] == [1600, 1800, 2000, 2200, 3000]  # 0: off
    assert [h["step"] for h in final_stage(hist, 1500)] == [1600, 1800, 2000, 2200, 3000]
    assert [h["step"] for h in final_stage(hist, 2100, 3.0)] == [2200, 3000]  # all ran away: still a pick
    assert not runaway({"step": 5}, 3.0)  # no self-training: nothing to judge


def test_max_box_ratio_is_validated():
    from dann_ros.train.config import SelfTrainingConfig

    assert SelfTrainingConfig().max_box_ratio == 3.0
    with pytest.raises(ValueError, match="max_box_ratio"):
        SelfTrainingConfig(max_box_ratio=-1.0)


def test_a_run_records_the_ratio_warns_and_resumes_it(tiny_detection_domains, tmp_path, caplog):
    """Self-training from step 0 with a threshold every fresh peak passes (the heatmap's prior scores 0.1):
    the teacher labels 8 frames' worth of noise, far more boxes than the source holds."""
    from dann_ros.train.trainer import Trainer
    from test.train.conftest import tiny_detection_config

    overrides = {"adaptation.self_training.weight": 1.0, "adaptation.self_training.start": 0.0,
                 "adaptation.self_training.threshold": 0.05, "adaptation.self_training.max_box_ratio": 2.0,
                 "train.checkpoint_every": 2}  # evaluations at steps 3 and 6, resume states at 2 and 4
    cfg = tiny_detection_config(tiny_detection_domains, tmp_path / "run", **overrides)
    with caplog.at_level(logging.WARNING, logger="dann_ros.train.trainer"):
        result = Trainer(cfg, resume=False, show_progress=False).run()
    ratios = [h[KEY] for h in result["history"]]
    assert len(ratios) == 2 and all(r > 2.0 for r in ratios)
    assert "labelling its own mistakes" in caplog.text and "max_box_ratio 2" in caplog.text

    # killed after 5 steps, resumed from step 4: the same history (step 3's ratio, since the evaluation, was kept)
    again = tiny_detection_config(tiny_detection_domains, tmp_path / "again", **overrides)
    Trainer(again, resume=False, show_progress=False).run(stop_after=5)
    resumed = Trainer(again, resume=True, show_progress=False).run()
    assert [h[KEY] for h in resumed["history"]] == pytest.approx(ratios)
    written = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert written["history"][-1][KEY] == pytest.approx(ratios[-1])
