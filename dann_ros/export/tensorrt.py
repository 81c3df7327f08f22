"""ONNX -> TensorRT engine, cached next to the ONNX and rebuilt whenever what it was built for changes.

A plan runs only on the TensorRT version and GPU architecture that built it
(the field's most common complaint: engines failing after a TensorRT/JetPack
upgrade or on another GPU). So the cache key covers the ONNX bytes, the
TensorRT version, the GPU name and compute capability, the precision and the
batch range; a cached engine whose key does not match is never loaded. Each
engine gets a JSON sidecar holding its key and the model's dann_ros metadata,
so the runtime needs no ONNX file beside a deployed engine.

Written against the TensorRT 10 Python API (Builder / OnnxParser /
build_serialized_network, named I/O tensors). TensorRT cannot be installed on
this project's machines; the build path is tested where ``import tensorrt``
works (Jetson, a GPU workstation).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dann_ros.export.metadata import INPUT_NAME, ModelInfo

log = logging.getLogger(__name__)

INSTALL_HINT = ("pip install tensorrt-cu12 on a machine with the NVIDIA package index, "
                "or use JetPack's python3-libnvinfer on Jetson")
SIDECAR_FORMAT = "dann_ros.engine/1"
PRECISIONS = ("auto", "fp16", "fp32")


class TensorRTUnavailable(RuntimeError):
    """``import tensorrt`` failed: the message says how to install it."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse or build the model; the message names the file."""


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTUnavailable(f"TensorRT is not installed here ({exc}); {INSTALL_HINT}") from None
    return tensorrt


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.9"


def gpu_info(device: int = 0) -> GpuInfo:
    """The GPU an engine is built for: torch.cuda if it sees one, else cuda-python, else pycuda."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return GpuInfo(torch.cuda.get_device_name(device), f"{major}.{minor}")
    except ImportError:
        pass
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        err, prop = cudart.cudaGetDeviceProperties(device)
        if prop is not None and int(err) == 0:
            name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
            return GpuInfo(name, f"{prop.major}.{prop.minor}")
    except ImportError:
        pass
    try:
        import pycuda.driver as drv

        drv.init()
        dev = drv.Device(device)
        major, minor = dev.compute_capability()
        return GpuInfo(dev.name(), f"{major}.{minor}")
    except ImportError:
        pass
    except Exception as exc:  # pycuda.driver.Error: no driver / no device
        log.debug("pycuda sees no GPU: %s", exc)
    raise EngineBuildError(f"no CUDA GPU {device} found (checked torch.cuda, cuda-python, pycuda); "
                           "TensorRT engines are built on the GPU that will run them")


@dataclass(frozen=True)
class EngineKey:
    """Everything a built plan depends on; any change means a rebuild."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str  # resolved: "fp16" or "fp32", never "auto"
    max_batch: int

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def engine_paths(onnx_path: Path, key: EngineKey, out_dir: Path | None = None) -> tuple[Path, Path]:
    """``<out_dir>/<onnx stem>.<digest[:16]>.engine`` and its ``.json`` sidecar."""
    folder = Path(out_dir) if out_dir is not None else onnx_path.parent
    engine = folder / f"{onnx_path.stem}.{key.digest()[:16]}.engine"
    return engine, engine.with_suffix(".json")


def sidecar_path(engine_path: Path) -> Path:
    return Path(engine_path).with_suffix(".json")


def onnx_metadata(onnx_path: Path) -> dict[str, str]:
    """The dann_ros metadata props of an exported ONNX, validated by ModelInfo."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props if p.key.startswith("dann_ros.")}
    ModelInfo.from_props(props, str(onnx_path))  # raises MetadataError naming the field
    return props


def write_sidecar(path: Path, key: EngineKey, metadata: dict[str, str], onnx_path: Path,
                  workspace_mb: int) -> None:
    doc = {"format": SIDECAR_FORMAT, "digest": key.digest(), "key": dataclasses.asdict(key),
           "onnx": str(onnx_path), "workspace_mb": workspace_mb, "metadata": metadata}
    _write_atomic(path, json.dumps(doc, indent=2, sort_keys=True).encode())


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar as a dict; ValueError naming the file and field when it is not one of ours."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable engine sidecar ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: field 'format' is {found!r}, expected {SIDECAR_FORMAT!r}")
    for field in ("key", "metadata"):
        if not isinstance(doc.get(field), dict):
            raise ValueError(f"{path}: field {field!r} is missing")
    return doc


def sidecar_key(doc: dict[str, Any], source: str) -> EngineKey:
    try:
        return EngineKey(**doc["key"])
    except TypeError as exc:
        raise ValueError(f"{source}: field 'key' does not describe an engine ({exc})") from None


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def resolve_precision(trt, builder, precision: str, gpu: GpuInfo) -> str:
    """'auto' -> fp16 where the GPU has fast FP16 (and this TensorRT still has the FP16 flag), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    has_flag = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 11 drops weak typing (strongly typed only)
    if precision == "fp16" and not has_flag:
        raise EngineBuildError(f"TensorRT {trt.__version__} has no BuilderFlag.FP16; export an FP16 ONNX instead")
    if precision != "auto":
        return precision
    fast = getattr(builder, "platform_has_fast_fp16", None)  # deprecated in late 10.x
    if fast is None:  # same rule by compute capability: 5.3, 6.0, 6.2 and 7.0 onwards
        major, minor = (int(v) for v in gpu.compute_capability.split("."))
        fast = (major, minor) in ((5, 3), (6, 0), (6, 2)) or major >= 7
    return "fp16" if has_flag and fast else "fp32"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dann_ros" / "engines"


