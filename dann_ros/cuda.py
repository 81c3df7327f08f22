"""CUDA through cuda-python (``cuda-bindings``): the GPU query, device buffers and streams, without torch.

On a Jetson the pip torch has no CUDA and must not replace NVIDIA's wheel, so
the robot-side runtime (TensorRT engine build and inference) takes its CUDA
from cuda-python's runtime bindings instead: ``pip install cuda-python`` (the
``[runtime]`` extra), a thin wheel over the driver that JetPack and every
GPU workstation already have. Every call returns ``(cudaError_t, *values)``;
:func:`call` turns a failure into :class:`CudaError` naming the function.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

INSTALL_HINT = "pip install cuda-python (the cuda-bindings wheel; dann_ros's [runtime] extra)"


class CudaUnavailable(RuntimeError):
    """cuda-python is not installed, or it finds no usable GPU/driver; the message says which."""


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message names the call and CUDA's error string."""


@functools.lru_cache(maxsize=1)
def cudart():
    """The CUDA runtime bindings module (``cuda.bindings.runtime``; ``cuda.cudart`` before cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # type: ignore[no-redef]
        except ImportError as exc:
            raise CudaUnavailable(f"cuda-python is not installed ({exc}); {INSTALL_HINT}") from None
    return runtime


def call(name: str, *args):
    """``cudart.<name>(*args)`` -> its values (None, one value, or a tuple); CudaError on failure."""
    rt = cudart()
    result = getattr(rt, name)(*args)
    err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(err) != 0:
        raise CudaError(f"{name} failed: {_error_string(err)} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _error_string(err) -> str:
    try:
        _, text = cudart().cudaGetErrorString(err)
        return text.decode() if isinstance(text, bytes) else str(text)
    except Exception:  # never hide the original error behind a second one
        return str(err)


def device_count() -> int:
    """GPUs the driver offers; 0 without cuda-python, without a driver or without a GPU."""
    try:
        return int(call("cudaGetDeviceCount"))
    except (CudaUnavailable, CudaError):
        return 0


def why_no_gpu() -> str | None:
    """None when a CUDA GPU is usable, else the reason (for logs and error messages)."""
    try:
        count = int(call("cudaGetDeviceCount"))
    except (CudaUnavailable, CudaError) as exc:
        return str(exc)
    return None if count > 0 else "the CUDA driver reports no GPU"


def cuda_available() -> bool:
    return why_no_gpu() is None


@dataclass(frozen=True)
class GpuInfo:
    """What a TensorRT plan depends on: Orin modules all report the name "Orin" and sm 8.7, so the
    SM count and total memory tell an AGX Orin from an Orin Nano."""

    name: str
    compute_capability: str  # "8.7"
    sm_count: int = 0
    total_memory_mb: int = 0


def gpu_info(device: int = 0) -> GpuInfo:
    """The GPU ``device`` as cuda-python sees it; CudaUnavailable naming the reason when there is none."""
    reason = why_no_gpu()
    if reason is not None:
        raise CudaUnavailable(f"no CUDA GPU usable here: {reason}")
    prop = call("cudaGetDeviceProperties", device)
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return GpuInfo(str(name), f"{prop.major}.{prop.minor}", int(prop.multiProcessorCount),
                   int(prop.totalGlobalMem) >> 20)


class _FreedOnCollect:
    """Frees its CUDA resource when garbage-collected, if ``close()`` was not called."""

    def close(self) -> None:
        raise NotImplementedError

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown or a dead context: nothing left to free
            pass


class Stream(_FreedOnCollect):
    """A dedicated non-blocking stream: TensorRT warns about (and syncs on) the legacy default stream."""

    def __init__(self) -> None:
        self._handle = None
        rt = cudart()
        self._handle = call("cudaStreamCreateWithFlags", rt.cudaStreamNonBlocking)

    @property
    def handle(self) -> int:
        """The cudaStream_t as an int (what ``execute_async_v3`` takes)."""
        return int(self._handle)

    @property
    def raw(self):
        return self._handle

    def synchronize(self) -> None:
        call("cudaStreamSynchronize", self._handle)

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            call("cudaStreamDestroy", handle)


class DeviceBuffer(_FreedOnCollect):
    """``nbytes`` of device memory (cudaMalloc), grown on demand, freed on close."""

    def __init__(self, nbytes: int = 0) -> None:
        self.ptr, self.nbytes = 0, 0
        self.reserve(nbytes)

    def reserve(self, nbytes: int) -> None:
        if nbytes <= self.nbytes:
            return
        self.close()
        self.ptr = int(call("cudaMalloc", max(int(nbytes), 1)))
        self.nbytes = int(nbytes)

    def upload(self, array: np.ndarray, stream: Stream) -> None:
        """Host -> device on ``stream`` (``array`` must stay alive until the stream is synchronised)."""
        array = np.ascontiguousarray(array)
        self.reserve(array.nbytes)
        kind = cudart().cudaMemcpyKind.cudaMemcpyHostToDevice
        call("cudaMemcpyAsync", self.ptr, array.ctypes.data, array.nbytes, kind, stream.raw)

    def download(self, out: np.ndarray, stream: Stream) -> None:
        """Device -> host into the contiguous ``out`` on ``stream``; synchronise before reading it."""
        if not out.flags["C_CONTIGUOUS"] or out.nbytes > self.nbytes:
            raise ValueError(f"download target of {out.nbytes} bytes does not fit a {self.nbytes}-byte buffer")
        kind = cudart().cudaMemcpyKind.cudaMemcpyDeviceToHost
        call("cudaMemcpyAsync", out.ctypes.data, self.ptr, out.nbytes, kind, stream.raw)

    def close(self) -> None:
        ptr, self.ptr, self.nbytes = self.ptr, 0, 0
        if ptr:
            call("cudaFree", ptr)


__all__ = ["CudaError", "CudaUnavailable", "DeviceBuffer", "GpuInfo", "INSTALL_HINT", "Stream", "cuda_available",
           "cudart", "device_count", "gpu_info", "why_no_gpu"]
