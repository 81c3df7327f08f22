"""dann_node with two raw cameras (autostart, parameters from config/dann_ros.yaml): one node
process for the module, each test on its own topics."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import GetParameters
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification, LabelInfo

from dann_ros.ros import names
from dann_ros.ros.arguments import default_params_file
from dann_ros.ros.qos import LABEL_INFO_QOS
from ros_helpers import diagnostic_values, image_msg, rgb_frame, stream_until, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = "/stream"
NODE = f"{NS}/dann_node"
CAMERAS = ["cam_left/image", "cam_right/image"]
OVERRIDES = {"input_topics": CAMERAS, "diagnostics_period": 0.5}


@pytest.fixture(scope="module")
def node(start_node, tiny_onnx):
    proc = start_node(tiny_onnx, namespace=NS, parameters=OVERRIDES)
    proc.wait_log(r"\]: active: ")
    return proc


@pytest.fixture(scope="module")
def predictor(tiny_onnx):
    from dann_ros.runtime.predictor import Predictor

    return Predictor.load(tiny_onnx, "onnxruntime")


@pytest.fixture(scope="module")
def diagnostics(ros, node):
    return ros.subscribe(DiagnosticArray, names.DIAGNOSTICS, 50)


def camera_publisher(ros, camera: str):
    pub = ros.publisher(Image, f"{NS}/{camera}/image", qos_profile_sensor_data)
    wait_for(lambda: pub.get_subscription_count() > 0, what=f"dann_node subscribing {camera}/image")
    return pub


def camera_status(diagnostics, camera: str, predicate=lambda v: True):
    """Newest diagnostics values of ``camera`` that satisfy ``predicate``."""
    name = f"{NODE}: {NS}/{camera}/image"
    for array in reversed(diagnostics.snapshot()):
        values = diagnostic_values(array, name)
        if values is not None and predicate(values):
            return values
    return None


def test_outputs_carry_the_input_header_and_match_the_predictor(ros, node, predictor):
    out = ros.subscribe(Classification, f"{NS}/cam_left/classification")
    pub = camera_publisher(ros, "cam_left")

    def frame(i: int):
        return image_msg(rgb_frame(i), Time(sec=1000 + i, nanosec=123456789), f"left_optical_{i}")

    stream_until(pub, frame, lambda: len(out.snapshot()) >= 3)
    for msg in out.snapshot():
        i = msg.header.stamp.sec - 1000
        assert msg.header.stamp.nanosec == 123456789
        assert msg.header.frame_id == f"left_optical_{i}"
        assert len(msg.results) == 5  # top_k from config/dann_ros.yaml
        scores = [h.score for h in msg.results]
        assert scores == sorted(scores, reverse=True)
        expected = predictor.predict(rgb_frame(i))
        assert msg.results[0].class_id == str(expected.class_id)
        assert msg.results[0].score == pytest.approx(expected.score, abs=1e-5)


def test_two_cameras_share_one_model_and_keep_their_outputs_apart(ros, node):
    outs = {cam: ros.subscribe(Classification, f"{NS}/{cam}/classification") for cam in ("cam_left", "cam_right")}
    pubs = {cam: camera_publisher(ros, cam) for cam in outs}

    def both(i: int):
        for cam, pub in pubs.items():
            pub.publish(image_msg(rgb_frame(i), ros.now(), f"{cam}_frame"))

    wait_for(lambda: all(o.find(lambda m, cam=cam: m.header.frame_id == f"{cam}_frame") for cam, o in outs.items()),
             what="outputs of both cameras", every=lambda: both(0), interval=0.05)
    for cam, out in outs.items():
        frame_ids = {m.header.frame_id for m in out.snapshot()}
        assert f"{cam}_frame" in frame_ids
        assert not {f for f in frame_ids if f.endswith("_frame")} - {f"{cam}_frame"}, frame_ids
    log = node.log()
    assert log.count("]: configured: ") == 1, log  # one model, loaded once
    assert f"cameras: {NS}/cam_left/image, {NS}/cam_right/image" in log


def test_parameters_come_from_the_yaml_file(ros, node, tiny_onnx):
    documented = yaml.safe_load(default_params_file().read_text())["/**"]["ros__parameters"]
    keys = sorted(documented)
    response = ros.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=keys))
    from rclpy.parameter import parameter_value_to_python

    actual = {n: parameter_value_to_python(v) for n, v in zip(keys, response.values)}
    expected = dict(documented, model_path=str(tiny_onnx), **OVERRIDES)
    for name in keys:
        want, got = expected[name], actual[name]
        if isinstance(want, float):
            assert got == pytest.approx(want), name
        elif isinstance(want, list):
            assert list(got) == want, name
        else:
            assert got == want, name


def test_label_info_reaches_a_late_subscriber(ros, node):
    for cam in ("cam_left", "cam_right"):
        labels = ros.subscribe(LabelInfo, f"{NS}/{cam}/{names.LABEL_INFO}", LABEL_INFO_QOS)
        msg = wait_for(lambda labels=labels: labels.find(lambda m: True), what=f"{cam}/{names.LABEL_INFO}")
        assert [(c.class_id, c.class_name) for c in msg.class_map] == [(i, str(i)) for i in range(10)]


def test_overlay_is_drawn_only_while_someone_subscribes(ros, node, diagnostics):
    pub = camera_publisher(ros, "cam_left")
    status = wait_for(lambda: camera_status(diagnostics, "cam_left"), what="cam_left diagnostics")
    published, overlays = int(status["frames published"]), int(status["overlays published"])

    def frame(i: int):
        return image_msg(rgb_frame(i), ros.now(), "left_overlay_test")

    # without a subscriber: results flow, no overlay is built
    status = stream_until(pub, frame, lambda: camera_status(
        diagnostics, "cam_left", lambda v: int(v["frames published"]) >= published + 3), what="3 more results")
    assert int(status["overlays published"]) == overlays

    images = ros.subscribe(Image, f"{NS}/cam_left/{names.OVERLAY}")
    overlay = stream_until(pub, frame, lambda: images.find(lambda m: m.header.frame_id == "left_overlay_test"),
                           what="an overlay image")
    assert (overlay.height, overlay.width, overlay.encoding) == (48, 64, "rgb8")
    stream_until(pub, frame, lambda: camera_status(
        diagnostics, "cam_left", lambda v: int(v["overlays published"]) > overlays), what="overlay count")
    ros.unsubscribe(images)


def test_malformed_frames_are_skipped_logged_and_counted(ros, node, diagnostics):
    pub = camera_publisher(ros, "cam_right")
    out = ros.subscribe(Classification, f"{NS}/cam_right/classification")
    bad = {
        r"unsupported encoding 'weird42'": Image(height=4, width=4, encoding="weird42", step=12, data=bytes(48)),
        r"data has 100 bytes, expected 9216": Image(height=48, width=64, encoding="rgb8", step=192,
                                                    data=bytes(100)),
        r"empty image: 0x0": Image(height=0, width=0, encoding="rgb8", step=0, data=b""),
    }
    for reason, msg in bad.items():
        stream_until(pub, lambda i, m=msg: m, lambda r=reason: re.search(r, node.log()),
                     what=f"the node to log {reason!r}")
    log = node.log()
    assert f"input '{NS}/cam_right/image': skipped a frame: unsupported encoding 'weird42'" in log
    assert log.count("unsupported encoding 'weird42'") == 1  # throttled: once per kind, not per frame
    status = wait_for(lambda: camera_status(diagnostics, "cam_right", lambda v: int(v["decode errors"]) >= 3),
                      what="3 decode errors in diagnostics")
    assert status["last error"] != "none"
    assert node.proc.poll() is None
    stream_until(pub, lambda i: image_msg(rgb_frame(i), ros.now(), "after_bad"),
                 lambda: out.find(lambda m: m.header.frame_id == "after_bad"), what="a result after bad frames")


def test_diagnostics_report_rates_latency_and_domain_shift(ros, node, diagnostics):
    pub = camera_publisher(ros, "cam_left")
    status = stream_until(pub, lambda i: image_msg(rgb_frame(i), ros.now(), "diag"), lambda: camera_status(
        diagnostics, "cam_left", lambda v: v["latency p50 (ms)"] != "n/a" and float(v["input rate (Hz)"]) > 0),
        what="diagnostics with latency figures")
    for key in ("input rate (Hz)", "output rate (Hz)", "latency p50 (ms)", "latency p99 (ms)"):
        assert math.isfinite(float(status[key])), key
    assert float(status["latency p99 (ms)"]) >= float(status["latency p50 (ms)"])
    # every received frame is published, dropped for a newer one, or still pending
    assert int(status["frames published"]) + int(status["drops"]) <= int(status["frames received"])
    assert int(status["decode errors"]) == 0 and status["last error"] == "none"  # cam_left only gets good frames
    shift = float(status["domain shift"])  # tiny_onnx carries the discriminator
    assert status["domain shift thresholds"] == "warn 0.3, error 0.6"
    # with no decode or inference errors the level is the domain shift's alone: OK, WARN or ERROR
    assert status["_level"] == (2 if shift >= 0.6 else 1 if shift >= 0.3 else 0), (shift, status)
    model = wait_for(lambda: next((diagnostic_values(a, f"{NODE}: model") for a in reversed(diagnostics.snapshot())
                                   if diagnostic_values(a, f"{NODE}: model")), None), what="model status")
    assert model["domain monitor"] == "grl_discriminator" and model["state"] == "active"
    assert status["domain monitor"] == "grl_discriminator" and "grl domain shift" not in status
    assert model["input qos"] == "best_effort, depth 1"
