"""dann_node with a detector exported with the post-hoc feature monitor: each camera's /diagnostics
domain shift is the feature monitor's (reference 0), the GRL discriminator's beside it; frames like the
ones the monitor was fitted on read OK, dark or noisy ones WARN or worse."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from dann_ros.ros import names
from ros_helpers import diagnostic_values, image_msg, stream_until, wait_for
from test.conftest import monitor_scenes

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = "/monitor"
NODE = f"{NS}/dann_node"
WINDOW = 10
CAMERAS = {"cam_like": {}, "cam_dark": {"gain": 0.25}, "cam_noisy": {"noise": 40.0}}


@pytest.fixture(scope="module")
def node(start_node, tiny_monitored_detector_onnx):
    proc = start_node(tiny_monitored_detector_onnx, namespace=NS,
                      parameters={"input_topics": [f"{c}/image" for c in CAMERAS], "diagnostics_period": 0.3,
                                  "domain_shift_window": WINDOW})
    proc.wait_log(r"\]: active: ")
    return proc


@pytest.fixture(scope="module")
def diagnostics(ros, node):
    return ros.subscribe(DiagnosticArray, names.DIAGNOSTICS, 100)


def _frames(camera: str) -> list[np.ndarray]:
    """HWC rgb8 64 x 48 images (the detector's input size: the letterbox is the identity); seed 1, as
    the export test's held-out frames, not the 160 the monitor was fitted on."""
    return list(monitor_scenes(30, (3, 48, 64), 1, **CAMERAS[camera]).transpose(0, 2, 3, 1))


def _settled(diagnostics, camera: str):
    """Newest status of ``camera`` whose whole window holds published frames."""
    name = f"{NODE}: {NS}/{camera}/image"
    for array in reversed(diagnostics.snapshot()):
        values = diagnostic_values(array, name)
        if values is not None and int(values["domain shift frames"]) >= WINDOW:
            return values
    return None


def _stream(ros, diagnostics, camera: str) -> dict[str, str]:
    pub = ros.publisher(Image, f"{NS}/{camera}/image", qos_profile_sensor_data)
    wait_for(lambda: pub.get_subscription_count() > 0, what=f"dann_node subscribing {camera}/image")
    frames = _frames(camera)
    return stream_until(pub, lambda i: image_msg(frames[i % len(frames)], ros.now(), camera),
                        lambda: _settled(diagnostics, camera), what=f"{camera} diagnostics over {WINDOW} frames")


def test_the_feature_monitor_drives_the_cameras_domain_shift(ros, node, diagnostics, tiny_monitored_detector_onnx):
    from dann_ros.runtime.predictor import Predictor

    predictor = Predictor.load(tiny_monitored_detector_onnx, "onnxruntime")
    assert predictor.info.has_feature_monitor and predictor.info.has_domain
    status = {camera: _stream(ros, diagnostics, camera) for camera in CAMERAS}
    shift = {camera: float(v["domain shift"]) for camera, v in status.items()}
    for v in status.values():
        assert v["domain monitor"] == "feature_shift", v
        assert v["domain shift thresholds"] == "warn 0.3, error 0.6"
        assert 0.0 <= float(v["grl domain shift"]) <= 1.0  # the discriminator's score, kept as a second value
        assert 0.0 <= float(v["domain score mean"]) <= 1.0
    like = status["cam_like"]
    assert shift["cam_like"] < 0.3 and like["_level"] == 0 and like["_message"] == "ok", like
    for camera in ("cam_dark", "cam_noisy"):
        v = status[camera]
        assert shift[camera] > 0.5 and shift[camera] > shift["cam_like"] + 0.3, shift
        assert v["_level"] in (1, 2) and "(feature_shift)" in v["_message"], v
    # the node's figure is a mean of the Predictor's shift_score over frames of the window (same model)
    for camera in CAMERAS:
        scores = [predictor.detect(f).shift_score for f in _frames(camera)]
        assert min(scores) - 1e-3 <= shift[camera] <= max(scores) + 1e-3, (camera, shift[camera], scores)

    model = wait_for(lambda: next((diagnostic_values(a, f"{NODE}: model") for a in reversed(diagnostics.snapshot())
                                   if diagnostic_values(a, f"{NODE}: model")), None), what="model status")
    assert model["domain monitor"] == "feature_shift"
    assert "domain monitor feature_shift" in node.log()
