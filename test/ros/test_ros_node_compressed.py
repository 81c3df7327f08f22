"""dann_node on CompressedImage input with a RELIABLE subscription and the input remapped the
way the launch file does it (image:=...)."""

from __future__ import annotations

import re

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
from vision_msgs.msg import Classification

from dann_ros.data.images import COMPRESSED_FORMATS, encode_compressed, message_to_rgb8
from dann_ros.ros import names
from ros_helpers import diagnostic_values, rgb_frame, stream_until, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = "/comp"
NODE = f"{NS}/dann_node"
INPUT = "/camera/image_raw/compressed"  # remapped from the node's 'image'
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)


@pytest.fixture(scope="module")
def node(start_node, tiny_onnx):
    proc = start_node(tiny_onnx, namespace=NS, image=INPUT,
                      parameters={"compressed": True, "qos_reliability": "reliable", "diagnostics_period": 0.5})
    proc.wait_log(r"\]: active: ")
    return proc


@pytest.fixture(scope="module")
def publisher(ros, node):
    pub = ros.publisher(CompressedImage, INPUT, RELIABLE)
    wait_for(lambda: pub.get_subscription_count() > 0, what="dann_node subscribing the compressed input")
    return pub


@pytest.fixture(scope="module")
def outputs(ros, node):
    return ros.subscribe(Classification, f"{NS}/classification")


def compressed(ros, i: int, fmt: str, frame_id: str) -> CompressedImage:
    msg = CompressedImage(format=COMPRESSED_FORMATS[fmt], data=encode_compressed(rgb_frame(i), fmt))
    msg.header.stamp, msg.header.frame_id = ros.now(), frame_id
    return msg


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_frames_are_classified(ros, node, publisher, outputs, tiny_onnx, fmt):
    from dann_ros.runtime.predictor import Predictor

    sent = {}

    def make(i: int):
        sent[i] = compressed(ros, i, fmt, f"{fmt}_{i}")
        return sent[i]

    msg = stream_until(publisher, make, lambda: outputs.find(lambda m: m.header.frame_id.startswith(fmt + "_")))
    i = int(msg.header.frame_id.split("_")[1])
    assert msg.header.stamp == sent[i].header.stamp
    expected = Predictor.load(tiny_onnx, "onnxruntime").predict(message_to_rgb8(sent[i]))
    assert msg.results[0].class_id == str(expected.class_id)
    assert msg.results[0].score == pytest.approx(expected.score, abs=1e-5)


def test_undecodable_jpeg_is_skipped_and_later_frames_work(ros, node, publisher, outputs):
    garbage = CompressedImage(format=COMPRESSED_FORMATS["jpeg"], data=b"\xff\xd8 not really a jpeg" * 10)
    stream_until(publisher, lambda i: garbage, lambda: "cannot decode compressed image data" in node.log(),
                 what="the node to log the undecodable JPEG")
    assert re.search(rf"input '{INPUT}': skipped a frame: cannot decode compressed image data", node.log())
    stream_until(publisher, lambda i: compressed(ros, i, "jpeg", "after_garbage"),
                 lambda: outputs.find(lambda m: m.header.frame_id == "after_garbage"))


def test_qos_mismatch_is_logged_and_counted(ros, node, publisher):
    diagnostics = ros.subscribe(DiagnosticArray, names.DIAGNOSTICS, 50)
    ros.publisher(CompressedImage, INPUT, BEST_EFFORT)  # a best-effort camera vs the node's reliable input
    node.wait_log(r"incompatible QoS with a publisher \(RELIABILITY\).*qos_reliability:=best_effort")

    def counted():
        for array in reversed(diagnostics.snapshot()):
            values = diagnostic_values(array, f"{NODE}: {INPUT}")
            if values and int(values["qos incompatible events"]) >= 1:
                return values
        return None

    wait_for(counted, what="the incompatible QoS event in diagnostics")
