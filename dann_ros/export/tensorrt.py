"""ONNX -> TensorRT engine, cached next to the ONNX and rebuilt whenever what it was built for changes.

A plan runs only on the TensorRT version and GPU that built it (the field's
most common complaint: engines failing after a TensorRT/JetPack upgrade or on
another GPU). Every Orin module reports the name "Orin" and sm 8.7, so the
cache key covers the ONNX bytes, the TensorRT version, the GPU name, compute
capability, SM count and total memory, the precision, the batch profile, the
workspace size and this module's own build recipe version; a cached engine
whose key does not match is never loaded. Each engine gets a JSON sidecar
holding its key, the model's dann_ros metadata and the parity check it passed,
so the runtime needs no ONNX file beside a deployed engine.

TensorRT 10.x and 11.x only (named tensors, explicit batch): 8.x (JetPack 6.0
and older) is refused with a clear message. TensorRT 11 removed weak typing
(BuilderFlag.FP16): FP16 engines come from an FP16 ONNX (``dann-ros export
--fp16``), built as a strongly typed network. CUDA (the GPU query) comes from
cuda-python, never torch. Written against the TensorRT 10/11 Python API
documentation; TensorRT cannot be installed on this project's machines, so
the real build path is tested where ``import tensorrt`` works.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dann_ros.atomic_io import write_bytes
from dann_ros.cuda import CudaUnavailable, GpuInfo
from dann_ros.cuda import INSTALL_HINT as CUDA_HINT
from dann_ros.cuda import gpu_info as _cuda_gpu_info
from dann_ros.export.metadata import INPUT_NAME, ModelInfo

log = logging.getLogger(__name__)

INSTALL_HINT = ("on Jetson, TensorRT comes with JetPack (python3-libnvinfer, already installed): a venv sees it only "
                "when created with `python3 -m venv --system-site-packages` (or with PYTHONPATH=/usr/lib/python3/"
                "dist-packages); on an x86 GPU workstation: pip install tensorrt-cu12 (tensorrt-cu13 for CUDA 13 "
                "drivers) from the NVIDIA package index")
SIDECAR_FORMAT = "dann_ros.engine/2"
PRECISIONS = ("auto", "fp16", "fp32")
SUPPORTED_MAJORS = (10, 11)
# Bump whenever _build_plan changes what it builds (flags, typing, profiles): old engines are then rebuilt.
RECIPE_VERSION = 2


class TensorRTUnavailable(RuntimeError):
    """``import tensorrt`` failed or found an unsupported version: the message says what to install."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse, build or verify the model; the message names the file."""


def import_tensorrt():
    """The tensorrt module, checked to be 10.x or 11.x."""
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTUnavailable(f"TensorRT is not installed here ({exc}); {INSTALL_HINT}") from None
    tensorrt_major(tensorrt)
    return tensorrt


def tensorrt_major(trt) -> int:
    version = str(getattr(trt, "__version__", "unknown"))
    try:
        major = int(version.split(".", 1)[0])
    except ValueError:
        major = -1
    if major not in SUPPORTED_MAJORS:
        where = getattr(trt, "__file__", "?")
        raise TensorRTUnavailable(
            f"TensorRT {version} ({where}) is not supported: dann_ros needs TensorRT 10.x or 11.x (named I/O "
            "tensors, explicit batch). TensorRT 8.x (JetPack 5 and 6.0) builds implicit-batch networks that fail "
            "with confusing ONNX parser errors: upgrade to JetPack 6.1/6.2 (TensorRT 10.3) or JetPack 7, or on a "
            "workstation pip install tensorrt-cu12")
    return major


def gpu_info(device: int = 0) -> GpuInfo:
    """The GPU an engine is built for (cuda-python); EngineBuildError naming the reason when there is none."""
    try:
        return _cuda_gpu_info(device)
    except CudaUnavailable as exc:
        raise EngineBuildError(f"{exc}. TensorRT engines are built on the GPU that will run them; CUDA comes "
                               f"from cuda-python: {CUDA_HINT}") from None


