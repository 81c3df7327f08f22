"""ROS-free inference: one Predictor for the node, the bag evaluators, and ``dann-ros eval``."""

from dann_ros.runtime.predictor import Predictor
from dann_ros.runtime.results import Classification, Detection, Detections

__all__ = ["Predictor", "Classification", "Detection", "Detections"]
