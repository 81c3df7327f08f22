"""The node's parts without DDS traffic: env, arguments, parameters, topics, frame hand-off,
CDR views, messages, diagnostics, the DDS profile and the launch file."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml

from dann_ros.paths import PACKAGE_ROOT
from dann_ros.ros import env as ros_env
from dann_ros.ros.arguments import default_params_file, node_arguments
from dann_ros.ros.diagnostics import (ERROR, GRL, OK, WARN, CameraMonitor, CameraStats, DomainShiftMonitor,
                                     camera_status)
from dann_ros.ros.frames import LatestFrames
from dann_ros.ros.params import PARAMETERS, NodeParams, ParameterError
from dann_ros.ros.topics import camera_topics

ROOT = PACKAGE_ROOT


# ---------------------------------------------------------------- env
def test_isolated_env_claims_distinct_domains_and_keeps_the_library_path():
    a, b = ros_env.isolated_ros_env(), ros_env.isolated_ros_env()
    try:
        assert a["ROS_DOMAIN_ID"] != b["ROS_DOMAIN_ID"]
        for e in (a, b):
            assert 1 <= int(e["ROS_DOMAIN_ID"]) <= 101
            assert e["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
            assert e.get("LD_LIBRARY_PATH") == os.environ.get("LD_LIBRARY_PATH")
            assert "FASTDDS_DEFAULT_PROFILES_FILE" not in e
    finally:
        ros_env.release_domain_id(int(a["ROS_DOMAIN_ID"]))
        ros_env.release_domain_id(int(b["ROS_DOMAIN_ID"]))


def test_a_claimed_domain_is_not_handed_to_another_process():
    mine = ros_env.claim_domain_id()
    try:
        code = ("import fcntl, os, sys; from dann_ros.ros import env; "
                f"fd = os.open(env.domain_lock_path({mine}), os.O_RDWR)\n"
                "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
                "except BlockingIOError:\n    print('held')\n"
                f"print(env.claim_domain_id() != {mine})")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                             env=ros_env.isolated_ros_env(domain_id=0))
        assert out.stdout.split() == ["held", "True"]
    finally:
        ros_env.release_domain_id(mine)


def test_a_process_with_its_own_tmpdir_claims_from_the_same_locks(tmp_path):
    """A benchmark run with a private TMPDIR (test_node_benchmark.py) holds its id machine-wide."""
    code = ("import sys; from dann_ros.ros import env; d = env.claim_domain_id(); "
            "print(d, env.domain_lock_path(d), flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, env=dict(ros_env.isolated_ros_env(domain_id=0), TMPDIR=str(tmp_path)))
    try:
        held, path = child.stdout.readline().split()
        assert path == str(ros_env.domain_lock_path(int(held))), "the lock sits where this process never looks"
        fd = os.open(ros_env.domain_lock_path(int(held)), os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        child.communicate("")


def test_isolated_env_profile_and_explicit_domain():
    e = ros_env.isolated_ros_env(domain_id=42, fastdds_profile=True)
    assert e["ROS_DOMAIN_ID"] == "42"
    assert e["FASTDDS_DEFAULT_PROFILES_FILE"] == str((ROOT / "config" / "fastdds_shm.xml").resolve())
    with pytest.raises(ValueError, match="outside"):
        ros_env.isolated_ros_env(domain_id=300)
    base = {"_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1", "FASTDDS_DEFAULT_PROFILES_FILE": "/elsewhere.xml"}
    e = ros_env.isolated_ros_env(domain_id=7, base=base)
    assert "_ROS_WHEELS_BOOTSTRAP_COMPLETE" not in e  # no LD_LIBRARY_PATH: the child must bootstrap again
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in e


def test_fastdds_profile_has_a_16mb_shm_segment_and_loopback_udp():
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(ROOT / "config" / "fastdds_shm.xml").getroot()
    descriptors = {d.findtext("d:transport_id", namespaces=ns): d
                   for d in root.iterfind("d:profiles/d:transport_descriptors/d:transport_descriptor", ns)}
    kinds = {tid: d.findtext("d:type", namespaces=ns) for tid, d in descriptors.items()}
    assert sorted(kinds.values()) == ["SHM", "UDPv4"]
    shm = next(d for d in descriptors.values() if d.findtext("d:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("d:segment_size", namespaces=ns)) == 16 * 1024 * 1024
    udp = next(d for d in descriptors.values() if d.findtext("d:type", namespaces=ns) == "UDPv4")
    assert [i.get("name") for i in udp.iterfind("d:interfaces/d:allowlist/d:interface", ns)] == ["127.0.0.1"]
    participant = root.find("d:profiles/d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    assert participant.findtext("d:rtps/d:useBuiltinTransports", namespaces=ns) == "false"
    assert [t.text for t in participant.iterfind("d:rtps/d:userTransports/d:transport_id", ns)] == list(descriptors)


# ---------------------------------------------------------------- arguments and parameters
def test_node_arguments_are_a_ros_command_line():
    args = node_arguments("/m/model.onnx", namespace="front", image="/camera/image_raw",
                          parameters={"compressed": True, "input_topics": ["a/image", "b/image"], "qos_depth": 2})
    assert args[0] == "--ros-args"
    assert args[args.index("--params-file") + 1] == str(default_params_file())
    pairs = [args[i + 1] for i, a in enumerate(args) if a in ("-p", "-r")]
    assert "model_path:='/m/model.onnx'" in pairs
    assert "compressed:=true" in pairs and "input_topics:=['a/image','b/image']" in pairs and "qos_depth:=2" in pairs
    assert "__ns:=/front" in pairs and "image:=/camera/image_raw" in pairs and "__node:=dann_node" in pairs
    assert node_arguments() == ["--ros-args", "-r", "__node:=dann_node", "--params-file", str(default_params_file())]


def test_yaml_documents_every_parameter_with_its_default():
    text = default_params_file().read_text()
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    assert set(values) == set(PARAMETERS)
    for name, (default, _) in PARAMETERS.items():
        assert values[name] == default, name
        assert type(values[name]) is type(default), f"{name}: YAML type differs from the declared type"
    lines = text.splitlines()
    for i, line in enumerate(lines):  # each parameter sits under a comment (alone or in a commented group)
        if line.strip().split(":")[0] in PARAMETERS:
            above = [text.strip() for text in lines[max(0, i - 3):i]]
            assert any(text.startswith("#") for text in above), f"parameter line {line.strip()!r} has no comment"


@pytest.mark.parametrize("change, name", [
    ({"model_path": ""}, "model_path"), ({"backend": "tflite"}, "backend"), ({"input_topics": []}, "input_topics"),
    ({"input_topics": ["a", "a"]}, "input_topics"), ({"qos_reliability": "sometimes"}, "qos_reliability"),
    ({"qos_depth": 0}, "qos_depth"), ({"domain_shift_warn": 0.9}, "domain_shift_warn"),
    ({"diagnostics_period": 0.0}, "diagnostics_period"), ({"device": "tpu"}, "device"),
    ({"input_timeout": -1.0}, "input_timeout"), ({"inference_timeout": 0.0}, "inference_timeout"),
])
def test_bad_parameters_name_the_parameter(change, name):
    values = {"model_path": "m.onnx", **change}
    with pytest.raises(ParameterError, match=f"parameter '{name}'"):
        NodeParams.from_values(values)


def test_camera_outputs_go_next_to_their_inputs():
    def layout(topics, compressed=False):
        return [(c.input, c.output("classification")) for c in camera_topics(topics, compressed)]

    assert layout(["image"]) == [("image", "classification")]
    assert layout(["cam_left/image", "cam_right/image"]) == [
        ("cam_left/image", "cam_left/classification"), ("cam_right/image", "cam_right/classification")]
    assert layout(["/robot/front/image_raw"]) == [("/robot/front/image_raw", "/robot/front/classification")]
    assert layout(["/image"]) == [("/image", "/classification")]
    assert layout(["cam/image/compressed"], compressed=True) == [("cam/image/compressed", "cam/classification")]
    with pytest.raises(ValueError, match="same topics"):
        camera_topics(["left", "right"])


# ---------------------------------------------------------------- frame hand-off
def test_latest_frame_wins_and_overwrites_count_as_drops():
    frames = LatestFrames(2)
    assert frames.put(0, "a") is False
    assert frames.put(0, "b") is True  # 'a' was never processed
    assert frames.put(1, "x") is False
    got = frames.take(timeout=0)
    assert [(f.camera, f.msg) for f in got] == [(0, "b"), (1, "x")]
    assert frames.take(timeout=0.01) == []
    assert frames.put(0, "c") is False  # the slot was emptied by take
    frames.close()
    assert frames.take(timeout=1) is None


# ---------------------------------------------------------------- CDR views
def _image(frame_id: str, encoding: str, height: int, width: int, step: int, data: bytes, bigendian: int = 0):
    from sensor_msgs.msg import Image

    msg = Image(height=height, width=width, encoding=encoding, step=step, data=data, is_bigendian=bigendian)
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = -5, 999_999_999, frame_id
    return msg


@pytest.mark.parametrize("frame_id", ["", "c", "cam", "camera", "camera_optical_frame"])
@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "bayer_rggb8"])
def test_cdr_image_view_matches_rclpy(frame_id, encoding):
    from rclpy.serialization import serialize_message

    from dann_ros.ros.cdr import image_view

    data = bytes(range(256)) * 3
    msg = _image(frame_id, encoding, 3, 5, 256, data[:768], bigendian=1 if encoding == "mono16" else 0)
    v = image_view(serialize_message(msg))
    assert v.header == msg.header
    assert (v.height, v.width, v.encoding, v.is_bigendian, v.step) == (3, 5, encoding, msg.is_bigendian, 256)
    assert bytes(v.data) == data[:768]


def test_cdr_compressed_view_matches_rclpy():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage

    from dann_ros.ros.cdr import compressed_image_view

    msg = CompressedImage(format="jpeg", data=b"\xff\xd8abc")
    msg.header.frame_id = "cam1"
    v = compressed_image_view(serialize_message(msg))
    assert (v.header, v.format, bytes(v.data)) == (msg.header, "jpeg", b"\xff\xd8abc")


def test_cdr_view_rejects_what_it_cannot_read():
    from rclpy.serialization import serialize_message

    from dann_ros.ros.cdr import CdrError, image_view

    good = serialize_message(_image("cam", "rgb8", 2, 2, 6, bytes(12)))
    for bad in (b"", b"\x00\x03\x00\x00" + good[4:], good[:30]):
        with pytest.raises(CdrError):
            image_view(bad)


def test_decoding_a_view_equals_decoding_the_message():
    from rclpy.serialization import serialize_message

    from dann_ros.data.images import message_to_rgb8, rgb8_to_image_fields
    from dann_ros.ros.cdr import image_view

    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    for encoding in ("rgb8", "bgra8", "mono16"):
        h, w, enc, step, data = rgb8_to_image_fields(rgb, encoding)
        msg = _image("x", enc, h, w, step, data)
        np.testing.assert_array_equal(message_to_rgb8(image_view(serialize_message(msg))), message_to_rgb8(msg))


# ---------------------------------------------------------------- messages
def test_classification_message_is_top_k_best_first_with_index_ids():
    from std_msgs.msg import Header

    from dann_ros.ros.outputs import ClassificationOutput, label_info_message
    from dann_ros.runtime.results import Classification

    scores = np.array([0.1, 0.5, 0.05, 0.3, 0.05], dtype=np.float32)
    result = Classification(1, "b", 0.5, scores, 0.4)
    header = Header(frame_id="cam")
    msg = ClassificationOutput("abcde", top_k=3).to_message(result, header)
    assert msg.header.frame_id == "cam"
    assert [(h.class_id, round(h.score, 3)) for h in msg.results] == [("1", 0.5), ("3", 0.3), ("0", 0.1)]
    assert len(ClassificationOutput("abcde", top_k=0).to_message(result, header).results) == 5
    assert [h.class_id for h in ClassificationOutput("abcde", top_k=1).to_message(result, header).results] == ["1"]
    info = label_info_message(("cat", "dog"))
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, "cat"), (1, "dog")]


def test_detection_output_message():
    from std_msgs.msg import Header

    from dann_ros.data.preprocess import Preprocess
    from dann_ros.export.metadata import ModelInfo
    from dann_ros.ros.outputs import DetectionOutput, handler_for
    from dann_ros.runtime.results import Detection, Detections

    handler = handler_for(ModelInfo("detection", ("car", "bike"), Preprocess(), "d", "0"), detection_threshold=0.4)
    assert isinstance(handler, DetectionOutput) and handler.topic == "detections" and handler.threshold == 0.4
    result = Detections((Detection((10.0, 20.0, 30.0, 60.0), 1, "bike", 0.9),), domain_score=0.5)
    msg = handler.to_message(result, Header(frame_id="cam"))
    assert msg.header.frame_id == "cam" and len(msg.detections) == 1
    det = msg.detections[0]
    assert det.header.frame_id == "cam"
    assert (det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.size_x, det.bbox.size_y) == \
        (20.0, 40.0, 20.0, 40.0)
    assert det.results[0].hypothesis.class_id == "1" and det.results[0].hypothesis.score == pytest.approx(0.9)
    image = np.full((80, 60, 3), 128, np.uint8)
    handler.draw(image, result, None)
    assert (image != 128).any()


def test_overlay_draws_into_the_frame():
    from std_msgs.msg import Header

    from dann_ros.ros.outputs import ClassificationOutput
    from dann_ros.ros.overlay import image_message
    from dann_ros.runtime.results import Classification

    image = np.full((48, 64, 3), 200, np.uint8)
    drawn = ClassificationOutput("ab").draw(image, Classification(0, "a", 0.9, np.array([0.9, 0.1]), 0.5), None)
    assert drawn.shape == (48, 64, 3) and (drawn != 200).any()
    msg = image_message(drawn, Header(frame_id="cam"))
    assert (msg.height, msg.width, msg.encoding, msg.step, msg.header.frame_id) == (48, 64, "rgb8", 192, "cam")


# ---------------------------------------------------------------- diagnostics
def test_domain_shift_is_the_mean_absolute_distance_to_the_reference():
    m = DomainShiftMonitor(window=4, reference=0.5)
    assert m.shift() is None
    for s in (0.5, 0.5, 1.0, 0.0):
        m.add(s)
    assert m.shift() == pytest.approx(0.5)  # (0 + 0 + 0.5 + 0.5) / 4 / 0.5: opposite drifts do not cancel
    assert m.mean_domain_score() == pytest.approx(0.5)
    for _ in range(4):
        m.add(0.9)  # the window forgets the old frames
    assert m.shift() == pytest.approx(0.8)
    asym = DomainShiftMonitor(window=2, reference=0.8)
    asym.add(0.0)
    assert asym.shift() == pytest.approx(1.0)  # normalised by the largest possible distance


def test_the_feature_monitor_sets_the_level_and_the_discriminator_is_the_second_value():
    from types import SimpleNamespace

    def info(domain, feature):
        return SimpleNamespace(has_domain=domain, has_feature_monitor=feature)

    assert CameraMonitor.for_model(info(False, False), 10, 0.5) is None
    assert CameraMonitor.for_model(info(True, False), 10, 0.5).kind == "grl_discriminator"
    m = CameraMonitor.for_model(info(True, True), 4, 0.5)
    assert m.kind == "feature_shift" and m.primary.reference == 0.0
    for shift, domain in ((0.9, 0.5), (0.7, 0.5), (0.8, 0.5), (0.6, 1.0)):
        m.add(domain, shift)
    stats = CameraStats()
    stats.received(dropped=False)
    level, message, values = camera_status(stats.snapshot(), 1.0, m, warn=0.3, error=0.8)
    v = dict(values)
    assert v["domain monitor"] == "feature_shift" and v["domain shift"] == "0.750"  # mean of the feature shift
    assert v["grl domain shift"] == "0.250" and v["domain score mean"] == "0.625"  # (0+0+0+1)/4, discriminator's
    assert level == WARN and message == "domain shift 0.75 >= 0.3 (feature_shift)"
    m.add(None, None)  # a frame without outputs (e.g. a model output missing) is not counted
    assert len(m) == 4
    alone = CameraMonitor.for_model(info(False, True), 4, 0.5)  # a feature monitor without discriminator
    alone.add(None, 0.1)
    v = dict(alone.values(0.3, 0.6))
    assert v["domain shift"] == "0.100" and v["grl domain shift"] == "no discriminator" and "domain score mean" not in v


def test_camera_status_levels():
    stats = CameraStats()
    for _ in range(10):
        stats.received(dropped=False)
        stats.published(2.0, 3.0)
    stats.received(dropped=True)

    def status(shift_scores, monitor=True):
        m = None
        if monitor:
            m = CameraMonitor(GRL, 10, 0.5, has_domain=True)
            for s in shift_scores:
                m.add(s, None)
        return camera_status(stats.snapshot(), 1.0, m, warn=0.3, error=0.6)

    level, message, values = status([0.5])
    v = dict(values)
    assert level == OK and message == "ok"
    assert v["input rate (Hz)"] == "11.00" and v["drops"] == "1" and v["latency p50 (ms)"] == "2.00"
    assert status([0.7])[0] == WARN and status([0.9])[0] == ERROR  # shifts 0.4 and 0.8
    assert dict(status([], monitor=False)[2])["domain shift"] == "no monitor"
    stats.decode_error("unsupported encoding 'x'")
    level, message, values = status([0.5])
    assert level == WARN and "1 undecodable" in message and dict(values)["decode errors"] == "1"


def test_a_nan_shift_score_and_a_silent_camera_warn():
    stats = CameraStats()
    stats.received(dropped=False)
    m = CameraMonitor(GRL, 10, 0.5, has_domain=True)
    for score in (0.5, float("nan"), 0.5):
        m.add(score, None)
    level, message, values = camera_status(stats.snapshot(), 1.0, m, warn=0.3, error=0.6)
    assert level == WARN and message == ("domain shift score is NaN (grl_discriminator: the model's output was "
                                         "not finite on 1 of the last 3 frames)"), message
    assert dict(values)["domain shift"] == "nan"
    quiet = CameraMonitor(GRL, 10, 0.5, has_domain=True)
    quiet.add(0.5, None)
    assert camera_status(stats.snapshot(), 1.0, quiet, 0.3, 0.6, silent_s=4.9, input_timeout=5.0)[0] == OK
    level, message, values = camera_status(stats.snapshot(), 1.0, quiet, 0.3, 0.6, silent_s=5.2, input_timeout=5.0)
    assert level == WARN and message == "no frame for 5.2 s (input_timeout 5 s)"
    assert dict(values)["seconds since last frame"] == "5.2"
    assert camera_status(stats.snapshot(), 1.0, quiet, 0.3, 0.6, silent_s=60.0, input_timeout=0.0)[0] == OK
