"""dann-ros eval-bag on real bags with a real ONNX model: accuracy parity with `eval`, the result
bag, the reports, and damaged inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore

from dann_ros.cli import main
from dann_ros.data.bags import ROS2_STORE
from dann_ros.data.labels import LabelFile
from dann_ros.evaluation.result_bag import vision_typestore
from dann_ros.ros import names
from dann_ros.ros.diagnostics import ERROR, WARN, DomainShiftMonitor, shift_level
from dann_ros.runtime.predictor import Predictor

FIGURES = {"class_histogram", "confidence_histogram", "confusion_matrix", "precision_recall", "domain_shift",
           "latency", "latency_over_time"}


@pytest.fixture(scope="module")
def evaluated(labelled_bag, tiny_onnx, tmp_path_factory):
    """One eval-bag run through the CLI (labels found next to the bag), and one `eval` run."""
    out = tmp_path_factory.mktemp("eval_bag") / "out"
    rc = main(["eval-bag", "--model", str(tiny_onnx), "--bag", str(labelled_bag["bag"]), "--out", str(out),
               "--batch", "16"])
    assert rc == 0
    eval_json = out.parent / "eval.json"
    assert main(["eval", "--model", str(tiny_onnx), "--bag", str(labelled_bag["bag"]), "--labels",
                 str(labelled_bag["labels"]), "--json", str(eval_json)]) == 0
    return {"out": out, "report": json.loads((out / "report.json").read_text()),
            "eval": json.loads(eval_json.read_text())}


def test_accuracy_equals_dann_ros_eval(evaluated, labelled_bag):
    report, ev = evaluated["report"], evaluated["eval"]
    assert report["labels"]["automatic"] and report["labels"]["matched"] == labelled_bag["n"]
    assert report["scores"]["n"] == ev["n"] == labelled_bag["n"]
    assert report["accuracy"] == pytest.approx(ev["accuracy"], abs=1e-12)
    for name, row in ev["per_class"].items():  # eval's per-class accuracy is eval-bag's recall
        assert report["scores"]["per_class"][name]["n"] == row["n"]
        if row["accuracy"] is not None:
            assert report["scores"]["per_class"][name]["recall"] == pytest.approx(row["accuracy"])
    cm = np.array(report["scores"]["confusion_matrix"])
    assert cm.sum() == labelled_bag["n"] and np.trace(cm) == round(report["accuracy"] * labelled_bag["n"])


def test_result_bag_holds_frames_and_classifications_with_matching_stamps(evaluated, labelled_bag):
    result = evaluated["out"] / "result_bag"
    assert next(result.glob("*.mcap"))
    with AnyReader([labelled_bag["bag"]], default_typestore=get_typestore(ROS2_STORE)) as reader:
        originals = [(t, bytes(raw)) for _, t, raw in reader.messages()]
    frames, outputs, label_info = [], [], []
    with AnyReader([result], default_typestore=vision_typestore()) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == {"/camera/image_raw": "sensor_msgs/msg/Image",
                          "/camera/classification": "vision_msgs/msg/Classification",
                          f"/camera/{names.LABEL_INFO}": "vision_msgs/msg/LabelInfo"}
        for conn, log_ns, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if conn.topic == "/camera/image_raw":
                frames.append((log_ns, stamp, bytes(raw)))
            elif conn.topic == "/camera/classification":
                outputs.append((log_ns, stamp, msg))
            else:
                label_info.append(msg)
    assert [(t, raw) for t, _, raw in frames] == originals  # copied byte for byte, same log times
    assert len(outputs) == len(frames) == labelled_bag["n"]
    assert [(t, s) for t, s, _ in outputs] == [(t, s) for t, s, _ in frames]
    assert all(m.header.frame_id == "camera" for _, _, m in outputs)
    first = outputs[0][2]
    assert len(first.results) == 5 and first.results[0].score >= first.results[-1].score  # node's top_k default
    assert [c.class_name for c in label_info[0].class_map] == [str(i) for i in range(10)]
    # the top hypothesis agrees with the report's predicted class counts
    top = [int(m.results[0].class_id) for _, _, m in outputs]
    counts = evaluated["report"]["predictions"]["class_counts"]
    assert {str(c): top.count(c) for c in range(10)} == counts


def test_reports_contain_the_figures(evaluated):
    out, report = evaluated["out"], evaluated["report"]
    assert FIGURES <= set(report["figures"])
    json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= len(FIGURES)
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    fig = report["figures"]
    assert sum(fig["class_histogram"]["predicted"]) == report["frames"]["evaluated"]
    assert len(fig["confusion_matrix"]["matrix"]) == 10
    conf = fig["confidence_histogram"]
    assert sum(conf["correct"]) + sum(conf["wrong"]) == report["scores"]["n"]
    lat = report["latency_ms"]
    assert lat["processing_per_frame"]["n"] == report["frames"]["evaluated"] and lat["decode"]["p50"] > 0
    assert report["frames"]["complete"] and report["frames"]["skipped"] == 0


def test_domain_shift_is_the_nodes_score(evaluated, labelled_bag, tiny_onnx):
    """The report's final score equals the node's monitor fed the same frames."""
    from dann_ros.data.bags import iter_frames

    ds = evaluated["report"]["domain_shift"]
    predictor = Predictor.load(tiny_onnx, backend="onnxruntime", device="cpu")
    monitor = DomainShiftMonitor(ds["window"], ds["reference"])
    levels = []
    for frame in iter_frames(labelled_bag["bag"]):
        monitor.add(predictor.predict(frame.image).domain_score)
        levels.append(shift_level(monitor.shift(), ds["warn"], ds["error"]))
    v = ds["topics"]["/camera/image_raw"]
    assert ds["monitor"] == "grl_discriminator" and "mean_feature_shift" not in v
    assert v["final"] == pytest.approx(monitor.shift(), abs=1e-5)
    assert v["frames_at_or_above_warn"] == sum(x >= WARN for x in levels)
    assert v["share_at_or_above_warn"] == pytest.approx(np.mean([x >= WARN for x in levels]))
    series = evaluated["report"]["figures"]["domain_shift"]["topics"]["/camera/image_raw"]
    assert series["shift"][-1] == pytest.approx(monitor.shift(), abs=1e-5)


# --------------------------------------------------------------------------- damaged inputs
TS = get_typestore(ROS2_STORE)


def _image(stamp: int, pixels: np.ndarray, encoding: str = "rgb8"):
    t = TS.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
                                      frame_id="cam")
    h, w = pixels.shape[:2]
    return t["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                                      step=w * 3, data=pixels.reshape(-1))


def damaged_bag(path: Path, n: int = 12, bad: tuple[int, ...] = (2,), truncate: float | None = 0.6) -> Path:
    """256x256 frames (about 6 per MCAP chunk); ``bad`` ones have an unknown encoding; the file is
    then cut at ``truncate`` of its size, as if the recorder had been killed."""
    rng = np.random.default_rng(0)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=TS)
        for i in range(n):
            stamp = 1_700_000_000_000_000_000 + i * 33_000_000
            msg = _image(stamp, rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), "weird8" if i in bad else "rgb8")
            writer.write(conn, stamp, TS.serialize_cdr(msg, msg.__msgtype__))
    if truncate is not None:
        mcap = next(path.glob("*.mcap"))
        os.truncate(mcap, int(mcap.stat().st_size * truncate))
    return path


def test_partly_readable_bag_is_evaluated_as_far_as_it_reads(tiny_onnx, tmp_path, capsys):
    bag = damaged_bag(tmp_path / "damaged")
    out = tmp_path / "out"
    assert main(["eval-bag", "--model", str(tiny_onnx), "--bag", str(bag), "--out", str(out), "--batch", "4"]) == 0
    printed = capsys.readouterr().out
    assert "5 frames" in printed and "WARNING: partly evaluated" in printed and "reading stopped after 6" in printed
    report = json.loads((out / "report.json").read_text())
    f = report["frames"]
    assert f["evaluated"] == 5 and f["skipped"] == 1 and not f["complete"]  # 6 readable, #2 undecodable
    assert "/cam/image_raw#2: unsupported encoding 'weird8'" in f["skipped_examples"][0]
    assert any("reading stopped after 6 messages" in e for e in f["read_errors"])
    assert report["bag"]["topics"]["/cam/image_raw"]["skipped"] == 1
    page = (out / "report.html").read_text()
    assert "Partly evaluated" in page and "weird8" in page and "reading stopped" in page
    with AnyReader([out / "result_bag"], default_typestore=vision_typestore()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/cam/image_raw"] == 6 and counts["/cam/classification"] == 5  # the bad frame copied, not classified


@pytest.mark.parametrize("kind", ["junk", "no_metadata", "empty_mcap"])
def test_unreadable_bags_are_errors_naming_the_bag(kind, tiny_onnx, tmp_path, capsys):
    if kind == "junk":
        bag = tmp_path / "junk.mcap"
        bag.write_bytes(b"not a bag at all" * 64)
    elif kind == "no_metadata":
        bag = tmp_path / "plain_dir"
        bag.mkdir()
    else:
        bag = tmp_path / "empty.mcap"
        bag.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 10)
    assert main(["eval-bag", "--model", str(tiny_onnx), "--bag", str(bag), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "dann-ros eval-bag: error:" in err and bag.name in err
    assert not (tmp_path / "o" / "result_bag").exists()


def test_missing_topic_lists_the_image_topics(labelled_bag, tiny_onnx, tmp_path, capsys):
    assert main(["eval-bag", "--model", str(tiny_onnx), "--bag", str(labelled_bag["bag"]), "--topic", "/nope/image",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "'/nope/image' is not in the bag" in err and "/camera/image_raw" in err


def _relabel(labelled_bag, tmp_path, **changes) -> Path:
    data = LabelFile.load(labelled_bag["labels"]).to_dict()
    data.update({k: v for k, v in changes.items() if k != "frames"})
    if "frames" in changes:
        data["frames"] = changes["frames"](data["frames"])
    path = tmp_path / "other.labels.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("change, message", [
    ({"frames": lambda fs: [{**f, "stamp_ns": f["stamp_ns"] + 5 * 10**9} for f in fs]},
     "none of the 90 frame stamps on /camera/image_raw"),
    ({"topic": "/other/image_raw"}, "labels are for topic '/other/image_raw'"),
    ({"classes": ["a", "b"], "frames": lambda fs: [{**f, "label": "a"} for f in fs]}, "none of the label classes"),
])
def test_label_file_that_does_not_match_is_an_error(change, message, labelled_bag, tiny_onnx, tmp_path, capsys):
    labels = _relabel(labelled_bag, tmp_path, **change)
    assert main(["eval-bag", "--model", str(tiny_onnx), "--bag", str(labelled_bag["bag"]), "--labels", str(labels),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "other.labels.json" in err


def test_existing_result_bag_needs_overwrite(labelled_bag, tiny_onnx, tmp_path, capsys):
    out = tmp_path / "o"
    (out / "result_bag").mkdir(parents=True)
    args = ["eval-bag", "--model", str(tiny_onnx), "--bag", str(labelled_bag["bag"]), "--out", str(out), "--no-labels"]
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--storage", "sqlite3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"] is None and report["labels"] is None
    assert next((out / "result_bag").glob("*.db3"))


def test_report_renders_in_chromium_without_console_errors(evaluated, tmp_path):
    from test.evaluation.test_check_report import check, need_chromium

    need_chromium()
    shot = tmp_path / "shot.png"
    proc = check(evaluated["out"] / "report.html", shot)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_without_domain_monitor_on_the_torch_backend(labelled_bag, tmp_path):
    """A .pt model runs too (torch backend); without the discriminator the report says 'no monitor'."""
    from test.conftest import make_classifier_checkpoint

    model = make_classifier_checkpoint(tmp_path / "plain.pt", with_domain=False)
    out = tmp_path / "out"
    assert main(["eval-bag", "--model", str(model), "--bag", str(labelled_bag["bag"]), "--out", str(out),
                 "--no-result-bag", "--backend", "torch"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["backend"].startswith("torch") and report["domain_shift"] is None
    assert "domain_shift" not in report["figures"] and report["scores"]["n"] == labelled_bag["n"]
    assert "no domain monitor output" in (out / "report.html").read_text()


def test_bag_folder_named_like_ros2_bag_record_names_it(tiny_onnx, tmp_path, capsys):
    """`ros2 bag record -o run1.bag` (and `dann-ros make-bag --out run1.bag`) make a rosbag2 folder
    called run1.bag: eval-bag and eval read it, the labels and the output folder sit next to it."""
    from dann_ros.data.make_bag import write_labelled_bag
    from test.evaluation.conftest import CLASSES, digit_images

    images, labels = digit_images(12, seed=4)
    bag = tmp_path / "run1.bag"
    label_path = write_labelled_bag(bag, images, labels, classes=CLASSES)
    assert bag.is_dir() and label_path == tmp_path / "run1.bag.labels.json"
    assert main(["eval-bag", "--model", str(tiny_onnx), "--bag", str(bag), "--no-result-bag"]) == 0
    report = json.loads((tmp_path / "run1.bag.eval" / "report.json").read_text())
    assert report["frames"]["evaluated"] == 12 and report["labels"]["automatic"] and report["scores"]["n"] == 12
    assert main(["eval", "--model", str(tiny_onnx), "--bag", str(bag), "--labels", str(label_path),
                 "--json", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == report["accuracy"]


def test_with_the_feature_monitor_the_domain_shift_block_is_its_score(tiny_monitored_detector_onnx, tmp_path, capsys):
    """A detector exported with the feature monitor: the block follows feature_shift (the node's monitor, reference 0)
    and rises when the bag turns dark; the GRL discriminator's score stays beside it."""
    from dann_ros.data.make_bag import make_bag
    from dann_ros.ros.diagnostics import CameraMonitor
    from test.conftest import monitor_scenes

    like = monitor_scenes(30, (3, 48, 64), 1).transpose(0, 2, 3, 1)
    dark = monitor_scenes(30, (3, 48, 64), 1, gain=0.25).transpose(0, 2, 3, 1)
    bag = tmp_path / "darkening.bag"
    make_bag(bag, list(like) + list(dark))
    out = tmp_path / "out"
    assert main(["eval-bag", "--model", str(tiny_monitored_detector_onnx), "--bag", str(bag), "--out", str(out),
                 "--no-result-bag", "--no-labels", "--domain-window", "10"]) == 0
    report = json.loads((out / "report.json").read_text())
    ds = report["domain_shift"]
    assert ds["monitor"] == "feature_shift" and ds["reference"] == 0.0 and ds["grl_reference"] == 0.5
    v = ds["topics"]["/camera/image_raw"]
    shift = np.array(report["figures"]["domain_shift"]["topics"]["/camera/image_raw"]["shift"])
    assert len(shift) == 60
    assert shift[9:30].max() < 0.3 and v["final"] > 0.5 and v["max"] >= v["final"]  # like frames OK, dark WARN+
    assert 20 <= v["frames_at_or_above_warn"] <= 31
    assert 0.0 <= v["grl_mean"] <= 1.0 and 0.0 <= v["mean_domain_score"] <= 1.0

    predictor = Predictor.load(tiny_monitored_detector_onnx, backend="onnxruntime")
    monitor = CameraMonitor.for_model(predictor.info, 10, 0.5)
    per_frame, levels, grl_levels = [], [], []
    for image in list(like) + list(dark):  # the node's monitor and levels, fed the same frames
        r = predictor.detect(image)
        monitor.add(r.domain_score, r.shift_score)
        per_frame.append(r.shift_score)
        levels.append(shift_level(monitor.shift(), ds["warn"], ds["error"]))
        grl_levels.append(shift_level(monitor.grl.shift(), ds["warn"], ds["error"]))
    assert v["final"] == pytest.approx(monitor.shift(), abs=1e-5)
    assert v["grl_final"] == pytest.approx(monitor.grl.shift(), abs=1e-5)
    assert v["mean_feature_shift"] == pytest.approx(np.mean(per_frame), abs=1e-5)
    assert v["frames_at_or_above_warn"] == sum(x >= WARN for x in levels)
    assert v["frames_at_or_above_error"] == sum(x >= ERROR for x in levels)
    share = v["frames_at_or_above_warn"] / 60
    assert v["share_at_or_above_warn"] == pytest.approx(share) and 0.3 <= share <= 0.55  # the dark half, after 10
    assert v["grl_share_at_or_above_warn"] == pytest.approx(np.mean([x >= WARN for x in grl_levels]))
    printed = capsys.readouterr().out
    assert "(feature_shift)" in printed and f"{100 * share:.1f}% of frames >= warn 0.3" in printed
    assert f"feature_shift per frame {v['mean_feature_shift']:.3f}" in printed
    page = (out / "report.html").read_text()
    assert "Monitor: feature_shift" in page and "GRL discriminator" in page
    assert "share &gt;= warn" in page or "share >= warn" in page
