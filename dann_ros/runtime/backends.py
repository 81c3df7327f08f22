"""Inference backends behind one call: float32 (N, C, H, W) 0..255 -> named output arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from dann_ros.export.metadata import INPUT_NAME, MetadataError, ModelInfo


class ModelLoadError(RuntimeError):
    """The model file cannot be loaded; the message names the file and why."""


class Backend(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


class TorchBackend:
    def __init__(self, path: Path, device: str | None = None) -> None:
        import torch

        from dann_ros.train.checkpoint import CheckpointError, load_model

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


def onnx_info(path: Path) -> ModelInfo:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    try:
        return ModelInfo.from_props({p.key: p.value for p in model.metadata_props}, str(path))
    except MetadataError as exc:
        raise ModelLoadError(str(exc)) from None


class OnnxRuntimeBackend:
    def __init__(self, path: Path, device: str | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.info = onnx_info(path)
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise ModelLoadError(f"{path}: onnxruntime has no CUDA provider here (available: {available})")
        use_cuda = device != "cpu" and "CUDAExecutionProvider" in available
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"{path}: onnxruntime cannot load it ({exc})") from None
        self.outputs = [o.name for o in self.session.get_outputs()]
        missing = set(self.info.output_names) - set(self.outputs)
        if missing:
            raise ModelLoadError(f"{path}: outputs {sorted(missing)} named in the metadata are not in the graph")
        self.name = "onnxruntime-" + ("cuda" if use_cuda else "cpu")

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, {INPUT_NAME: batch})
        return dict(zip(self.outputs, values))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def open_backend(path: str | Path, backend: str = "auto", device: str | None = None) -> Backend:
    """Pick the backend by name, or by file type and what is installed (``auto``)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if backend not in ("auto", "torch", "onnxruntime", "tensorrt"):
        raise ModelLoadError(f"backend {backend!r} is not one of auto, torch, onnxruntime, tensorrt")
    if suffix in (".engine", ".plan") or backend == "tensorrt":
        from dann_ros.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path)
    if suffix == ".pt":
        if backend not in ("auto", "torch"):
            raise ModelLoadError(f"{path}: a checkpoint runs only on the torch backend; export it to ONNX first")
        return TorchBackend(path, device)
    if suffix == ".onnx":
        if backend == "torch":
            raise ModelLoadError(f"{path}: the torch backend needs a .pt checkpoint")
        if backend == "auto":
            from dann_ros.runtime.tensorrt_backend import tensorrt_available

            if tensorrt_available() and _cuda_available():
                from dann_ros.runtime.tensorrt_backend import TensorRTBackend

                return TensorRTBackend(path)
        return OnnxRuntimeBackend(path, device)
    raise ModelLoadError(f"{path}: unknown model type {suffix!r} (expected .pt, .onnx, .engine or .plan)")
