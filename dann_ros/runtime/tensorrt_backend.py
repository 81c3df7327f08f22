"""TensorRT backend: a cached, parity-checked engine (see dann_ros.export.tensorrt) behind the Backend protocol.

CUDA comes from cuda-python (dann_ros.cuda), not torch: a pip torch on a
Jetson has no CUDA, and the robot-side install has no torch at all. Inference
runs on a dedicated non-blocking stream (TensorRT warns about, and adds
synchronisations on, the legacy default stream) with device buffers that
grow once to the largest batch seen. Written against the TensorRT 10/11
named-tensor API (set_input_shape / set_tensor_address / execute_async_v3).

Every engine this module builds is checked against ONNX Runtime on real
frames by the export's parity rules (dann_ros.export.parity) before it is
cached; an engine that fails is refused and never written.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from dann_ros.cuda import CudaError, CudaUnavailable, DeviceBuffer, Stream
from dann_ros.export.metadata import INPUT_NAME, MetadataError, ModelInfo, check_io
from dann_ros.export.parity import TOLERANCES, compare, parity_frames_path, read_peak_px
from dann_ros.export.tensorrt import (
    PRECISIONS,
    EngineBuildError,
    EngineKey,
    TensorRTUnavailable,
    gpu_info,
    import_tensorrt,
    load_or_build,
    read_sidecar,
    sidecar_key,
    sidecar_path,
)
from dann_ros.runtime.backend_base import ModelLoadError

log = logging.getLogger(__name__)


def tensorrt_unavailable_reason() -> str | None:
    """None when a supported TensorRT imports here, else why not (with the install hint)."""
    try:
        import_tensorrt()
    except TensorRTUnavailable as exc:
        return str(exc)
    return None


def tensorrt_available() -> bool:
    return tensorrt_unavailable_reason() is None


class EngineRunner:
    """One execution context of a deserialized engine, its stream and its device buffers."""

    def __init__(self, trt, engine, source: str) -> None:
        self.source = source
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise ModelLoadError(f"{source}: TensorRT could not create an execution context (GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if INPUT_NAME not in names:
            raise ModelLoadError(f"{source}: engine tensors {names} lack the input {INPUT_NAME!r}")
        self.names = names
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.max_batch = int(engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.stream = Stream()
        self.buffers = {n: DeviceBuffer() for n in names}

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        parts = [self._run_chunk(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.outputs}

    def _run_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(chunk, dtype=self.dtypes[INPUT_NAME])
        if not self.context.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise ValueError(f"{self.source}: input shape {tuple(x.shape)} is outside the engine's profile")
        self.buffers[INPUT_NAME].upload(x, self.stream)
        self.context.set_tensor_address(INPUT_NAME, self.buffers[INPUT_NAME].ptr)
        host = {}
        for name in self.outputs:
            out = np.empty(tuple(self.context.get_tensor_shape(name)), self.dtypes[name])
            self.buffers[name].reserve(out.nbytes)
            self.context.set_tensor_address(name, self.buffers[name].ptr)
            host[name] = out
        if not self.context.execute_async_v3(self.stream.handle):
            raise RuntimeError(f"{self.source}: TensorRT execution failed (see the TensorRT log)")
        for name, out in host.items():
            self.buffers[name].download(out, self.stream)
        self.stream.synchronize()  # also keeps ``x`` alive until its copy is done
        return {name: out.astype(np.float32, copy=False) for name, out in host.items()}

    def close(self) -> None:
        for buffer in self.buffers.values():
            buffer.close()
        self.stream.close()


# ------------------------------------------------------------------------------ parity check

def parity_frames(onnx_path: Path, info: ModelInfo, source: str | Path | None = None,
                  limit: int = 32) -> tuple[np.ndarray, str]:
    """Prepared frames for the engine check: ``source`` (an .npz with ``frames``, or a rosbag2 bag),
    else the frames the ONNX export was checked on (``<model>.parity.npz``), else random pixels (warned)."""
    shape = info.preprocess.input_shape
    path = Path(source) if source is not None else parity_frames_path(onnx_path)
    if source is None and not path.exists():
        log.warning("%s: no %s beside the ONNX (exported by an older dann_ros?); checking the engine on random "
                    "frames only. Pass real ones with --frames <bag or .npz>", onnx_path, path.name)
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (16, *shape), dtype=np.uint8), "random frames"
    if path.suffix == ".npz":
        with np.load(path) as data:
            frames = data["frames"][:limit]
            origin = str(data["origin"]) if "origin" in data else str(path)
        if frames.ndim != 4 or tuple(frames.shape[1:]) != shape:
            raise EngineBuildError(f"{path}: frames have shape {frames.shape}; the model takes (N, {shape})")
        return frames, f"{origin} ({path.name})"
    from dann_ros.data.bags import iter_frames

    frames = []
    for frame in iter_frames(path):
        frames.append(info.preprocess.prepare(frame.image)[0])
        if len(frames) >= limit:
            break
    if not frames:
        raise EngineBuildError(f"{path}: no image frames to check the engine on")
    return np.stack(frames), f"{len(frames)} frames of {path}"


def make_verifier(onnx_path: Path, frames_source: str | Path | None = None):
    """verify(engine, info, key): engine vs ONNX Runtime (CPU) on real frames; EngineBuildError on failure."""

    def verify(engine, info: ModelInfo, key: EngineKey) -> dict:
        from dann_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

        frames, origin = parity_frames(onnx_path, info, frames_source)
        batch = np.ascontiguousarray(frames, dtype=np.float32)
        want = OnnxRuntimeBackend(onnx_path, device="cpu").run(batch)
        runner = EngineRunner(import_tensorrt(), engine, str(onnx_path))
        try:
            got = runner.run(batch)
        finally:
            runner.close()
        names = info.output_names
        tolerance = TOLERANCES[key.precision]
        report = compare([want[n] for n in names], [got[n] for n in names], info.task, origin, tolerance.box_px,
                         read_peak_px(onnx_path))
        failures = report.failures(tolerance)
        if failures:
            raise EngineBuildError(f"{onnx_path}: the {key.precision} TensorRT engine disagrees with ONNX Runtime on "
                                   f"{origin}: {'; '.join(failures)}; the engine was refused (not cached)")
        log.info("engine parity vs ONNX Runtime on %s", report.summary())
        return {**report.to_dict(), "tolerance": tolerance.max_abs_diff, "box_tolerance_px": tolerance.box_px}

    return verify


# ------------------------------------------------------------------------------ backend

class TensorRTBackend:
    """``path``: a dann_ros .onnx (engine built or loaded from the cache) or an .engine/.plan with its .json."""

    def __init__(self, path: str | Path, precision: str = "auto", max_batch: int = 8, workspace_mb: int = 1024,
                 opt_batch: int = 1, frames: str | Path | None = None) -> None:
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
        try:
            if suffix == ".onnx":
                result = load_or_build(path, precision=precision, max_batch=max_batch, workspace_mb=workspace_mb,
                                       opt_batch=opt_batch, verify=make_verifier(path, frames))
                self.engine_path, engine, doc = result.engine_path, result.engine, result.sidecar
                self._runtime = result.runtime  # kept: a Runtime must outlive its engines
                meta = sidecar_path(self.engine_path)
            else:
                self.engine_path = path
                doc = read_sidecar(meta)
                self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
                engine = self._deserialize(trt, self._runtime, path, meta, doc)
            self.info = ModelInfo.from_props(doc["metadata"], str(meta))
        except (MetadataError, ValueError, EngineBuildError, CudaError, CudaUnavailable) as exc:
            raise ModelLoadError(str(exc)) from None
        self.precision = doc["key"]["precision"]
        self.parity = doc.get("parity")
        self.name = f"tensorrt-{self.precision}"
        self.runner = EngineRunner(trt, engine, str(self.engine_path))
        shapes = {n: list(engine.get_tensor_shape(n)) for n in self.runner.names}  # -1: a dynamic dimension
        outputs = {n: shapes[n] for n in self.runner.outputs}
        try:
            check_io(self.info, {n: d for n, d in shapes.items() if n not in outputs}, outputs,
                     f"{self.engine_path} (metadata in {meta})")
        except MetadataError as exc:
            self.runner.close()
            raise ModelLoadError(str(exc)) from None
        self.max_batch = self.runner.max_batch

    @staticmethod
    def _deserialize(trt, runtime, path: Path, meta: Path, doc: dict):
        key = sidecar_key(doc, str(meta))
        gpu = gpu_info()
        here = (trt.__version__, gpu.name, gpu.compute_capability, gpu.sm_count, gpu.total_memory_mb)
        built = (key.tensorrt_version, key.gpu_name, key.compute_capability, key.sm_count, key.total_memory_mb)
        if here != built:
            raise ModelLoadError(f"{path}: built for TensorRT {built[0]} on {built[1]} (sm {built[2]}, {built[3]} SMs, "
                                 f"{built[4]} MiB); this machine has TensorRT {here[0]} on {here[1]} (sm {here[2]}, "
                                 f"{here[3]} SMs, {here[4]} MiB); rebuild it from the ONNX with "
                                 "`dann-ros build-engine`")
        if doc.get("parity") is None:
            log.warning("%s: this engine was never checked against ONNX Runtime; rebuild it with "
                        "`dann-ros build-engine --force <model.onnx>`", path)
        try:
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
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
        return self.runner.run(batch)

    def close(self) -> None:
        """Free the device buffers and the stream now (the node's cleanup transition)."""
        self.runner.close()


# ------------------------------------------------------------------------------ CLI

def add_build_engine_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("build-engine", help="build (or reuse the cached) TensorRT engine for an ONNX model, "
                                                   "checked against ONNX Runtime on real frames")
    p.add_argument("onnx", help="model.onnx written by `dann-ros export` (--fp16 for FP16 on TensorRT 11)")
    p.add_argument("--out-dir", help="where the engine, its .json sidecar and the timing cache go (default: "
                                     "next to the ONNX, or ~/.cache/dann_ros/engines where that is read-only)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: FP16 where the GPU has fast FP16 (TensorRT 10) or the ONNX is FP16, else FP32")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--opt-batch", type=int, default=1, help="the batch TensorRT tunes for (the node runs 1)")
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--frames", help="real frames for the parity check: a rosbag2 bag or an .npz with 'frames' "
                                    "(default: <model>.parity.npz written by the export)")
    p.add_argument("--force", action="store_true", help="rebuild even when a matching engine is cached")
    p.set_defaults(func=_run_build_engine)
    return p


def _run_build_engine(args: argparse.Namespace) -> int:
    onnx = Path(args.onnx)
    result = load_or_build(onnx, out_dir=args.out_dir, precision=args.precision, max_batch=args.max_batch,
                           workspace_mb=args.workspace_mb, force=args.force, opt_batch=args.opt_batch,
                           verify=make_verifier(onnx, args.frames))
    parity = result.sidecar.get("parity") or {}
    key = result.sidecar["key"]
    print(result.engine_path)
    print(f"{'built' if result.built else 'cached'}: {key['precision']}, batch 1..{key['max_batch']} "
          f"(opt {key['opt_batch']}), TensorRT {key['tensorrt_version']} on {key['gpu_name']} "
          f"({key['sm_count']} SMs); parity vs ONNX Runtime on {parity.get('frames_from', '?')}: "
          f"max |diff| {parity.get('max_abs_diff', float('nan')):.2e}, top-1 agreement "
          f"{100 * parity.get('top1_agreement', float('nan')):.2f}%")
    return 0


__all__ = ["EngineRunner", "TensorRTBackend", "add_build_engine_parser", "make_verifier", "parity_frames",
           "tensorrt_available", "tensorrt_unavailable_reason"]
