"""What the runtime needs to know about a model, stored inside the ONNX file.

ONNX ``metadata_props`` holds string key/value pairs; the TensorRT engine
cache keeps a JSON copy beside each engine. Readers check the schema version,
so a model from an incompatible dann_ros fails with a message naming the field.
A model file is untrusted input: the declared input size is bounded (the
runtime allocates batches of it, at load too), and :func:`check_io` holds the
metadata against the graph's own tensors when a backend loads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dann_ros.data.decoder_limit import DEFAULT_MAX_INPUT_PIXELS
from dann_ros.data.preprocess import Preprocess
from dann_ros.data.tasks import TASK_SPECS, task_spec

SCHEMA = "dann_ros.model/1"
INPUT_NAME = "images"
# The network input may not be larger than the largest camera frame dann_node accepts (12.6 MP, 151 MB
# as one float32 RGB input), nor longer on a side than 8192.
MAX_INPUT_PIXELS = DEFAULT_MAX_INPUT_PIXELS
MAX_INPUT_SIDE = 8192
MAX_CLASSES = 100_000


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
    def from_props(cls, props: dict[str, str], source: str) -> ModelInfo:
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
            if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
                raise MetadataError(f"{source}: metadata field 'dann_ros.outputs' is not a list of names")
            precision = props.get("dann_ros.precision", "fp32")  # absent in models exported before FP16 export
            if precision not in ("fp32", "fp16"):
                raise MetadataError(f"{source}: metadata field 'dann_ros.precision' has unknown value {precision!r}")
            classes = json.loads(field("classes"))
            if (not isinstance(classes, list) or not 0 < len(classes) <= MAX_CLASSES
                    or not all(isinstance(c, str) for c in classes)):
                raise MetadataError(f"{source}: metadata field 'dann_ros.classes' is not a list of 1 to "
                                    f"{MAX_CLASSES} class names")
            preprocess = Preprocess.from_json(field("preprocess"))
            h, w = preprocess.height, preprocess.width
            if max(h, w) > MAX_INPUT_SIDE or h * w > MAX_INPUT_PIXELS:
                raise MetadataError(f"{source}: metadata field 'dann_ros.preprocess' declares a {h}x{w} input, "
                                    f"above the {MAX_INPUT_PIXELS}-pixel, {MAX_INPUT_SIDE}-per-side limit")
            return cls(task=task, classes=tuple(classes), preprocess=preprocess,
                       config_digest=field("config_digest"), version=field("version"),
                       has_domain="domain" in outputs, precision=precision,
                       has_feature_monitor="feature_shift" in outputs)
        except (json.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
            if isinstance(exc, MetadataError):
                raise
            raise MetadataError(f"{source}: malformed dann_ros metadata: {exc}") from None


def check_io(info: ModelInfo, inputs: Mapping[str, Sequence], outputs: Mapping[str, Sequence], source: str,
             class_count: int | None = None) -> None:
    """The model's tensors (name -> shape; a symbolic, None or -1 dimension matches anything) agree with its
    metadata: the input with 'dann_ros.preprocess', the outputs with 'dann_ros.outputs', the class dimension
    (classification scores; ``class_count`` read from a detection graph) with 'dann_ros.classes'.

    Raises MetadataError naming ``source`` and the field. Without this a wrong input size fails on the
    first frame, and a detector with more classes than names fails with an IndexError on the first
    detection of a class without a name.
    """
    def static(dim) -> bool:
        return isinstance(dim, int) and dim > 0

    if INPUT_NAME not in inputs:
        raise MetadataError(f"{source}: the graph has no input {INPUT_NAME!r} (metadata field 'dann_ros.input'); "
                            f"its inputs are {sorted(inputs)}")
    shape, want = list(inputs[INPUT_NAME]), info.preprocess.input_shape
    if len(shape) != 4 or any(static(d) and d != e for d, e in zip(shape[1:], want)):
        raise MetadataError(f"{source}: metadata field 'dann_ros.preprocess' declares the input (N, C, H, W) = "
                            f"(N, {want[0]}, {want[1]}, {want[2]}); the graph's input {INPUT_NAME!r} is {shape}")
    missing = [name for name in info.output_names if name not in outputs]
    if missing:
        raise MetadataError(f"{source}: metadata field 'dann_ros.outputs' names {missing}, which the graph does not "
                            f"have (its outputs: {sorted(outputs)})")
    n = len(info.classes)
    if task_spec(info.task).class_scores_per_image:
        scores = list(outputs["scores"])
        if not scores or (static(scores[-1]) and scores[-1] != n):
            raise MetadataError(f"{source}: metadata field 'dann_ros.classes' names {n} classes; the graph's "
                                f"output 'scores' is {scores}")
    if class_count is not None and class_count != n:
        raise MetadataError(f"{source}: metadata field 'dann_ros.classes' names {n} classes; the graph's "
                            f"{info.task} head has {class_count}")
