"""dann-ros replay with dann_node in the loop: a bag with a paced part and a burst, so the report
has both latencies and drops; the node's answers must be the Predictor's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore

from dann_ros.data.bags import ROS2_STORE, iter_frames
from dann_ros.data.labels import FrameLabel, LabelFile, default_labels_path
from dann_ros.evaluation.result_bag import vision_typestore
from test.evaluation.conftest import CLASSES, digit_images

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built (scripts/build_vision_msgs.sh)")

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TS = get_typestore(ROS2_STORE)
PACED, BURST = 16, 24


def burst_bag(path: Path) -> Path:
    """PACED frames at 20 Hz, then BURST frames logged at the same instant (the node keeps only the
    newest frame, so most of the burst goes unanswered). Labels in <bag>.labels.json."""
    images, labels = digit_images(PACED + BURST, (96, 128), seed=5)
    t = TS.types
    t0 = 1_700_000_000_000_000_000
    stamps = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=TS)
        for i, image in enumerate(images):
            stamp = t0 + i * 33_000_000
            log_ns = t0 + min(i, PACED) * 50_000_000
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                                                      nanosec=stamp % 10**9),
                                              frame_id="camera")
            msg = t["sensor_msgs/msg/Image"](header=header, height=96, width=128, encoding="rgb8", is_bigendian=0,
                                             step=128 * 3, data=image.reshape(-1))
            writer.write(conn, log_ns, TS.serialize_cdr(msg, msg.__msgtype__))
            stamps.append(stamp)
    LabelFile("classification", "/camera/image_raw", CLASSES,
              tuple(FrameLabel(index=i, stamp_ns=s, label=lab) for i, (s, lab) in enumerate(zip(stamps, labels)))
              ).save(default_labels_path(path))
    return path


def cli(args: list[str], env: dict | None = None, timeout: float = 150) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "dann_ros.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def outputs_by_stamp(replay_bag: Path) -> dict[int, int]:
    with AnyReader([replay_bag], default_typestore=vision_typestore()) as reader:
        conns = [c for c in reader.connections if c.msgtype == "vision_msgs/msg/Classification"]
        out = {}
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            out[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = int(msg.results[0].class_id)
    return out


def predictions_by_stamp(model: Path, bag: Path) -> dict[int, int]:
    from dann_ros.runtime.predictor import Predictor

    predictor = Predictor.load(model, backend="onnxruntime", device="cpu")
    return {f.stamp_ns: predictor.predict(f.image).class_id for f in iter_frames(bag)}


def test_replay_starts_the_node_and_reports_latency_drops_and_accuracy(tiny_onnx, tmp_path):
    bag = burst_bag(tmp_path / "burst")
    out = tmp_path / "replay"
    proc = cli(["replay", "--bag", str(bag), "--model", str(tiny_onnx), "--out", str(out), "--rate", "2",
                "--grace", "1"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"replayed {PACED + BURST} frames" in proc.stdout and "latency ms: p50" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    f = report["frames"]
    assert f["published"] == PACED + BURST and f["answered"] + f["dropped"] == PACED + BURST
    assert f["answered"] >= PACED // 2 and f["dropped"] >= 1 and f["unmatched_outputs"] == 0
    lat = report["latency_ms"]
    assert lat["n"] == f["answered"] and 0 < lat["p50"] <= lat["p99"] < 5000
    cam = report["cameras"]["/camera/image_raw"]
    assert cam["output_topic"] == "/camera/classification" and sum(
        v is None or v != v for v in cam["series"]["latency_ms"]) == f["dropped"]
    assert report["classes"] == list(CLASSES)  # from the node's label_info
    # the node's answers are the Predictor's, frame by frame (matched by header stamp)
    answers = outputs_by_stamp(out / "replay_bag")
    expected = predictions_by_stamp(tiny_onnx, bag)
    assert len(answers) == f["answered"] and all(answers[s] == expected[s] for s in answers)
    labels = LabelFile.load(default_labels_path(bag))
    truth = {fl.stamp_ns: CLASSES.index(fl.label) for fl in labels.frames}
    acc = np.mean([answers[s] == truth[s] for s in answers])
    assert report["accuracy"] == pytest.approx(acc)
    assert report["scores"]["n"] == f["answered"]
    assert report["node_diagnostics"]["/camera/image_raw"]["frames published"] == str(f["answered"])
    figures = {"latency", "latency_over_time", "class_histogram", "confidence_histogram", "confusion_matrix",
               "precision_recall"}
    assert set(report["figures"]) == figures
    assert sum(report["figures"]["class_histogram"]["predicted"]) == f["answered"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(figures) and "frames dropped" in page
    from test.evaluation.test_check_report import check, need_chromium

    assert (out / "dann_node.log").read_text().count("active:") == 1
    need_chromium()  # a reported skip without a browser, after everything else was checked
    rendered = check(out / "report.html", tmp_path / "shot.png")
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr


def test_replay_into_a_running_node_on_remapped_topics(tiny_onnx, tmp_path):
    from dann_ros.ros.arguments import node_command
    from dann_ros.ros.env import isolated_ros_env

    bag = burst_bag(tmp_path / "burst")
    env = isolated_ros_env(fastdds_profile=True)
    log = open(tmp_path / "node.log", "wb")
    node = subprocess.Popen(node_command(tiny_onnx, namespace="/robot", parameters={"input_topics": ["cam/image"]}),
                            env=dict(env, OMP_NUM_THREADS="1"), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        out = tmp_path / "replay"
        proc = cli(["replay", "--bag", str(bag), "--out", str(out), "--input-topic", "/robot/cam/image",
                    "--output-topic", "/robot/cam/classification", "--no-labels", "--no-record",
                    "--max-duration", "0.5", "--start-timeout", "60", "--grace", "1"], env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "node.log").read_text()
        report = json.loads((out / "report.json").read_text())
        assert report["node"] == "already running" and report["accuracy"] is None
        assert report["stopped_early"] == "--max-duration 0.5 s reached"
        assert 5 <= report["frames"]["published"] <= PACED  # 0.5 s of the 20 Hz part
        assert report["frames"]["answered"] >= 1 and report["cameras"]["/camera/image_raw"]["input_topic"] == \
            "/robot/cam/image"
        assert node.poll() is None  # a node replay did not start is left running
    finally:
        node.terminate()
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()
        log.close()


def test_replay_without_a_node_times_out_clearly(tmp_path):
    from dann_ros.ros.env import isolated_ros_env

    bag = burst_bag(tmp_path / "burst")
    t = time.monotonic()
    proc = cli(["replay", "--bag", str(bag), "--out", str(tmp_path / "o"), "--start-timeout", "1.5", "--no-labels"],
               env=isolated_ros_env())
    assert proc.returncode == 2
    assert "no node on /camera/image_raw" in proc.stderr and "is dann_node running" in proc.stderr
    assert time.monotonic() - t < 60


def test_replay_of_a_trained_detector_scores_its_detections_like_eval_bag(trained_detector_onnx, box_bag, tmp_path):
    """The node publishes real detections; replay decodes them as Detection2DArray (not as
    Classification), scores them against the detection labels, and agrees with eval-bag."""
    from dann_ros.evaluation.eval_bag import evaluate_bag
    from dann_ros.runtime.predictor import Predictor

    out = tmp_path / "replay_det"
    proc = cli(["replay", "--bag", str(box_bag["bag"]), "--model", str(trained_detector_onnx), "--out", str(out),
                "--qos", "reliable", "--grace", "2", "--rate", "0.25"],
               timeout=300)  # about 35 s idle; the suite shares 2 cores with other ROS tests
    # a quarter of real time (frames 400 ms apart): the agreement with eval-bag below needs every frame
    # answered, and the newest-frame-wins node drops a frame whenever a loaded machine stalls it longer
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    f = report["frames"]
    assert f["published"] == box_bag["n"] and f["unmatched_outputs"] == 0
    assert f["dropped"] == 0, "frames 400 ms apart should all be answered"
    assert report["task"] == "detection" and "accuracy" not in report
    assert report["cameras"]["/camera/image_raw"]["output_topic"] == "/camera/detections"
    assert report["classes"] == ["red", "blue"] and report["outputs"] == {"detection_threshold": 0.3}
    # the node's detections, as recorded, are the Predictor's at the node's threshold
    predictor = Predictor.load(trained_detector_onnx, backend="onnxruntime", device="cpu")
    expected = {f_.stamp_ns: predictor.detect(f_.image, 0.3) for f_ in iter_frames(box_bag["bag"])}
    with AnyReader([out / "replay_bag"], default_typestore=vision_typestore()) as reader:
        conns = [c for c in reader.connections if c.msgtype == "vision_msgs/msg/Detection2DArray"]
        msgs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    assert len(msgs) == box_bag["n"]
    published = sum(len(m.detections) for m in msgs)
    assert published >= box_bag["n"]  # real detections, at least one a frame
    for m in msgs:
        dets = expected[m.header.stamp.sec * 10**9 + m.header.stamp.nanosec]
        assert [int(d.results[0].hypothesis.class_id) for d in m.detections] == [d.class_id for d in dets]
        for d, e in zip(m.detections, dets):
            assert d.bbox.size_x == pytest.approx(e.box[2] - e.box[0], abs=1e-3)
    # mAP of the answered frames, and eval-bag's on the same bag and threshold: the same number
    s = report["scores"]
    assert s["n"] == box_bag["n"] and s["threshold"] == 0.3 and s["n_detections"] == published
    assert report["map50"] == s["map50"] > 0.5 and report["metric"]["title"] == "mAP@0.5"
    offline = evaluate_bag(predictor, box_bag["bag"], out_dir=tmp_path / "eval", result_bag=False)
    assert offline.report["scores"]["map50"] == pytest.approx(s["map50"], abs=1e-6)
    assert offline.report["scores"]["map"] == pytest.approx(s["map"], abs=1e-6)
    assert "mAP@0.5" in proc.stdout and "labelled answered frames" in proc.stdout
    page = (out / "report.html").read_text()
    assert "Per-class AP@0.5" in report["figures"]["per_class_ap50"]["title"] and "<h2>mAP</h2>" in page
