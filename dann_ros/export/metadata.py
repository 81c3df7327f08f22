"""What the runtime needs to know about a model, stored inside the ONNX file.

ONNX ``metadata_props`` holds string key/value pairs; the TensorRT engine
cache keeps a JSON copy beside each engine. Readers check the schema version,
so a model from an incompatible dann_ros fails with a message naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from dann_ros.data.preprocess import Preprocess
from dann_ros.data.tasks import TASK_SPECS, task_spec

SCHEMA = "dann_ros.model/1"
INPUT_NAME = "images"


class MetadataError(ValueError):
    pass


@dataclass(frozen=True)
class ModelInfo:
    task: str  # a key of dann_ros.data.tasks.TASK_SPECS (checked in from_props)
    classes: tuple[str, ...]
    preprocess: Preprocess
    config_digest: str
    version: str
    has_domain: bool = False
    precision: Literal["fp32", "fp16"] = "fp32"  # of the graph's weights/compute; inputs and outputs stay fp32
    has_feature_monitor: bool = False  # output feature_shift: the post-hoc monitor fitted at export

    @property
    def output_names(self) -> list[str]:
        """The graph's outputs in order (see dann_ros.model.deploy)."""
        names = list(task_spec(self.task).outputs)
        return names + (["domain"] if self.has_domain else []) + (["feature_shift"] if self.has_feature_monitor else [])

    def to_props(self) -> dict[str, str]:
        return {
            "dann_ros.schema": SCHEMA,
            "dann_ros.task": self.task,
            "dann_ros.classes": json.dumps(list(self.classes)),
            "dann_ros.preprocess": self.preprocess.to_json(),
            "dann_ros.normalization": "in_graph",
            "dann_ros.input": INPUT_NAME,
            "dann_ros.outputs": json.dumps(self.output_names),
            "dann_ros.config_digest": self.config_digest,
            "dann_ros.version": self.version,
            "dann_ros.precision": self.precision,
        }

    @classmethod
    def from_props(cls, props: dict[str, str], source: str) -> "ModelInfo":
        def field(name: str) -> str:
            key = f"dann_ros.{name}"
            if key not in props:
                raise MetadataError(f"{source}: metadata field {key!r} is missing (not exported by dann_ros?)")
            return props[key]

        schema = field("schema")
        if schema != SCHEMA:
            raise MetadataError(f"{source}: metadata field 'dann_ros.schema' is {schema!r}; "
                                f"this dann_ros reads {SCHEMA!r}")
        try:
            task = field("task")
            if task not in TASK_SPECS:
                raise MetadataError(f"{source}: metadata field 'dann_ros.task' has unknown value {task!r}")
            outputs = json.loads(field("outputs"))
            precision = props.get("dann_ros.precision", "fp32")  # absent in models exported before FP16 export
            if precision not in ("fp32", "fp16"):
                raise MetadataError(f"{source}: metadata field 'dann_ros.precision' has unknown value {precision!r}")
            return cls(task=task, classes=tuple(json.loads(field("classes"))),
                       preprocess=Preprocess.from_json(field("preprocess")),
                       config_digest=field("config_digest"), version=field("version"),
                       has_domain="domain" in outputs, precision=precision,
                       has_feature_monitor="feature_shift" in outputs)
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            if isinstance(exc, MetadataError):
                raise
            raise MetadataError(f"{source}: malformed dann_ros metadata: {exc}") from None