@dataclass(frozen=True)
class EngineKey:
    """Everything a built plan depends on; any change means a rebuild."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    sm_count: int
    total_memory_mb: int
    precision: str  # resolved: "fp16" or "fp32", never "auto"
    max_batch: int
    opt_batch: int
    workspace_mb: int
    recipe: int = RECIPE_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()

    def mismatch(self, other: EngineKey) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]


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


def timing_cache_path(folder: Path, key: EngineKey) -> Path:
    """One timing cache per TensorRT version and physical GPU kind (not just compute capability)."""
    gpu = hashlib.sha256(json.dumps([key.gpu_name, key.compute_capability, key.sm_count,
                                     key.total_memory_mb]).encode()).hexdigest()[:12]
    return folder / f"tensorrt-{key.tensorrt_version}-sm{key.compute_capability.replace('.', '')}-{gpu}.timing"


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
                  parity: dict | None = None) -> None:
    doc = {"format": SIDECAR_FORMAT, "digest": key.digest(), "key": dataclasses.asdict(key),
           "onnx": str(onnx_path), "metadata": metadata, "parity": parity}
    write_bytes(path, json.dumps(doc, indent=2, sort_keys=True).encode())


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar as a dict; ValueError naming the file and field when it is not one of ours."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable engine sidecar ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: field 'format' is {found!r}, expected {SIDECAR_FORMAT!r} (an engine from "
                         "another dann_ros: rebuild it with `dann-ros build-engine <model.onnx>`)")
    for field in ("key", "metadata"):
        if not isinstance(doc.get(field), dict):
            raise ValueError(f"{path}: field {field!r} is missing")
    return doc


def sidecar_key(doc: dict[str, Any], source: str) -> EngineKey:
    try:
        return EngineKey(**doc["key"])
    except TypeError as exc:
        raise ValueError(f"{source}: field 'key' does not describe an engine ({exc})") from None


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def has_fast_fp16(gpu: GpuInfo) -> bool:
    """Fast FP16 by compute capability (5.3, 6.0, 6.2 and 7.0 onwards): Builder.platform_has_fast_fp16
    is deprecated, and asking needs a Builder, which a cache hit should never create."""
    major, minor = (int(v) for v in gpu.compute_capability.split("."))
    return (major, minor) in ((5, 3), (6, 0), (6, 2)) or major >= 7


def resolve_precision(trt_major: int, precision: str, gpu: GpuInfo, onnx_precision: str = "fp32") -> str:
    """'auto' | 'fp16' | 'fp32' -> what the engine will compute in, given TensorRT's major version and
    the ONNX's own precision (metadata). TensorRT 11 has no BuilderFlag.FP16: FP16 needs an FP16 ONNX."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if onnx_precision == "fp16":
        if precision == "fp32":
            raise EngineBuildError("this ONNX was exported in FP16 (dann-ros export --fp16); an FP32 engine needs "
                                   "the FP32 export")
        return "fp16"
    if precision == "fp32" or (precision == "auto" and not has_fast_fp16(gpu)):
        return "fp32"
    if trt_major >= 11:
        if precision == "fp16":
            raise EngineBuildError("TensorRT 11 has no BuilderFlag.FP16 (strongly typed networks only): export "
                                   "an FP16 ONNX with `dann-ros export --fp16` and build the engine from that")
        log.warning("TensorRT 11 builds this FP32 ONNX as an FP32 engine (no BuilderFlag.FP16 any more); for FP16 "
                    "export the model with `dann-ros export --fp16` and build from that file")
        return "fp32"
    return "fp16"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dann_ros" / "engines"


@dataclass
class BuildResult:
    engine_path: Path
    engine: Any  # tensorrt.ICudaEngine, deserialized once
    sidecar: dict[str, Any]
    built: bool  # False: a cache hit
    runtime: Any = None  # the tensorrt.Runtime that deserialized ``engine``: it must outlive the engine


# verify(engine, info, key) -> the parity report (a dict for the sidecar), or raises EngineBuildError
Verifier = Callable[[Any, ModelInfo, EngineKey], dict]


def build_engine(onnx_path: str | Path, out_dir: str | Path | None = None, precision: str = "auto",
                 max_batch: int = 8, workspace_mb: int = 1024, force: bool = False, opt_batch: int = 1,
                 verify: Verifier | None = None) -> Path:
    """Path of an engine for ``onnx_path`` on this GPU: the cached one if its key matches, else a new build."""
    return load_or_build(onnx_path, out_dir, precision, max_batch, workspace_mb, force, opt_batch, verify).engine_path


