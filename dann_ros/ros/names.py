"""The topic names dann_node publishes on, defined once for the node, the evaluation tools that read its
output back (eval-bag's result bag, replay) and the tests.

Per camera, relative to the camera's namespace (ros/topics.py): the task's output (the ros layer's
task entry's ``topic``, ros/outputs.py: one of the first two below), ``label_info`` and ``overlay``.
ROS-free: importing this does not import rclpy.
"""

from __future__ import annotations

CLASSIFICATION = "classification"  # vision_msgs/Classification, a classifier's output
DETECTIONS = "detections"  # vision_msgs/Detection2DArray, a detector's output
LABEL_INFO = "label_info"  # vision_msgs/LabelInfo, class id -> name, transient local
OVERLAY = "overlay"  # sensor_msgs/Image, the frame with the result drawn in
DIAGNOSTICS = "/diagnostics"  # diagnostic_msgs/DiagnosticArray, absolute: the ROS-wide aggregator's input
