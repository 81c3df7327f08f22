"""Data in: Replicator renders (source), rosbag2 camera frames (target). The demo's data makers: dann_ros.demo_data."""

# Before any module of this package imports cv2: OpenCV reads its pixel limit when it loads.
from dann_ros.data import decoder_limit as _decoder_limit  # noqa: F401
