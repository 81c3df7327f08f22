"""Inference backends behind one call: float32 (N, C, H, W) 0..255 -> named output arrays.

torch is optional: only the ``torch`` backend (a .pt checkpoint) imports it. The
robot-side install (``pip install .[runtime]``) runs ONNX Runtime (CPU or CUDA)
and TensorRT with CUDA from cuda-python.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from dann_ros.export.metadata import INPUT_NAME, MetadataError, ModelInfo, check_io


log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


class ModelLoadError(RuntimeError):
    """The model file cannot be loaded; the message names the file and why."""


class Backend(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


class TorchBackend:
    def __init__(self, path: Path, device: str | None = None) -> None:
        try:
            import torch

            from dann_ros.export.checkpoint_model import load_model
            from dann_ros.train.checkpoint import CheckpointError
        except ImportError as exc:
            raise ModelLoadError(f"{path}: a .pt checkpoint needs torch, which is not installed here ({exc}); "
                                 "export it with `dann-ros export` and deploy the .onnx (or a TensorRT engine)"
                                 ) from None

        try:
            self.module, self.info = load_model(path)
        except CheckpointError as exc:
            raise ModelLoadError(str(exc)) from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.module.to(self.device)
        self.name = f"torch-{self.device.type}"
        self._torch = torch

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(batch).to(self.device))
        if not isinstance(out, tuple):
            out = (out,)
        return {name: t.float().cpu().numpy() for name, t in zip(self.info.output_names, out)}


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
                     detection_class_count(model) if self.info.task == "detection" else None)
        except MetadataError as exc:
            raise ModelLoadError(str(exc)) from None
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, {INPUT_NAME: batch})
        return dict(zip(self.outputs, values))


def _gpu_hardware_present() -> bool:
    """An NVIDIA GPU or Jetson is here, whatever Python can see of it (for the fallback warning)."""
    return Path("/dev/nvidia0").exists() or Path("/etc/nv_tegra_release").exists() or Path("/dev/nvhost-ctrl").exists()


def _auto_onnx(path: Path, device: str | None, engine_options: dict) -> Backend:
    """backend=auto for an .onnx: TensorRT where it and a CUDA GPU are usable, else ONNX Runtime.

    Never TensorRT for device=cpu. Falling back from a GPU machine is logged as a warning
    with the reason: silently running on the CPU of a Jetson is the failure this prevents.
    """
    if device == "cpu":
        return OnnxRuntimeBackend(path, device)
    from dann_ros.cuda import why_no_gpu
    from dann_ros.runtime.tensorrt_backend import TensorRTBackend, tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    gpu_reason = why_no_gpu()
    if reason is None and gpu_reason is None:
        try:
            return TensorRTBackend(path, **engine_options)
        except Exception as exc:  # ModelLoadError, EngineBuildError, CudaError ...
            reason = f"{type(exc).__name__}: {exc}"
    else:
        reason = reason or f"no usable CUDA GPU ({gpu_reason})"
    fallback = OnnxRuntimeBackend(path, device)
    if reason and (_gpu_hardware_present() or gpu_reason is None or device == "cuda"):
        log.warning("backend=auto: not using TensorRT for %s (%s); FALLING BACK to %s", path, reason, fallback.name)
    else:
        log.info("backend=auto: %s on %s (%s)", path, fallback.name, reason)
    return fallback


def open_backend(path: str | Path, backend: str = "auto", device: str | None = None, precision: str = "auto",
                 max_batch: int = 8, opt_batch: int = 1, workspace_mb: int = 1024) -> Backend:
    """Pick the backend by name, or by file type and what is installed (``auto``).

    ``precision``, ``max_batch``, ``opt_batch`` and ``workspace_mb`` reach the TensorRT engine build.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if backend not in BACKENDS:
        raise ModelLoadError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if device not in (None, "", "cpu", "cuda"):
        raise ModelLoadError(f"device {device!r} is not one of cpu, cuda")
    device = device or None
    engine_options = {"precision": precision, "max_batch": max_batch, "opt_batch": opt_batch,
                      "workspace_mb": workspace_mb}
    if suffix in (".engine", ".plan") or backend == "tensorrt":
        if device == "cpu":
            raise ModelLoadError(f"{path}: TensorRT runs only on a CUDA GPU, not with device=cpu")
        if backend not in ("auto", "tensorrt"):
            raise ModelLoadError(f"{path}: a TensorRT engine runs only on the tensorrt backend")
        from dann_ros.export.tensorrt import TensorRTUnavailable
        from dann_ros.runtime.tensorrt_backend import TensorRTBackend

        try:
            return TensorRTBackend(path, **engine_options)
        except TensorRTUnavailable as exc:
            raise ModelLoadError(f"{path}: {exc}") from None
    if suffix == ".pt":
        if backend not in ("auto", "torch"):
            raise ModelLoadError(f"{path}: a checkpoint runs only on the torch backend; export it to ONNX first")
        return TorchBackend(path, device)
    if suffix == ".onnx":
        if backend == "torch":
            raise ModelLoadError(f"{path}: the torch backend needs a .pt checkpoint")
        if backend == "auto":
            return _auto_onnx(path, device, engine_options)
        return OnnxRuntimeBackend(path, device)
    raise ModelLoadError(f"{path}: unknown model type {suffix!r} (expected .pt, .onnx, .engine or .plan)")
