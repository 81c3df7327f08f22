"""TensorRT backend: a cached engine (see dann_ros.export.tensorrt) behind the Backend protocol.

Device memory and the CUDA stream come from torch (always installed), so no
pycuda is needed: inputs are copied with ``tensor.to('cuda')``, outputs are
``torch.empty`` on the GPU, and ``execute_async_v3`` runs on torch's current
stream, which orders it with those copies. Written against the TensorRT 10
named-tensor API (set_input_shape / set_tensor_address / execute_async_v3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dann_ros.export.metadata import INPUT_NAME, MetadataError, ModelInfo
from dann_ros.export.tensorrt import (
    INSTALL_HINT,
    EngineBuildError,
    gpu_info,
    import_tensorrt,
    load_or_build,
    read_sidecar,
    sidecar_key,
    sidecar_path,
)
from dann_ros.runtime.backends import ModelLoadError


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


class TensorRTBackend:
    """``path``: a dann_ros .onnx (engine built or loaded from the cache) or an .engine/.plan with its .json."""

    def __init__(self, path: str | Path, precision: str = "auto", max_batch: int = 8,
                 workspace_mb: int = 1024) -> None:
        path = Path(path)
        if not path.exists():
            raise ModelLoadError(f"{path}: model file not found")
        suffix = path.suffix.lower()
        if suffix not in (".onnx", ".engine", ".plan"):
            raise ModelLoadError(f"{path}: the TensorRT backend takes .onnx, .engine or .plan, not {suffix!r}")
        meta = sidecar_path(path)
        if suffix != ".onnx" and not meta.exists():
            raise ModelLoadError(f"{path}: its sidecar {meta} is missing (it holds the classes and preprocessing); "
                                 "rebuild with `dann-ros build-engine <model.onnx>`")
        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise ModelLoadError(f"{path}: TensorRT needs a CUDA GPU and torch sees none")
        self._torch = torch
        self._trt = trt
        try:
            if suffix == ".onnx":
                self.engine_path, self.engine, doc = load_or_build(path, precision=precision, max_batch=max_batch,
                                                                   workspace_mb=workspace_mb)
                meta = sidecar_path(self.engine_path)
            else:
                self.engine_path = path
                doc = read_sidecar(meta)
                self.engine = self._deserialize(path, meta, doc)
            self.info = ModelInfo.from_props(doc["metadata"], str(meta))
        except (MetadataError, ValueError, EngineBuildError) as exc:
            raise ModelLoadError(str(exc)) from None
        self.precision = doc["key"]["precision"]
        self.name = f"tensorrt-{self.precision}"
        self.device = torch.device("cuda", torch.cuda.current_device())
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ModelLoadError(f"{self.engine_path}: TensorRT could not create an execution context")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        missing = set(self.info.output_names) - set(self.outputs)
        if INPUT_NAME not in names or missing:
            raise ModelLoadError(f"{self.engine_path}: engine tensors {names} lack input {INPUT_NAME!r} "
                                 f"or outputs {sorted(missing)} named in {meta}")
        self.max_batch = int(self.engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])
        self._dtypes = {n: _torch_dtype(torch, trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}

    def _deserialize(self, path: Path, meta: Path, doc: dict):
        key = sidecar_key(doc, str(meta))
        gpu = gpu_info()
        here = (self._trt.__version__, gpu.name, gpu.compute_capability)
        built = (key.tensorrt_version, key.gpu_name, key.compute_capability)
        if here != built:
            raise ModelLoadError(f"{path}: built for TensorRT {built[0]} on {built[1]} (sm {built[2]}); this machine "
                                 f"has TensorRT {here[0]} on {here[1]} (sm {here[2]}); rebuild it from the ONNX "
                                 "with `dann-ros build-engine`")
        try:
            engine = self._trt.Runtime(self._trt.Logger(self._trt.Logger.WARNING)).deserialize_cuda_engine(
                path.read_bytes())
        except Exception as exc:
            raise ModelLoadError(f"{path}: TensorRT cannot deserialize it ({type(exc).__name__}: {exc})") from None
        if engine is None:
            raise ModelLoadError(f"{path}: TensorRT cannot deserialize it (corrupt or from another TensorRT)")
        return engine

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.asarray(batch)
        expected = self.info.preprocess.input_shape
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected or len(batch) == 0:
            raise ValueError(f"batch has shape {batch.shape}; the engine takes (N>=1, {expected[0]}, "
                             f"{expected[1]}, {expected[2]})")
        parts = [self._run_chunk(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.outputs}

    def _run_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device, self._dtypes[INPUT_NAME])
        if not self.context.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise ValueError(f"{self.engine_path}: input shape {tuple(x.shape)} is outside the engine's profile")
        self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
        outs = {}
        for name in self.outputs:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtypes[name], device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outs[name] = out
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.engine_path}: TensorRT execution failed (see the TensorRT log)")
        stream.synchronize()
        return {name: t.float().cpu().numpy() for name, t in outs.items()}


def _torch_dtype(torch, np_dtype) -> "torch.dtype":
    return torch.from_numpy(np.zeros(0, dtype=np_dtype)).dtype


__all__ = ["TensorRTBackend", "tensorrt_available", "INSTALL_HINT"]
