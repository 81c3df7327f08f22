"""The ONNX Runtime backend (CPU or CUDA) and the checks of an .onnx file's metadata against its graph."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dann_ros.export.metadata import INPUT_NAME, MetadataError, ModelInfo, check_io
from dann_ros.runtime.backend_base import ModelLoadError
from dann_ros.runtime.tasks import TASKS

log = logging.getLogger(__name__)


def _load_onnx(path: Path):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None


def _info_of(model, path: Path) -> ModelInfo:
    try:
        return ModelInfo.from_props({p.key: p.value for p in model.metadata_props}, str(path))
    except MetadataError as exc:
        raise ModelLoadError(str(exc)) from None


def onnx_info(path: Path) -> ModelInfo:
    return _info_of(_load_onnx(path), path)


def detection_class_count(model) -> int | None:
    """Channels of a detection graph's heatmap: the tensor compared with its own 3x3 max-pool (the peak
    picking of dann_ros.model.detector.decode_centernet), from ONNX shape inference; None if not found."""
    from onnx import shape_inference

    try:
        graph = shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - an unusual graph is checked by its outputs only
        return None
    pooled = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "MaxPool" and n.input and n.output}
    shapes = {v.name: v.type.tensor_type.shape.dim for v in [*graph.value_info, *graph.input, *graph.output]}
    for node in graph.node:
        if node.op_type == "Equal" and len(node.input) == 2:
            a, b = node.input
            heatmap = a if pooled.get(b) == a else b if pooled.get(a) == b else None
            dims = shapes.get(heatmap) if heatmap else None
            if dims is not None and len(dims) == 4 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    return None


def _shapes(values) -> dict[str, list]:
    return {v.name: list(v.shape) for v in values}


class OnnxRuntimeBackend:
    def __init__(self, path: Path, device: str | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        model = _load_onnx(path)
        self.info = _info_of(model, path)
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise ModelLoadError(f"{path}: onnxruntime has no CUDA provider here (available: {available})")
        want_cuda = device != "cpu" and "CUDAExecutionProvider" in available
        providers = (["CUDAExecutionProvider"] if want_cuda else []) + ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # idle intra-op threads sleep instead of spinning: on a robot's few cores the spinning threads take
        # the CPU from the node's decode/publish threads and DDS (benchmarks/node.py; outputs unchanged)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"{path}: onnxruntime cannot load it ({exc})") from None
        # What loaded, not what was compiled in: a CUDA provider whose libraries (CUDA, cuDNN) fail to load
        # leaves a CPU session behind with only a logged error.
        loaded = self.session.get_providers()
        self.device = "cuda" if "CUDAExecutionProvider" in loaded else "cpu"
        if want_cuda and self.device != "cuda":
            if device == "cuda":
                raise ModelLoadError(f"{path}: device=cuda, but onnxruntime's CUDA provider did not load (the session "
                                     f"runs on {loaded}; see onnxruntime's log for the missing CUDA/cuDNN library)")
            log.warning("%s: onnxruntime's CUDA provider did not load; running on the CPU (%s)", path, loaded)
        self.name = f"onnxruntime-{self.device}"
        try:
            check_io(self.info, _shapes(self.session.get_inputs()), _shapes(self.session.get_outputs()), str(path),
                     detection_class_count(model) if TASKS[self.info.task].heatmap_head else None)
        except MetadataError as exc:
            raise ModelLoadError(str(exc)) from None
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, {INPUT_NAME: batch})
        return dict(zip(self.outputs, values))
