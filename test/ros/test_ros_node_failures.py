"""dann_node's failure paths over real DDS, with real ONNX models that misbehave in ONNX Runtime
(hostile_models.py): what /diagnostics says (the model by name and hash, never its path; a silent
camera; a NaN shift score), an inference call that raises, one that does not return, and an
activate that fails because the model file changed under the inactive node."""

from __future__ import annotations

import hashlib
import shutil
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification

from dann_ros.ros import names
from hostile_models import nan_domain, raising_on_bright, stalling_on_bright
from ros_helpers import diagnostic_values, image_msg, stream_until, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
ERROR, WARN, OK = 2, 1, 0
# how long the stalling model's bright frame keeps the worker busy (calibrated below, in this process: a
# node under other load, or a probe run in a load spike, can make the real stall half as long; the test
# needs about 2 s of it)
STALL_S = 12.0


def dark(i: int = 0) -> np.ndarray:
    """A frame every hostile model runs normally (no pixel above 128)."""
    return np.random.default_rng(i).integers(0, 100, (48, 64, 3), dtype=np.uint8)


def bright(i: int = 0) -> np.ndarray:
    return np.random.default_rng(i).integers(200, 256, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def diagnostics(ros):
    return ros.subscribe(DiagnosticArray, names.DIAGNOSTICS, 100)


def newest(diagnostics, name: str, predicate=lambda v: True):
    for array in reversed(diagnostics.snapshot()):
        values = diagnostic_values(array, name)
        if values is not None and predicate(values):
            return values
    return None


def wait_status(diagnostics, name: str, predicate, what: str, timeout: float = 60.0):
    return wait_for(lambda: newest(diagnostics, name, predicate), timeout, what)


def model_copy(src, tmp_path_factory, name: str = "model.onnx"):
    dst = tmp_path_factory.mktemp("private_models_dir") / name
    shutil.copy(src, dst)
    return dst


def start(start_node, model, ns: str, **parameters):
    node = start_node(model, namespace=ns, parameters={"diagnostics_period": 0.3, "qos_reliability": "reliable",
                                                       "qos_depth": 1, **parameters})
    node.wait_log(r"\]: active: ")
    return node


def input_publisher(ros, ns: str):
    pub = ros.publisher(Image, f"/{ns}/image", RELIABLE)
    wait_for(lambda: pub.get_subscription_count() > 0, what=f"dann_node subscribing /{ns}/image")
    return pub


def wire(ros, ns: str):
    """(the camera's /diagnostics status name, a publisher into the node, its Classification output) of the
    node started in namespace ``ns``."""
    return (f"/{ns}/dann_node: /{ns}/image", input_publisher(ros, ns),
            ros.subscribe(Classification, f"/{ns}/classification"))


# ---------------------------------------------------------------- what /diagnostics says
def test_diagnostics_name_the_model_without_its_path_and_warn_on_a_silent_camera(ros, start_node, tiny_onnx,
                                                                               diagnostics, tmp_path_factory):
    model = model_copy(tiny_onnx, tmp_path_factory)
    node = start(start_node, model, "diag", input_timeout=1.0)
    model_status, camera = "/diag/dann_node: model", "/diag/dann_node: /diag/image"

    # no frame yet: the camera warns once input_timeout has passed since activation
    silent = wait_status(diagnostics, camera, lambda v: v["_level"] == WARN, "a WARN for the silent camera")
    assert silent["_message"].startswith("no frame for ") and "(input_timeout 1 s)" in silent["_message"], silent
    assert float(silent["seconds since last frame"]) >= 1.0

    values = wait_status(diagnostics, model_status, lambda v: True, "the model status")
    assert values["model"] == "model.onnx"
    assert values["model sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    folder = str(model.parent)
    for array in diagnostics.snapshot():
        for status in array.status:
            texts = [status.message, status.hardware_id, *(kv.value for kv in status.values)]
            assert not any(folder in t for t in texts), f"the model's path is published: {status}"

    # frames arrive: OK; they stop: WARN again after input_timeout
    pub = input_publisher(ros, "diag")
    out = ros.subscribe(Classification, "/diag/classification")
    stream_until(pub, lambda i: image_msg(dark(i), ros.now(), "diag"),
                 lambda: len(out.snapshot()) >= 3 and newest(diagnostics, camera,
                                                            lambda v: v["_level"] == OK and v["_message"] == "ok"),
                 what="an OK camera status while frames arrive")
    diagnostics.clear()
    silent = wait_status(diagnostics, camera, lambda v: v["_level"] == WARN, "a WARN once frames stopped")
    assert silent["_message"].startswith("no frame for "), silent
    assert node.proc.poll() is None


def test_a_nan_shift_score_warns(ros, start_node, tiny_onnx, diagnostics, tmp_path_factory):
    model = nan_domain(tiny_onnx, tmp_path_factory.mktemp("nan") / "nan_domain.onnx")
    start(start_node, model, "nan")
    camera, pub, out = wire(ros, "nan")
    values = stream_until(pub, lambda i: image_msg(dark(i), ros.now(), "nan"),
                          lambda: newest(diagnostics, camera, lambda v: int(v["domain shift frames"]) >= 3),
                          what="diagnostics over 3 frames of the NaN model")
    assert len(out.snapshot()) >= 1  # the class scores are fine: only the monitor is broken
    assert values["_level"] == WARN and values["domain shift"] == "nan", values
    assert "domain shift score is NaN (grl_discriminator: the model's output was not finite on" in values["_message"]


# ---------------------------------------------------------------- the worker
def test_an_inference_failure_is_counted_reported_and_survived(ros, start_node, tiny_onnx, diagnostics,
                                                              tmp_path_factory):
    model = raising_on_bright(tiny_onnx, tmp_path_factory.mktemp("raise") / "raising.onnx")
    node = start(start_node, model, "raise")
    camera, pub, out = wire(ros, "raise")

    values = stream_until(pub, lambda i: image_msg(bright(i), ros.now(), "bright"),
                          lambda: newest(diagnostics, camera, lambda v: int(v["inference errors"]) >= 5),
                          what="5 inference errors in diagnostics")
    assert node.proc.poll() is None
    assert not out.find(lambda m: m.header.frame_id == "bright")
    assert values["_level"] == ERROR and "inference errors" in values["_message"], values
    assert values["last error"].startswith("inference failed: ") and "Gather" in values["last error"], values
    node.wait_log(r"inference worker: inference failed: ")

    # the same worker goes on with frames the model can run
    stream_until(pub, lambda i: image_msg(dark(i), ros.now(), f"dark_{i}"),
                 lambda: len({m.header.frame_id for m in out.snapshot()}) >= 5, what="5 answered dark frames")
    after = wait_status(diagnostics, camera, lambda v: int(v["frames published"]) >= 5, "published frames counted")
    assert int(after["inference errors"]) >= 5 and node.proc.poll() is None


@pytest.fixture(scope="module")
def stalling_model(tiny_onnx, tmp_path_factory):
    """A model whose bright frames take about STALL_S seconds, calibrated on this machine."""
    from dann_ros.runtime.predictor import Predictor

    folder = tmp_path_factory.mktemp("stall")
    probe_iterations = 200
    probe = Predictor.load(stalling_on_bright(tiny_onnx, folder / "probe.onnx", probe_iterations), "onnxruntime")
    seconds = []
    for _ in range(3):
        t0 = time.perf_counter()
        probe.predict(bright())
        seconds.append(time.perf_counter() - t0)
    per_iteration = min(seconds) / probe_iterations
    return stalling_on_bright(tiny_onnx, folder / "stalling.onnx", int(STALL_S / per_iteration))


def test_a_stuck_worker_is_reported_and_frames_are_dropped_not_queued(ros, start_node, stalling_model, diagnostics):
    # qos_depth 10: every frame of the stall reaches the node's callback (depth 1 could lose some in DDS, uncounted)
    node = start(start_node, stalling_model, "stall", inference_timeout=1.0, diagnostics_period=0.2, qos_depth=10)
    model_status = "/stall/dann_node: model"
    camera, pub, out = wire(ros, "stall")
    stream_until(pub, lambda i: image_msg(dark(i), ros.now(), "warmup"),
                 lambda: out.find(lambda m: m.header.frame_id == "warmup"), what="a warm-up output")

    pub.publish(image_msg(bright(), ros.now(), "stall"))
    stuck = wait_status(diagnostics, model_status, lambda v: v["_level"] == ERROR, "the stuck worker reported",
                        timeout=STALL_S)
    assert stuck["_message"].startswith("inference has not returned for ") and \
        "(inference_timeout 1 s): the worker is stuck" in stuck["_message"], stuck
    assert float(stuck["inference running (s)"]) >= 1.0 and stuck["inference stalls"] == "1"
    cam = wait_status(diagnostics, camera, lambda v: v["_level"] == ERROR, "the camera's status during the stall")
    assert cam["_message"].startswith("inference stuck for "), cam
    received_before = int(cam["frames received"])

    during = 10
    for i in range(during):  # all while the worker is stuck: none may queue up behind it
        pub.publish(image_msg(dark(i), ros.now(), f"during_{i}"))
        time.sleep(0.02)
    still = newest(diagnostics, model_status)
    assert still["_level"] == ERROR, "the stall ended before the frames were sent: calibration too short"

    wait_status(diagnostics, model_status, lambda v: v["inference stalls"] == "1" and v["_level"] == OK
                and v["inference running (s)"] == "idle", "the worker back after the stall")
    node.wait_log(r"inference returned after \d+\.\d s")
    wait_for(lambda: out.find(lambda m: m.header.frame_id == "stall"), what="the stalled frame's output")
    time.sleep(1.0)
    answered = sorted(m.header.frame_id for m in out.snapshot() if m.header.frame_id.startswith("during_"))
    assert answered == [f"during_{during - 1}"], f"frames queued behind the stuck call were answered: {answered}"
    counted = wait_status(diagnostics, camera, lambda v: int(v["frames received"]) >= received_before + during,
                          "the frames of the stall counted")
    assert int(counted["drops"]) >= during - 1, counted
    stream_until(pub, lambda i: image_msg(dark(i), ros.now(), "after"),
                 lambda: out.find(lambda m: m.header.frame_id == "after"), what="an output after the stall")
    assert node.proc.poll() is None


# ---------------------------------------------------------------- activate
def _state(ros, node: str) -> str:
    return ros.call(GetState, f"{node}/get_state", GetState.Request(), resend_after=5.0).current_state.label


def _change(ros, node: str, transition: int) -> bool:
    request = ChangeState.Request()
    request.transition.id = transition
    return ros.call(ChangeState, f"{node}/change_state", request).success


def test_a_failed_activate_leaves_the_node_inactive_and_says_why(ros, start_node, tiny_onnx, diagnostics,
                                                               tmp_path_factory):
    model = model_copy(tiny_onnx, tmp_path_factory)
    good = model.read_bytes()
    node = start(start_node, model, "act")
    name, model_status = "/act/dann_node", "/act/dann_node: model"
    pub = input_publisher(ros, "act")
    out = ros.subscribe(Classification, "/act/classification")
    assert _change(ros, name, Transition.TRANSITION_DEACTIVATE)

    model.write_bytes(good[: len(good) // 2])  # damaged on disk while the node is inactive
    assert not _change(ros, name, Transition.TRANSITION_ACTIVATE)
    assert _state(ros, name) == "inactive"
    node.wait_log(r"activate failed: model file model\.onnx changed since configure \(sha256 \w+ -> \w+\) \(")
    status = wait_status(diagnostics, model_status, lambda v: v["_level"] == ERROR, "the failed activate reported")
    assert status["_message"].startswith("inactive: activate failed: model file model.onnx changed since configure")
    assert status["state"] == "inactive" and str(model.parent) not in status["_message"]
    time.sleep(0.5)
    assert pub.get_subscription_count() == 0  # nothing half-started: no subscription, no worker

    model.unlink()
    assert not _change(ros, name, Transition.TRANSITION_ACTIVATE)
    node.wait_log(r"activate failed: model file model\.onnx is gone since configure")
    assert _state(ros, name) == "inactive"

    model.write_bytes(good)  # the same bytes again (a new inode and mtime): the model it loaded, so it may run
    assert _change(ros, name, Transition.TRANSITION_ACTIVATE)
    assert _state(ros, name) == "active"
    stream_until(pub, lambda i: image_msg(dark(i), ros.now(), "reactivated"),
                 lambda: out.find(lambda m: m.header.frame_id == "reactivated"), what="an output after activate")
    wait_status(diagnostics, model_status, lambda v: v["_level"] == OK and v["last transition error"] == "none",
                "the error cleared")
    assert node.proc.poll() is None
