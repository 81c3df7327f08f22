"""Inference backends behind one call: float32 (N, C, H, W) 0..255 -> named output arrays.

torch is optional: only the ``torch`` backend (a .pt checkpoint) imports it. The
robot-side install (``pip install .[runtime]``) runs ONNX Runtime (CPU or CUDA)
and TensorRT with CUDA from cuda-python.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dann_ros.runtime.backend_base import Backend, ModelLoadError
from dann_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend, detection_class_count, onnx_info


log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
# re-exported: callers pick a backend and catch its error from this one module
__all__ = ["BACKENDS", "Backend", "ModelLoadError", "OnnxRuntimeBackend", "TorchBackend", "detection_class_count",
           "onnx_info", "open_backend"]


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
