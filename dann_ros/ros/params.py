"""The node's parameters: one table with defaults and descriptions, read into a frozen record.

Parameters are read when the node is configured; changing one takes effect at the next
configure (cleanup -> configure, or restart). config/dann_ros.yaml documents every entry
and tests check that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dann_ros.data.images import DEFAULT_MAX_INPUT_PIXELS

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
RELIABILITIES = ("best_effort", "reliable")

# name -> (default, description). The default's type is the parameter's type.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "model_path": ("", "Model file: TensorRT engine (.engine/.plan), ONNX (.onnx) or dann_ros checkpoint (.pt)."),
    "backend": ("auto", "Inference backend: auto | torch | onnxruntime | tensorrt (auto: by file type, "
                        "TensorRT for ONNX where it is installed)."),
    "device": ("", "Device: '' (auto: CUDA when available) | cpu | cuda."),
    "input_topics": (["image"], "Image topics, relative to the node's namespace. With several cameras each "
                                "camera's outputs go next to its input: cam_left/image -> cam_left/classification."),
    "compressed": (False, "Inputs are sensor_msgs/CompressedImage (JPEG/PNG) instead of sensor_msgs/Image."),
    "qos_reliability": ("best_effort", "Input QoS reliability: best_effort (sensor data) | reliable. A reliable "
                                       "subscription receives nothing from a best-effort publisher."),
    "qos_depth": (1, "Input QoS history depth (KEEP_LAST). The node keeps only the newest frame per camera anyway."),
    "max_input_pixels": (DEFAULT_MAX_INPUT_PIXELS,
                         "Frames with more pixels (width x height, read from the message or the "
                         "PNG/JPEG header before decoding) are skipped and counted as decode "
                         "errors; default 4096 x 3072."),
    "publish_overlay": (True, "Publish <camera>/overlay (sensor_msgs/Image with the result drawn in); drawn only "
                              "while the topic has a subscriber."),
    "autostart": (True, "Configure and activate at start, for users who do not drive lifecycle transitions."),
    "top_k": (5, "Hypotheses per vision_msgs/Classification, best first; 0 = all classes."),
    "detection_threshold": (0.3, "Detection models: publish detections scoring at least this (0..1) in "
                                 "<camera>/detections (vision_msgs/Detection2DArray)."),
    "domain_shift_reference": (0.5, "GRL discriminator's P(synthetic source) expected on frames like the "
                                    "adaptation target; after DANN training about 0.5 (the feature monitor's is 0)."),
    "domain_shift_window": (100, "Frames per camera the domain-shift score averages over."),
    "domain_shift_warn": (0.3, "Domain-shift score at or above which diagnostics report WARN."),
    "domain_shift_error": (0.6, "Domain-shift score at or above which diagnostics report ERROR."),
    "diagnostics_period": (1.0, "Seconds between diagnostic_msgs/DiagnosticArray messages on /diagnostics."),
    "input_timeout": (5.0, "Seconds without a frame on a camera (while active) after which its /diagnostics "
                           "status is WARN 'no frame for ...'; 0 = never."),
    "inference_timeout": (10.0, "Seconds one inference call may run before /diagnostics reports the worker "
                                "stuck (ERROR); frames arriving meanwhile are dropped, only the newest is kept."),
}


class ParameterError(ValueError):
    """A parameter value the node cannot use; the message names the parameter."""


@dataclass(frozen=True)
class NodeParams:
    model_path: str
    backend: str
    device: str
    input_topics: tuple[str, ...]
    compressed: bool
    qos_reliability: str
    qos_depth: int
    max_input_pixels: int
    publish_overlay: bool
    autostart: bool
    top_k: int
    detection_threshold: float
    domain_shift_reference: float
    domain_shift_window: int
    domain_shift_warn: float
    domain_shift_error: float
    diagnostics_period: float
    input_timeout: float
    inference_timeout: float

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ParameterError:
            return ParameterError(f"parameter {name!r}: {why} (got {getattr(self, name)!r})")

        if not self.model_path:
            raise bad("model_path", "no model file given; set it, e.g. -p model_path:=/path/model.onnx")
        if self.backend not in BACKENDS:
            raise bad("backend", f"must be one of {', '.join(BACKENDS)}")
        if self.device not in ("", "cpu", "cuda"):
            raise bad("device", "must be '', 'cpu' or 'cuda'")
        if not self.input_topics or any(not t.strip() for t in self.input_topics):
            raise bad("input_topics", "needs at least one non-empty topic name")
        if len(set(self.input_topics)) != len(self.input_topics):
            raise bad("input_topics", "lists a topic twice")
        if self.qos_reliability not in RELIABILITIES:
            raise bad("qos_reliability", f"must be one of {', '.join(RELIABILITIES)}")
        if self.qos_depth < 1:
            raise bad("qos_depth", "must be at least 1")
        if self.max_input_pixels < 1:
            raise bad("max_input_pixels", "must be at least 1 (width x height of the largest frame to accept)")
        if self.top_k < 0:
            raise bad("top_k", "must be 0 (all) or positive")
        if not 0.0 <= self.detection_threshold <= 1.0:
            raise bad("detection_threshold", "must lie within 0..1")
        if not 0.0 <= self.domain_shift_reference <= 1.0:
            raise bad("domain_shift_reference", "must lie within 0..1")
        if self.domain_shift_window < 1:
            raise bad("domain_shift_window", "must be at least 1")
        if not 0.0 < self.domain_shift_warn <= self.domain_shift_error:
            raise bad("domain_shift_warn", f"must be > 0 and <= domain_shift_error ({self.domain_shift_error})")
        if self.diagnostics_period <= 0:
            raise bad("diagnostics_period", "must be positive")
        if not self.input_timeout >= 0:
            raise bad("input_timeout", "must be 0 (never) or positive seconds")
        if not self.inference_timeout > 0:
            raise bad("inference_timeout", "must be positive seconds")

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeParams:
        unknown = set(values) - set(PARAMETERS)
        if unknown:
            raise ParameterError(f"unknown parameter(s) {sorted(unknown)}")
        merged = {name: values.get(name, default) for name, (default, _) in PARAMETERS.items()}
        merged["input_topics"] = tuple(merged["input_topics"])
        return cls(**merged)


def declare_parameters(node) -> None:
    from rcl_interfaces.msg import ParameterDescriptor

    for name, (default, description) in PARAMETERS.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description))


def read_parameters(node) -> NodeParams:
    return NodeParams.from_values({name: node.get_parameter(name).value for name in PARAMETERS})
