"""dann-ros report on tiny real training runs (DANN next to source-only)."""

from __future__ import annotations

import json
import shutil

import pytest

from dann_ros.cli import main
from dann_ros.evaluation.training_report import build_report
from dann_ros.train.trainer import train
from test.train.conftest import (tiny_config, tiny_detection_config, tiny_detection_domains,  # noqa: F401
                                 tiny_domains)  # (fixtures)

STEPS = {"train.steps": 8, "train.eval_every": 4}


def test_report_of_dann_next_to_source_only(tiny_domains, tmp_path, capsys):  # noqa: F811
    """One test, so the two training runs happen once even when pytest-xdist spreads tests."""
    train(tiny_config(tiny_domains, tmp_path / "dann", **STEPS), show_progress=False)
    train(tiny_config(tiny_domains, tmp_path / "source_only", **STEPS, **{"adaptation.method": "none"}),
          show_progress=False)
    runs = {"dann": tmp_path / "dann", "source_only": tmp_path / "source_only"}
    capsys.readouterr()
    assert main(["report", "--run", str(runs["dann"]), "--compare", str(runs["source_only"]), "--points", "60"]) == 0
    out_text = capsys.readouterr().out
    assert "dann (dann): eval-target accuracy" in out_text and "source_only (none)" in out_text
    out = runs["dann"] / "report"
    report = json.loads((out / "report.json").read_text())
    figs = report["figures"]
    for name in ("task_loss", "domain_loss", "discriminator_accuracy", "lambda", "lr", "accuracy", "im", "snd",
                 "tsne", "confusion_matrix"):
        assert name in figs, name
        assert (out / f"{name}.png").stat().st_size > 1000
    # curves: both runs where both logged the tag, only DANN for the domain loss
    assert set(figs["task_loss"]["runs"]) == {"dann (dann)", "source_only (none)"}
    assert set(figs["domain_loss"]["runs"]) == {"dann (dann)"}
    assert figs["accuracy"]["runs"]["dann (dann)"]["target_accuracy"]["step"] == [4, 8]
    # t-SNE: at most 60 points per domain and run, 2-D
    for emb in figs["tsne"]["runs"].values():
        assert 0 < len(emb["source"]) <= 60 and 0 < len(emb["target"]) <= 60 and len(emb["source"][0]) == 2
    # PAD for both runs: recomputed on the report's own features, and copied from metrics.json
    from dann_ros.evaluation.training_report import load_run, run_features
    from dann_ros.train.metrics import proxy_a_distance

    for r, folder in zip(report["runs"], (runs["dann"], runs["source_only"])):
        feats = run_features(load_run(folder), 60, 0)
        assert r["proxy_a_distance"]["recomputed"] == proxy_a_distance(feats.source, feats.target, 0)
        saved = json.loads((folder / "metrics.json").read_text()).get("proxy_a_distance")
        assert r["proxy_a_distance"]["metrics_json"] == saved
        assert r["eval_target"]["n"] == 160  # the labelled eval target of tiny_domains
        assert r["proxy_a_distance"]["objects"] is None and feats.source_objects is None  # a classifier has none
    assert isinstance(report["runs"][0]["proxy_a_distance"]["metrics_json"], float)  # the DANN run computed one
    cm = figs["confusion_matrix"]["runs"]["dann (dann)"]
    assert sum(map(sum, cm["matrix"])) == 160
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(figs) and "<script" not in page

    # an unfinished run (no model.pt) still gets its curves, and a note instead of the feature plots
    run = tmp_path / "unfinished"
    shutil.copytree(runs["source_only"], run)
    (run / "model.pt").unlink()
    report = build_report(run, out_dir=tmp_path / "r", points=30)
    assert "task_loss" in report["figures"] and "tsne" not in report["figures"]
    assert any("model.pt not found" in n for n in report["notes"])
    assert "model.pt not found" in (tmp_path / "r" / "report.html").read_text()

    # the page renders in headless Chromium without console errors (a reported skip without a browser)
    from test.evaluation.test_check_report import check, need_chromium

    need_chromium()
    proc = check(out / "report.html", tmp_path / "shot.png")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_report_on_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path)]) == 2
    assert "not a dann-ros training run" in capsys.readouterr().err
    assert main(["report", "--run", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_report_of_a_detection_run(tiny_detection_domains, tmp_path, capsys):  # noqa: F811
    dann = train(tiny_detection_config(tiny_detection_domains, tmp_path / "det_dann"), show_progress=False)
    source_only = train(tiny_detection_config(tiny_detection_domains, tmp_path / "det_so",
                                              **{"adaptation.method": "none"}), show_progress=False)
    assert dann["task"] == source_only["task"] == "detection"
    assert main(["report", "--run", str(tmp_path / "det_dann"), "--compare", str(tmp_path / "det_so"),
                 "--points", "20"]) == 0
    out_text = capsys.readouterr().out
    assert "eval-target mAP@0.5" in out_text and "at the labelled objects" in out_text
    report = json.loads((tmp_path / "det_dann" / "report" / "report.json").read_text())
    # the PAD at the objects: features at the labelled boxes' centre cells, source boxes vs the eval target's
    from dann_ros.evaluation.training_report import load_run, run_features
    from dann_ros.train.metrics import proxy_a_distance

    for r, folder in zip(report["runs"], (tmp_path / "det_dann", tmp_path / "det_so")):
        feats = run_features(load_run(folder), 20, 0)
        assert feats.source_objects.shape[1] == feats.target_objects.shape[1] == feats.source.shape[1]
        assert len(feats.source_objects) >= 20 and len(feats.target_objects) >= 20  # 1+ box a frame
        splits = [proxy_a_distance(feats.source_objects, feats.target_objects, k) for k in range(8)]
        assert r["proxy_a_distance"]["objects"] == pytest.approx(sum(splits) / 8)  # the mean of 8 halvings
        assert 0.0 <= r["proxy_a_distance"]["objects"] <= 2.0
    assert "map50" in report["figures"] and "tsne" in report["figures"]
    assert "stability" in report["figures"]  # detection's label-free selection score, per evaluation
    assert "mAP@0.5" in (tmp_path / "det_dann" / "report" / "report.html").read_text()