def build_engine(onnx_path: str | Path, out_dir: str | Path | None = None, precision: str = "auto",
                 max_batch: int = 8, workspace_mb: int = 1024, force: bool = False) -> Path:
    """Path of an engine for ``onnx_path`` on this GPU: the cached one if its key matches, else a new build."""
    return load_or_build(onnx_path, out_dir, precision, max_batch, workspace_mb, force)[0]


def load_or_build(onnx_path: str | Path, out_dir: str | Path | None = None, precision: str = "auto",
                  max_batch: int = 8, workspace_mb: int = 1024, force: bool = False):
    """(engine path, deserialized ICudaEngine, sidecar dict): the runtime deserializes only once."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path}: ONNX file not found")
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    trt = import_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    gpu = gpu_info()
    key = EngineKey(file_sha256(onnx_path), trt.__version__, gpu.name, gpu.compute_capability,
                    resolve_precision(trt, builder, precision, gpu), int(max_batch))
    if out_dir is None and not os.access(onnx_path.parent, os.W_OK):  # e.g. an installed share/ folder
        out_dir = default_cache_dir()
    engine_path, meta_path = engine_paths(onnx_path, key, Path(out_dir) if out_dir is not None else None)
    runtime = trt.Runtime(logger)
    if engine_path.exists() and not force:
        cached = _load_cached(runtime, engine_path, meta_path, key)
        if cached is not None:
            log.info("engine cache hit: %s", engine_path)
            return engine_path, cached[0], cached[1]
    metadata = onnx_metadata(onnx_path)
    info = ModelInfo.from_props(metadata, str(onnx_path))
    plan = _build_plan(trt, logger, builder, onnx_path, info, key, engine_path.parent, workspace_mb)
    _write_atomic(engine_path, plan)
    write_sidecar(meta_path, key, metadata, onnx_path, workspace_mb)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineBuildError(f"{engine_path}: TensorRT cannot deserialize the engine it just built")
    log.info("built %s (%s, batch 1..%d, %s)", engine_path, key.precision, key.max_batch, gpu.name)
    return engine_path, engine, read_sidecar(meta_path)


def _load_cached(runtime, engine_path: Path, meta_path: Path, key: EngineKey):
    """(engine, sidecar) when the cached engine matches ``key`` and deserializes; None means rebuild."""
    try:
        doc = read_sidecar(meta_path)
        cached_key = sidecar_key(doc, str(meta_path))
    except (OSError, ValueError) as exc:
        log.warning("%s: %s; rebuilding the engine", engine_path, exc)
        return None
    if cached_key != key:
        changed = [f.name for f in dataclasses.fields(key) if getattr(key, f.name) != getattr(cached_key, f.name)]
        log.warning("%s: cache key differs in %s; rebuilding (never loading a mismatched plan)",
                    engine_path, ", ".join(changed))
        return None
    try:
        engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    except Exception as exc:  # TensorRT raises on some corrupt plans, returns None on others
        engine, reason = None, f"{type(exc).__name__}: {exc}"
    else:
        reason = "deserialize_cuda_engine returned None"
    if engine is None:
        log.warning("%s: cached engine is corrupt (%s); rebuilding it", engine_path, reason)
        return None
    return engine, doc


def _build_plan(trt, logger, builder, onnx_path: Path, info: ModelInfo, key: EngineKey, folder: Path,
                workspace_mb: int) -> memoryview:
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if key.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    c, h, w = info.preprocess.input_shape
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, c, h, w), (max(1, key.max_batch // 2), c, h, w), (key.max_batch, c, h, w))
    config.add_optimization_profile(profile)
    # timing cache: device- and version-specific, shared by every model built in this folder
    cache_file = folder / f"tensorrt-{key.tensorrt_version}-sm{key.compute_capability.replace('.', '')}.timing"
    cache = _timing_cache(config, cache_file)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    if cache is not None:
        try:
            _write_atomic(cache_file, memoryview(cache.serialize()))
        except Exception as exc:  # a cache that cannot be saved only slows the next build
            log.warning("%s: timing cache not saved (%s)", cache_file, exc)
    return memoryview(plan)


def _timing_cache(config, cache_file: Path):
    cache = None
    if cache_file.exists():
        try:
            cache = config.create_timing_cache(cache_file.read_bytes())
        except Exception as exc:
            log.warning("%s: unreadable timing cache (%s)", cache_file, exc)
        if cache is None:
            log.warning("%s: timing cache not usable; starting an empty one", cache_file)
    if cache is None:
        cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        log.warning("%s: timing cache rejected; building without it", cache_file)
        return None
    return cache


def add_build_engine_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("build-engine", help="build (or reuse the cached) TensorRT engine for an ONNX model")
    p.add_argument("onnx", help="model.onnx written by `dann-ros export`")
    p.add_argument("--out-dir", help="where the engine, its .json sidecar and the timing cache go (default: "
                                     "next to the ONNX, or ~/.cache/dann_ros/engines where that is read-only)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: FP16 where the GPU has fast FP16, else FP32")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--force", action="store_true", help="rebuild even when a matching engine is cached")
    p.set_defaults(func=_run_build_engine)
    return p


def _run_build_engine(args: argparse.Namespace) -> int:
    path = build_engine(args.onnx, out_dir=args.out_dir, precision=args.precision, max_batch=args.max_batch,
                        workspace_mb=args.workspace_mb, force=args.force)
    print(path)
    return 0
