"""The demo's run matrix: the baselines carry none of the target losses the DANN run opts into."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

from dann_ros.demo import (DEMO_CONFIG, DETECTION_CONFIG, DemoPaths, _export_and_eval, demo_configs, detection_base,
                           detection_configs, gap_closed)
from dann_ros.train.config import load_train_config
from test.evaluation.conftest import box_bag, labelled_bag, trained_detector_onnx  # noqa: F401 (fixtures)
from test.train.conftest import tiny_config, tiny_domains  # noqa: F401 (fixture)


def test_baselines_have_no_target_losses_and_dann_keeps_the_config_recipe(tmp_path):
    base = load_train_config(DEMO_CONFIG)
    runs = demo_configs(base, DemoPaths(tmp_path / "data", tmp_path / "runs"), seed=1, steps=None)
    so, dann, tt = runs["source_only"], runs["dann"], runs["train_on_target"]
    for cfg in (so, tt):
        a = cfg.adaptation
        assert a.method == "none" and a.target_losses.mcc_weight == 0 and a.target_losses.entropy_weight == 0
        assert a.self_training.weight == 0
        assert not a.uses_target
    assert dann.adaptation.method == "dann" and dann.adaptation.target_losses == base.adaptation.target_losses
    assert dann.adaptation.self_training.weight == base.adaptation.self_training.weight > 0
    assert tt.source.bag == tmp_path / "data" / "real_digits_train" and tt.source.replicator is None
    assert all(c.seed == 1 and c.train.steps == base.train.steps for c in runs.values())
    assert Path(dann.output_dir) == tmp_path / "runs" / "dann_seed1"


def test_detection_runs_include_the_train_on_target_upper_bound(tmp_path):
    base = load_train_config(DETECTION_CONFIG)
    runs = detection_configs(base, DemoPaths(tmp_path / "data", tmp_path / "runs"), seed=0, steps=None)
    assert set(runs) == {"det_source_only", "det_dann", "det_train_on_target"}
    tt = runs["det_train_on_target"]
    assert tt.source.replicator is None and tt.source.bag == tmp_path / "data" / "real_scenes_train"
    assert tt.adaptation.method == "none" and runs["det_dann"].adaptation.method == "dann"
    for cfg in (tt, runs["det_source_only"]):  # baselines: no adaptation and no self-training on target
        assert cfg.adaptation.self_training.weight == 0 and not cfg.adaptation.uses_target and not cfg.target.bags
    assert runs["det_dann"].adaptation.self_training.weight == base.adaptation.self_training.weight
    assert runs["det_dann"].adaptation.target_patches == base.adaptation.target_patches  # the recipe's clutter
    assert base.adaptation.target_patches.share == 1.0  # the demo recipe pastes target clutter into every render
    # the upper bound is scored on the same held-out scenes as the other two, never on its training bag
    assert {c.eval_target.bag for c in runs.values()} == {tmp_path / "data" / "real_scenes_test"}
    assert gap_closed(0.25, 0.5, 1.25) == 0.25 and gap_closed(0.5, 0.6, 0.5) is None


def test_long_detection_dann_self_trains_and_the_baselines_do_not(tmp_path):
    quick, long = detection_base(DETECTION_CONFIG, long=False), detection_base(DETECTION_CONFIG, long=True)
    assert quick.adaptation.self_training.weight == 0  # the quick schedule's teacher is too weak to label
    runs = detection_configs(long, DemoPaths(tmp_path / "data", tmp_path / "runs"), seed=0, steps=3000)
    st = runs["det_dann"].adaptation.self_training
    assert st.weight == 1.0 and st.mask == 0.5 and st.camera  # MIC + camera view
    assert st.threshold == 0.45  # chosen on real_scenes_dev (0.5: 2.6 points less; 0.4 labels too much)
    assert runs["det_dann"].adaptation.self_training.start * 3000 == 1500
    assert all(runs[n].adaptation.self_training.weight == 0 for n in ("det_source_only", "det_train_on_target"))


def test_detection_table_shows_the_stability_pick_next_to_the_oracle(capsys):
    from dann_ros.demo import _summary, print_detection_table, stability_pick

    history = [{"step": 150, "stability": 0.5, "target_map50": 0.10},
               {"step": 300, "stability": 0.7, "target_map50": 0.15},
               {"step": 450, "stability": 0.6, "target_map50": 0.20}]
    dann = {"onnx_target_map50": 0.2, "onnx_target_map": 0.08, "history": history, "oracle": history[2]}
    so = {"onnx_target_map50": 0.1, "onnx_target_map": 0.04, "history": [{"step": 150, "target_map50": 0.1}]}
    assert stability_pick(dann)["step"] == 300 and stability_pick(so) is None  # a run from before the score
    assert stability_pick({**dann, "selection_from_step": 400})["step"] == 450  # self-training's stage, as trained
    assert _summary(dann)["stability_target_map50"] == 0.15 and _summary(so)["stability_target_map50"] is None
    print_detection_table({0: {"det_source_only": so, "det_dann": dann}})
    row = capsys.readouterr().out.splitlines()[3].split()  # after a blank line, the title and the header
    assert row[:8] == ["0", "10.0%", "/", "4.0%", "20.0%", "/", "8.0%", "15.0%"] and row[8] == "20.0%"


def test_detection_data_adds_a_missing_dev_bag_beside_the_others_and_tuning_runs_score_on_it(tmp_path):
    """The demo writes real_scenes_dev with the other bags, rewrites only the bags that are missing
    (a dev bag added later leaves train/test untouched and comes out the same), and --detection-eval
    dev scores the three runs on it under their own names."""
    from dann_ros.demo import prepare_detection_data
    from test.demo_data.test_compose import _fake_digits, _fake_video

    digits, video = _fake_digits(tmp_path / "digits.png"), _fake_video(tmp_path / "v.avi", n=30, size=(160, 120))
    paths = DemoPaths(tmp_path / "data", tmp_path / "runs")
    scenes = {"n_frames": 16, "size": (160, 120), "dev_frames": 6}

    def prepare():
        prepare_detection_data(paths, digits, video, n_synth=4, workers=1, randomise=False, scenes=scenes)

    def state(bag: Path) -> dict[str, tuple[int, bytes]]:
        files = [*sorted(bag.iterdir()), Path(f"{bag}.labels.json")]
        return {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}

    prepare()
    bags = (paths.scenes_train_bag, paths.scenes_test_bag, paths.scenes_dev_bag)
    before = {b.name: state(b) for b in bags}
    prepare()  # nothing missing: nothing rewritten
    assert {b.name: state(b) for b in bags} == before
    shutil.rmtree(paths.scenes_dev_bag)
    prepare()
    after = {b.name: state(b) for b in bags}
    assert after["real_scenes_train"] == before["real_scenes_train"]
    assert after["real_scenes_test"] == before["real_scenes_test"]
    assert {k: v[1] for k, v in after["real_scenes_dev"].items()} == \
        {k: v[1] for k, v in before["real_scenes_dev"].items()}  # the same bytes, written again

    runs = detection_configs(load_train_config(DETECTION_CONFIG), paths, seed=0, steps=None, eval_on="dev")
    assert {c.eval_target.bag for c in runs.values()} == {paths.scenes_dev_bag}
    assert {c.eval_target.labels for c in runs.values()} == {Path(f"{paths.scenes_dev_bag}.labels.json")}
    assert {Path(c.output_dir).name for c in runs.values()} == {"det_source_only_dev", "det_dann_dev",
                                                                "det_train_on_target_dev"}


def test_holdout_eval_records_other_writers_on_the_test_frames_and_names_its_runs(tmp_path):
    """--detection-eval holdout: the demo records real_scenes_holdout beside the other bags (only then, and
    again when the test bag it paints on was recorded again) and scores the three runs on it."""
    from dann_ros.demo import prepare_detection_data
    from test.demo_data.test_compose import _fake_digits, _fake_video

    digits, video = _fake_digits(tmp_path / "digits.png"), _fake_video(tmp_path / "v.avi", n=30, size=(160, 120))
    paths = DemoPaths(tmp_path / "data", tmp_path / "runs")
    scenes = {"n_frames": 16, "size": (160, 120), "dev_frames": 6}
    prepare_detection_data(paths, digits, video, n_synth=4, workers=1, randomise=False, scenes=scenes)
    assert not paths.scenes_holdout_bag.exists()
    prepare_detection_data(paths, digits, video, n_synth=4, workers=1, randomise=False, scenes=scenes, holdout=True)
    labels = Path(f"{paths.scenes_holdout_bag}.labels.json")
    held = json.loads(labels.read_text())
    test = json.loads(Path(f"{paths.scenes_test_bag}.labels.json").read_text())
    assert [f["video_frame"] for f in held["source"]["frames"]] == [f["video_frame"] for f in test["source"]["frames"]]
    written = labels.stat().st_mtime_ns
    prepare_detection_data(paths, digits, video, n_synth=4, workers=1, randomise=False, scenes=scenes, holdout=True)
    assert labels.stat().st_mtime_ns == written  # there already: kept

    runs = detection_configs(load_train_config(DETECTION_CONFIG), paths, seed=1, steps=None, eval_on="holdout")
    assert {c.eval_target.bag for c in runs.values()} == {paths.scenes_holdout_bag}
    assert {c.eval_target.labels for c in runs.values()} == {labels}
    assert {Path(c.output_dir).name for c in runs.values()} == {
        "det_source_only_seed1_holdout", "det_dann_seed1_holdout", "det_train_on_target_seed1_holdout"}


def test_quick_steps_override_sets_the_evaluation_period(tmp_path):
    base = load_train_config(DEMO_CONFIG)
    runs = demo_configs(base, DemoPaths(tmp_path, tmp_path), seed=0, steps=40)
    assert all(c.train.steps == 40 and c.train.eval_every == 10 for c in runs.values())


def _run_folder(tmp_path: Path, onnx: Path, task: str, bag: dict) -> SimpleNamespace:
    """A finished run as the demo leaves it: model.onnx newer than model.pt, so no re-export."""
    out = tmp_path / task
    out.mkdir()
    (out / "model.pt").write_bytes(b"")
    shutil.copy(onnx, out / "model.onnx")
    os.utime(out / "model.onnx", (time.time() + 5, time.time() + 5))
    return SimpleNamespace(output_dir=out, task=task, eval_target=SimpleNamespace(bag=bag["bag"], labels=bag["labels"]))


def test_export_and_eval_scores_a_classifier_through_the_task_registry(tmp_path, tiny_onnx, labelled_bag):
    from dann_ros.evaluation.accuracy import evaluate_labelled_bag
    from dann_ros.runtime.predictor import Predictor

    cfg = _run_folder(tmp_path, tiny_onnx, "classification", labelled_bag)
    metrics = _export_and_eval(cfg, {})
    expected = evaluate_labelled_bag(Predictor.load(tiny_onnx, backend="onnxruntime"), labelled_bag["bag"],
                                     labelled_bag["labels"]).accuracy
    assert metrics == {"onnx_target_accuracy": expected}
    assert json.loads((cfg.output_dir / "metrics.json").read_text()) == metrics


def test_export_and_eval_scores_a_detector_through_the_task_registry(tmp_path, trained_detector_onnx, box_bag):
    from dann_ros.evaluation.average_precision import evaluate_detection_bag
    from dann_ros.runtime.predictor import Predictor

    cfg = _run_folder(tmp_path, trained_detector_onnx, "detection", box_bag)
    metrics = _export_and_eval(cfg, {})
    det = evaluate_detection_bag(Predictor.load(trained_detector_onnx, backend="onnxruntime"), box_bag["bag"],
                                 box_bag["labels"])
    assert metrics == {"onnx_target_map50": det.map50, "onnx_target_map": det.map}
    assert det.map50 > 0.5  # a detector that detects: the values compared are real


def test_renders_are_redone_when_the_simulator_format_or_configuration_changes(tmp_path):
    import dataclasses

    from dann_ros.demo_data.synth import SYNTH_FORMAT, Randomisation, SynthConfig
    from dann_ros.demo import _renders_outdated

    cfg = SynthConfig(n_frames=10, width=160, height=120, seed=0, randomisation=Randomisation())
    assert _renders_outdated(tmp_path, cfg)  # nothing rendered yet
    stamp = tmp_path / "synth_config.json"
    stamp.write_text(json.dumps({"format": SYNTH_FORMAT, "config": dataclasses.asdict(cfg)}, default=str))
    assert not _renders_outdated(tmp_path, cfg)
    assert _renders_outdated(tmp_path, dataclasses.replace(cfg, randomisation=None))  # randomisation switched off
    stamp.write_text(json.dumps({"format": SYNTH_FORMAT - 1, "config": dataclasses.asdict(cfg)}, default=str))
    assert _renders_outdated(tmp_path, cfg)  # boxes written by the older (exclusive-corner) simulator


# --------------------------------------------------------------------------- damaged done-markers
def test_damaged_synth_stamp_means_render_again(tmp_path, caplog):
    """A truncated (or foreign) synth_config.json says "not rendered", with a log line, never a crash."""
    import dataclasses

    from dann_ros.demo_data.synth import SYNTH_FORMAT, SynthConfig
    from dann_ros.demo import _renders_outdated

    cfg = SynthConfig(n_frames=10, width=64, height=64, seed=0)
    stamp = tmp_path / "synth_config.json"
    whole = json.dumps({"format": SYNTH_FORMAT, "config": dataclasses.asdict(cfg)}, default=str)
    stamp.write_text(whole)
    assert not _renders_outdated(tmp_path, cfg)
    for damaged in (whole[: len(whole) // 2], "", "[1, 2]", "\xff\xfe"):
        caplog.clear()
        stamp.write_bytes(damaged.encode("latin-1"))
        assert _renders_outdated(tmp_path, cfg)
        assert str(stamp) in caplog.text and "redoing" in caplog.text


def test_render_dataset_writes_its_stamp_whole(tmp_path):
    from dann_ros.demo_data.synth import SynthConfig, render_dataset
    from dann_ros.demo import _renders_outdated

    cfg = SynthConfig(n_frames=2, width=32, height=32, seed=0)
    render_dataset(tmp_path, cfg)
    assert not _renders_outdated(tmp_path, cfg)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_truncated_metrics_marker_trains_again_instead_of_crashing(tmp_path, tiny_domains, caplog):
    """metrics.json is _train_once's done-marker: cut short (and last.pt with it), the next `make demo`
    redoes the training with a log line instead of failing on it forever."""
    from dann_ros.demo import _train_once

    cfg = tiny_config(tiny_domains, tmp_path / "run", **{"train.steps": 2, "train.eval_every": 2,
                                                          "train.checkpoint_every": 2})
    first = _train_once(cfg)
    marker = tmp_path / "run" / "metrics.json"
    whole = marker.read_text()
    assert json.loads(whole)["config_digest"] == cfg.digest() == first["config_digest"]
    assert _train_once(cfg)["wall_seconds"] == first["wall_seconds"]  # an intact marker: nothing redone

    marker.write_text(whole[: len(whole) // 3])
    again = _train_once(cfg)  # resumes the finished run from last.pt: only the final selection is redone
    assert "metrics.json is unreadable" in caplog.text and again["selected"]["step"] == 2
    assert json.loads(marker.read_text())["config_digest"] == cfg.digest()

    caplog.clear()
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    marker.write_text(whole[:10])
    again = _train_once(cfg)  # the damaged last.pt cannot be resumed: trained from the start
    assert "last.pt" in caplog.text and "training from the start" in caplog.text
    assert again["selected"]["step"] == 2 and json.loads(marker.read_text())["config_digest"] == cfg.digest()