def load_or_build(onnx_path: str | Path, out_dir: str | Path | None = None, precision: str = "auto",
                  max_batch: int = 8, workspace_mb: int = 1024, force: bool = False, opt_batch: int = 1,
                  verify: Verifier | None = None) -> BuildResult:
    """The engine for ``onnx_path``: from the cache when its key matches, else built, verified, then cached.

    Order matters on a robot: TensorRT version and GPU are checked first, a Builder is created only
    on a cache miss, and an engine is written to the cache only after ``verify`` accepted it.
    ``opt_batch`` (default 1, the node's batch) is the batch TensorRT tunes its kernels for.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path}: ONNX file not found")
    if max_batch < 1 or not 1 <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= opt_batch ({opt_batch}) <= max_batch ({max_batch})")
    if workspace_mb < 1:
        raise ValueError(f"workspace_mb must be positive, got {workspace_mb}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    trt = import_tensorrt()
    major = tensorrt_major(trt)
    gpu = gpu_info()
    metadata = onnx_metadata(onnx_path)
    info = ModelInfo.from_props(metadata, str(onnx_path))
    key = EngineKey(file_sha256(onnx_path), trt.__version__, gpu.name, gpu.compute_capability, gpu.sm_count,
                    gpu.total_memory_mb, resolve_precision(major, precision, gpu, info.precision), int(max_batch),
                    int(opt_batch), int(workspace_mb))
    if out_dir is None and not os.access(onnx_path.parent, os.W_OK):  # e.g. an installed share/ folder
        out_dir = default_cache_dir()
    engine_path, meta_path = engine_paths(onnx_path, key, Path(out_dir) if out_dir is not None else None)
    logger = _logger(trt)
    runtime = trt.Runtime(logger)
    if engine_path.exists() and not force:
        cached = _load_cached(runtime, engine_path, meta_path, key)
        if cached is not None:
            engine, doc = cached
            if doc.get("parity") is None and verify is not None:  # cached by a build that was not checked
                doc["parity"] = verify(engine, info, key)
                write_sidecar(meta_path, key, doc["metadata"], onnx_path, doc["parity"])
            log.info("engine cache hit: %s", engine_path)
            return BuildResult(engine_path, engine, doc, built=False, runtime=runtime)
    builder = trt.Builder(logger)
    plan = _build_plan(trt, major, logger, builder, onnx_path, info, key, engine_path.parent)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineBuildError(f"{engine_path}: TensorRT cannot deserialize the engine it just built")
    parity = None
    if verify is not None:
        parity = verify(engine, info, key)  # raises EngineBuildError: nothing is written
    else:
        log.warning("%s: built without a parity check against ONNX Runtime", engine_path)
    write_bytes(engine_path, plan)
    write_sidecar(meta_path, key, metadata, onnx_path, parity)
    log.info("built %s (%s, batch 1..%d, opt %d, %s, %d SMs)", engine_path, key.precision, key.max_batch,
             key.opt_batch, gpu.name, gpu.sm_count)
    return BuildResult(engine_path, engine, read_sidecar(meta_path), built=True, runtime=runtime)


def _load_cached(runtime, engine_path: Path, meta_path: Path, key: EngineKey):
    """(engine, sidecar) when the cached engine matches ``key`` and deserializes; None means rebuild."""
    try:
        doc = read_sidecar(meta_path)
        cached_key = sidecar_key(doc, str(meta_path))
    except (OSError, ValueError) as exc:
        log.warning("%s: %s; rebuilding the engine", engine_path, exc)
        return None
    if cached_key != key:
        log.warning("%s: cache key differs in %s; rebuilding (never loading a mismatched plan)",
                    engine_path, ", ".join(key.mismatch(cached_key)))
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


def _network_flags(trt, strongly_typed: bool) -> int:
    if not strongly_typed:
        return 0  # TensorRT 10: explicit batch is the only mode, no flag needed
    flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)  # accepted and ignored by 11.x, where every network is typed


def _build_plan(trt, major: int, logger, builder, onnx_path: Path, info: ModelInfo, key: EngineKey,
                folder: Path) -> memoryview:
    strongly_typed = major >= 11 or info.precision == "fp16"  # an FP16 ONNX carries its types in the graph
    network = builder.create_network(_network_flags(trt, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(key.workspace_mb) << 20)
    if key.precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)  # TensorRT 10 weak typing (deprecated in 10.12, gone in 11)
    c, h, w = info.preprocess.input_shape
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, c, h, w), (key.opt_batch, c, h, w), (key.max_batch, c, h, w))
    config.add_optimization_profile(profile)
    cache_file = timing_cache_path(folder, key)
    cache = _timing_cache(config, cache_file)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    if cache is not None:
        try:
            write_bytes(cache_file, memoryview(cache.serialize()))
        except Exception as exc:  # a cache that cannot be saved only slows the next build
            log.warning("%s: timing cache not saved (%s)", cache_file, exc)
    return memoryview(plan)


def _timing_cache(config, cache_file: Path):
    """The saved timing cache, or a fresh one that replaces it after the build when it is unreadable or
    rejected (e.g. written by another GPU): a bad cache file is refreshed, never kept forever."""
    if cache_file.exists():
        try:
            cache = config.create_timing_cache(cache_file.read_bytes())
        except Exception as exc:
            cache, reason = None, str(exc)
        else:
            reason = "TensorRT could not read it"
        if cache is not None and config.set_timing_cache(cache, False):
            return cache
        if cache is not None:
            reason = "TensorRT rejected it (another GPU or TensorRT?)"
        log.warning("%s: timing cache not usable (%s); building with a fresh one that will replace it",
                    cache_file, reason)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        log.warning("%s: TensorRT refused an empty timing cache; building without one", cache_file)
        return None
    return cache
