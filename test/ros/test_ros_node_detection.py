"""dann_node with a detection model: vision_msgs/Detection2DArray on <camera>/detections."""

from __future__ import annotations

import pytest
from builtin_interfaces.msg import Time
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from ros_helpers import image_msg, rgb_frame, stream_until, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = "/det"


@pytest.fixture(scope="module")
def node(start_node, tiny_detector_onnx):
    # random weights score about 0.1 everywhere: threshold 0 so every candidate is published
    proc = start_node(tiny_detector_onnx, namespace=NS, parameters={"detection_threshold": 0.0})
    proc.wait_log(r"\]: active: ")
    return proc


def test_detections_carry_the_input_header_and_match_the_predictor(ros, node, tiny_detector_onnx):
    from dann_ros.runtime.predictor import Predictor

    out = ros.subscribe(Detection2DArray, f"{NS}/detections")
    pub = ros.publisher(Image, f"{NS}/image", qos_profile_sensor_data)
    wait_for(lambda: pub.get_subscription_count() > 0, what="dann_node subscribing image")

    def frame(i: int):  # 80 x 48: wider than the 64 x 48 input, so the letterbox is undone
        return image_msg(rgb_frame(i, width=80, height=48), Time(sec=2000 + i, nanosec=42), f"det_{i}")

    msg = stream_until(pub, frame, lambda: out.find(lambda m: m.header.frame_id.startswith("det_")))
    i = msg.header.stamp.sec - 2000
    assert msg.header.stamp.nanosec == 42 and msg.header.frame_id == f"det_{i}"
    expected = Predictor.load(tiny_detector_onnx, "onnxruntime").detect(rgb_frame(i, width=80, height=48), 0.0)
    assert len(msg.detections) == len(expected) > 0
    for det, exp in zip(msg.detections, expected):
        assert det.header.stamp == msg.header.stamp
        x1, y1, x2, y2 = exp.box
        assert det.bbox.center.position.x == pytest.approx((x1 + x2) / 2, abs=1e-3)
        assert det.bbox.center.position.y == pytest.approx((y1 + y2) / 2, abs=1e-3)
        assert det.bbox.size_x == pytest.approx(x2 - x1, abs=1e-3)
        assert 0 <= x1 <= x2 <= 80 and 0 <= y1 <= y2 <= 48
        assert det.results[0].hypothesis.class_id == str(exp.class_id)
        assert det.results[0].hypothesis.score == pytest.approx(exp.score, abs=1e-5)
