"""Frames OpenCV cannot convert are skipped and counted by the bag reader, not a traceback (issue 22, defect 1)."""

import numpy as np
from rosbags.rosbag2 import Writer
from rosbags.typesys import get_typestore

from dann_ros.data.bags import ROS2_STORE, DecodeStats, iter_frames

TS = get_typestore(ROS2_STORE)


def image(stamp: int, encoding: str, width: int) -> object:
    t = TS.types
    return t["sensor_msgs/msg/Image"](
        header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=stamp, nanosec=0), frame_id="cam"),
        height=2, width=width, encoding=encoding, is_bigendian=0, step=2 * width,
        data=np.full(4 * width, 128, np.uint8))


def test_odd_width_yuv_frame_is_skipped_and_counted(tmp_path):
    frames = [image(1, "yuyv", 4), image(2, "yuyv", 3), image(3, "uyvy", 5), image(4, "yuyv", 4)]
    with Writer(tmp_path / "bag", version=9) as writer:
        conn = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=TS)
        for k, msg in enumerate(frames):
            writer.write(conn, k + 1, TS.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    stats = DecodeStats()
    got = list(iter_frames(tmp_path / "bag", stats=stats))
    assert [f.index for f in got] == [0, 3] and all(f.image.shape == (2, 4, 3) for f in got)
    assert (stats.decoded, stats.skipped) == (2, 2)
    assert any("/cam/image_raw#1: odd width 3: yuyv" in e for e in stats.examples), stats.examples
