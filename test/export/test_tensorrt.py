"""TensorRT engine build, cache and runtime.

TensorRT cannot be installed on this project's machines, so the tests that
build and run real engines skip with the reason; they run wherever
``import tensorrt`` works and cuda-python sees a GPU. The cache logic, the
version and precision rules, error messages and sidecar handling are tested
everywhere (the build bookkeeping against a small fake ``tensorrt`` module,
which checks our bookkeeping and call order, not TensorRT's API); the GPU
query runs against the real cuda-python here (no driver, no GPU).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

import dann_ros.export.tensorrt as trt_export
from dann_ros import cuda
from dann_ros.export.metadata import INPUT_NAME, ModelInfo
from dann_ros.export.parity import TOLERANCES, Tolerance, parity_frames_path
from dann_ros.export.tensorrt import (
    EngineBuildError,
    EngineKey,
    GpuInfo,
    TensorRTUnavailable,
    build_engine,
    engine_paths,
    load_or_build,
    onnx_metadata,
    read_sidecar,
    resolve_precision,
    timing_cache_path,
    write_sidecar,
)
from dann_ros.runtime.backends import ModelLoadError, OnnxRuntimeBackend, open_backend
from dann_ros.runtime.tensorrt_backend import TensorRTBackend, tensorrt_available

NO_TRT = "TensorRT is not installed here (cannot be installed on this project's machines)"
KEY = EngineKey("ab" * 32, "10.8.0", "NVIDIA H100 80GB HBM3", "9.0", 132, 81559, "fp16", 8, 1, 1024)
AGX_ORIN = GpuInfo("Orin", "8.7", 16, 62841)
ORIN_NANO = GpuInfo("Orin", "8.7", 8, 7620)


# ---------------------------------------------------------------- everywhere

def test_missing_tensorrt_error_has_install_hint(tiny_onnx, monkeypatch, capsys):
    from dann_ros.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    assert not tensorrt_available()
    with pytest.raises(TensorRTUnavailable) as err:
        build_engine(tiny_onnx)
    text = str(err.value)
    assert "pip install tensorrt-cu12" in text and "python3-libnvinfer" in text
    assert "--system-site-packages" in text  # JetPack's TensorRT is there: the venv must see it
    with pytest.raises(TensorRTUnavailable, match="tensorrt-cu12"):
        TensorRTBackend(tiny_onnx)
    with pytest.raises(ModelLoadError, match="system-site-packages"):
        open_backend(tiny_onnx, backend="tensorrt")
    assert main(["build-engine", str(tiny_onnx)]) == 2
    assert "pip install tensorrt-cu12" in capsys.readouterr().err


@pytest.mark.parametrize("version", ["8.6.2", "8.5.2.2", "9.3.0", "12.0.0"])
def test_unsupported_tensorrt_versions_are_refused(version, tiny_onnx, monkeypatch):
    trt = _fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    with pytest.raises(TensorRTUnavailable, match=rf"TensorRT {version} .*needs TensorRT 10.x or 11.x"):
        build_engine(tiny_onnx)
    assert not trt.log.builders  # refused before any Builder
    assert not tensorrt_available()


def test_cache_key_changes_with_every_field():
    digests = {KEY.digest()}
    changed = {"onnx_sha256": "cd" * 32, "tensorrt_version": "10.9.0", "gpu_name": "Orin",
               "compute_capability": "8.7", "sm_count": 16, "total_memory_mb": 7620, "precision": "fp32",
               "max_batch": 16, "opt_batch": 4, "workspace_mb": 2048, "recipe": KEY.recipe + 1}
    assert set(changed) == {f.name for f in dataclasses.fields(EngineKey)}
    for field, value in changed.items():
        digests.add(dataclasses.replace(KEY, **{field: value}).digest())
    assert len(digests) == len(changed) + 1
    assert KEY.digest() == EngineKey(**dataclasses.asdict(KEY)).digest()  # stable


def test_orin_modules_get_their_own_engines_and_timing_caches(tmp_path):
    """Every Orin says "Orin", sm 8.7: an AGX engine must not pass on an Orin Nano."""
    agx = dataclasses.replace(KEY, gpu_name=AGX_ORIN.name, compute_capability="8.7", sm_count=AGX_ORIN.sm_count,
                              total_memory_mb=AGX_ORIN.total_memory_mb)
    nano = dataclasses.replace(agx, sm_count=ORIN_NANO.sm_count, total_memory_mb=ORIN_NANO.total_memory_mb)
    assert engine_paths(tmp_path / "m.onnx", agx) != engine_paths(tmp_path / "m.onnx", nano)
    assert timing_cache_path(tmp_path, agx) != timing_cache_path(tmp_path, nano)
    assert agx.mismatch(nano) == ["sm_count", "total_memory_mb"]
    # the timing cache is per GPU, not per model or precision
    assert timing_cache_path(tmp_path, agx) == timing_cache_path(tmp_path, dataclasses.replace(agx, precision="fp32"))


def test_engine_file_names(tmp_path):
    engine, meta = engine_paths(tmp_path / "model.onnx", KEY)
    assert engine == tmp_path / f"model.{KEY.digest()[:16]}.engine"
    assert meta == tmp_path / f"model.{KEY.digest()[:16]}.json"
    assert engine_paths(tmp_path / "model.onnx", KEY, tmp_path / "out")[0].parent == tmp_path / "out"


def test_sidecar_carries_model_info_and_parity(tiny_onnx, tmp_path):
    props = onnx_metadata(tiny_onnx)
    meta = tmp_path / "m.json"
    write_sidecar(meta, KEY, props, tiny_onnx, {"frames": 3, "max_abs_diff": 1e-4})
    doc = read_sidecar(meta)
    assert EngineKey(**doc["key"]) == KEY and doc["digest"] == KEY.digest()
    assert doc["parity"]["frames"] == 3
    info = ModelInfo.from_props(doc["metadata"], str(meta))
    assert info == OnnxRuntimeBackend(tiny_onnx).info
    meta.write_text(json.dumps({"format": "dann_ros.engine/1", "key": {}, "metadata": {}}))
    with pytest.raises(ValueError, match="'format'.*rebuild"):
        read_sidecar(meta)


def test_engine_without_sidecar_names_it(tmp_path):
    engine = tmp_path / "model.0123456789abcdef.engine"
    engine.write_bytes(b"plan")
    for make in (TensorRTBackend, open_backend):
        with pytest.raises(ModelLoadError, match=r"model\.0123456789abcdef\.json"):
            make(engine)


def test_engine_on_cpu_is_a_clear_error(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ModelLoadError, match="only on a CUDA GPU"):
        open_backend(engine, device="cpu")


def test_gpu_query_goes_through_cuda_python_not_torch(monkeypatch):
    """The real cuda-python of this machine: no driver, no GPU -> a clear error naming why and how."""
    monkeypatch.setitem(sys.modules, "torch", None)  # the GPU query must not need torch
    if cuda.cuda_available():
        info = trt_export.gpu_info()
        assert info.sm_count > 0 and info.total_memory_mb > 0 and info.compute_capability.count(".") == 1
        return
    reason = cuda.why_no_gpu()
    assert reason and cuda.device_count() == 0
    with pytest.raises(EngineBuildError, match="cuda-python") as err:
        trt_export.gpu_info()
    assert reason in str(err.value)


def test_cuda_python_missing_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    cuda.cudart.cache_clear()
    try:
        assert "pip install cuda-python" in cuda.why_no_gpu()
        with pytest.raises(cuda.CudaUnavailable, match="cuda-python is not installed"):
            cuda.Stream()
    finally:
        cuda.cudart.cache_clear()


def test_precision_rules():
    fast, slow = GpuInfo("Orin", "8.7", 16, 62841), GpuInfo("GTX 1080", "6.1", 20, 8192)
    assert resolve_precision(10, "auto", fast) == "fp16"  # weak typing + BuilderFlag.FP16
    assert resolve_precision(10, "auto", slow) == "fp32"
    assert resolve_precision(10, "fp16", slow) == "fp16"  # asked for: honoured
    assert resolve_precision(10, "fp32", fast) == "fp32"
    # TensorRT 11: no BuilderFlag.FP16, FP16 only from an FP16 ONNX, never silently
    with pytest.raises(EngineBuildError, match="export --fp16"):
        resolve_precision(11, "fp16", fast)
    assert resolve_precision(11, "fp16", fast, "fp16") == "fp16"
    assert resolve_precision(11, "auto", fast, "fp16") == "fp16"
    assert resolve_precision(10, "auto", slow, "fp16") == "fp16"  # the graph is FP16, whatever the GPU
    with pytest.raises(EngineBuildError, match="FP32 export"):
        resolve_precision(10, "fp32", fast, "fp16")
    with pytest.raises(ValueError, match="int8"):
        resolve_precision(10, "int8", fast)


def test_tensorrt_11_auto_on_fp32_onnx_warns(caplog):
    caplog.set_level(logging.WARNING, logger="dann_ros.export.tensorrt")
    assert resolve_precision(11, "auto", AGX_ORIN) == "fp32"
    assert "dann-ros export --fp16" in caplog.text


def _fake_tensorrt(version: str = "10.99.0+fake"):
    """Just enough of the TensorRT 10/11 surface for load_or_build's bookkeeping and call order."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    log = trt.log = SimpleNamespace(builds=[], builders=[], networks=[], reject_cache=False)

    class Logger:
        WARNING = 2

        def __init__(self, severity=None):
            pass

    class Cache:
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            return self.blob + b"+"

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.pools, self.cache = set(), [], {}, None

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob):
            return Cache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            if log.reject_cache and cache.blob:
                return False
            self.cache = cache
            return True

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            self.shapes = {name: (tuple(mn), tuple(opt), tuple(mx))}

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return True

    class Builder:
        def __init__(self, logger):
            log.builders.append(self)

        def create_network(self, flags):
            log.networks.append(flags)
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            log.builds.append(config)
            return b"FAKEPLAN" + json.dumps(sorted(config.flags)).encode()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            return SimpleNamespace(plan=data) if data.startswith(b"FAKEPLAN") else None

    trt.Logger, trt.Builder, trt.Runtime, trt.OnnxParser = Logger, Builder, Runtime, OnnxParser
    if not version.startswith("11."):
        trt.BuilderFlag = SimpleNamespace(FP16="FP16", TF32="TF32")
    else:
        trt.BuilderFlag = SimpleNamespace(TF32="TF32")
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=1)
    return trt


@pytest.fixture
def fake_trt(monkeypatch):
    def install(version="10.99.0+fake", gpu=GpuInfo("Fake GPU", "8.9", 24, 16000)):
        trt = _fake_tensorrt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(trt_export, "gpu_info", lambda device=0: gpu)
        return trt

    return install


def _verifier(calls, fail=False):
    def verify(engine, info, key):
        calls.append((engine.plan, info.task, key.precision))
        if fail:
            raise EngineBuildError("engine disagrees with ONNX Runtime (test)")
        return {"frames": 4, "max_abs_diff": 0.0}

    return verify


def test_cache_logic_with_fake_tensorrt(tiny_onnx, tmp_path, fake_trt, caplog):
    trt = fake_trt()
    onnx = tmp_path / "model.onnx"
    shutil.copy(tiny_onnx, onnx)
    builds, checks = trt.log.builds, []
    verify = _verifier(checks)

    first = build_engine(onnx, verify=verify)
    assert len(builds) == 1 and first.parent == tmp_path and first.name.startswith("model.")
    config = builds[0]
    assert config.flags == {"FP16"} and config.pools == {"WORKSPACE": 1024 << 20}
    assert config.profiles[0].shapes == {"images": ((1, 3, 28, 28), (1, 3, 28, 28), (8, 3, 28, 28))}  # opt = 1
    assert trt.log.networks == [0]  # TensorRT 10 + FP32 ONNX: weakly typed
    doc = read_sidecar(first.with_suffix(".json"))
    assert doc["key"]["precision"] == "fp16" and doc["key"]["gpu_name"] == "Fake GPU"
    assert doc["key"]["sm_count"] == 24 and doc["key"]["workspace_mb"] == 1024 and doc["parity"]["frames"] == 4
    assert doc["metadata"] == onnx_metadata(onnx) and len(checks) == 1
    timing = timing_cache_path(tmp_path, EngineKey(**doc["key"]))
    assert timing.read_bytes() == b"+"

    assert build_engine(onnx, verify=verify) == first and len(builds) == 1  # cache hit
    assert len(trt.log.builders) == 1 and len(checks) == 1  # no Builder, no re-check on a cache hit

    fp32 = build_engine(onnx, precision="fp32", verify=verify)  # another key: another file, the first one kept
    assert fp32 != first and first.exists() and len(builds) == 2 and not builds[1].flags
    assert builds[1].cache.blob == b"+"  # timing cache reloaded
    assert build_engine(onnx, max_batch=4) not in (first, fp32)
    assert build_engine(onnx, workspace_mb=512) not in (first, fp32)
    wide = load_or_build(onnx, max_batch=16, opt_batch=4)
    assert wide.built and builds[-1].profiles[0].shapes["images"][1] == (4, 3, 28, 28)
    with pytest.raises(ValueError, match="opt_batch"):
        build_engine(onnx, max_batch=4, opt_batch=8)

    caplog.set_level(logging.WARNING, logger="dann_ros.export.tensorrt")
    n = len(builds)
    first.write_bytes(b"\x00garbage")
    assert build_engine(onnx, verify=verify) == first and len(builds) == n + 1
    assert "corrupt" in caplog.text and first.read_bytes().startswith(b"FAKEPLAN")

    meta = first.with_suffix(".json")
    doc = json.loads(meta.read_text())
    doc["key"]["tensorrt_version"] = "10.0.0"
    meta.write_text(json.dumps(doc))
    build_engine(onnx, verify=verify)
    assert len(builds) == n + 2 and "tensorrt_version" in caplog.text
    assert read_sidecar(meta)["key"]["tensorrt_version"] == trt.__version__

    build_engine(onnx, force=True, verify=verify)
    assert len(builds) == n + 3


def test_no_builder_without_a_gpu(tiny_onnx, tmp_path, fake_trt, monkeypatch):
    trt = fake_trt()

    def no_gpu(device=0):
        raise EngineBuildError("no CUDA GPU usable here: test")

    monkeypatch.setattr(trt_export, "gpu_info", no_gpu)
    with pytest.raises(EngineBuildError, match="no CUDA GPU"):
        build_engine(tiny_onnx, out_dir=tmp_path)
    assert not trt.log.builders and not list(tmp_path.iterdir())


def test_failed_parity_refuses_the_engine(tiny_onnx, tmp_path, fake_trt):
    trt = fake_trt()
    checks = []
    with pytest.raises(EngineBuildError, match="disagrees"):
        build_engine(tiny_onnx, out_dir=tmp_path, verify=_verifier(checks, fail=True))
    assert len(checks) == 1 and len(trt.log.builds) == 1
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.json"))  # nothing cached


def test_unchecked_cached_engine_is_checked_on_load(tiny_onnx, tmp_path, fake_trt):
    fake_trt()
    checks = []
    engine = build_engine(tiny_onnx, out_dir=tmp_path)  # no verifier: parity null in the sidecar
    assert read_sidecar(engine.with_suffix(".json"))["parity"] is None
    assert build_engine(tiny_onnx, out_dir=tmp_path, verify=_verifier(checks)) == engine and len(checks) == 1
    assert read_sidecar(engine.with_suffix(".json"))["parity"]["frames"] == 4


def test_rejected_timing_cache_is_refreshed(tiny_onnx, tmp_path, fake_trt, caplog):
    trt = fake_trt()
    engine = build_engine(tiny_onnx, out_dir=tmp_path)
    timing = timing_cache_path(tmp_path, EngineKey(**read_sidecar(engine.with_suffix(".json"))["key"]))
    timing.write_bytes(b"from-another-gpu")
    trt.log.reject_cache = True
    caplog.set_level(logging.WARNING, logger="dann_ros.export.tensorrt")
    build_engine(tiny_onnx, out_dir=tmp_path, force=True)
    assert "timing cache not usable" in caplog.text
    assert timing.read_bytes() == b"+"  # replaced by the fresh cache of this build


def test_tensorrt_11_builds_strongly_typed_without_fp16_flag(tiny_onnx, tmp_path, fake_trt, caplog):
    trt = fake_trt("11.2.0")
    caplog.set_level(logging.WARNING, logger="dann_ros.export.tensorrt")
    engine = build_engine(tiny_onnx, out_dir=tmp_path)
    assert read_sidecar(engine.with_suffix(".json"))["key"]["precision"] == "fp32"
    assert trt.log.networks == [1 << 1] and not trt.log.builds[0].flags  # STRONGLY_TYPED, no FP16 flag
    assert "export --fp16" in caplog.text
    with pytest.raises(EngineBuildError, match="export --fp16"):
        build_engine(tiny_onnx, out_dir=tmp_path, precision="fp16")


def test_fp16_onnx_builds_strongly_typed(tiny_fp16_onnx, tmp_path, fake_trt):
    for version in ("10.3.0", "11.2.0"):
        trt = fake_trt(version)
        engine = build_engine(tiny_fp16_onnx, out_dir=tmp_path / version)
        assert read_sidecar(engine.with_suffix(".json"))["key"]["precision"] == "fp16"
        assert trt.log.networks == [1 << 1] and not trt.log.builds[0].flags  # typed by the graph, no flag


def test_auto_never_picks_tensorrt_for_cpu(tiny_onnx, fake_trt, monkeypatch):
    fake_trt()
    monkeypatch.setattr(cuda, "why_no_gpu", lambda: None)  # pretend a GPU: device=cpu must still win
    backend = open_backend(tiny_onnx, backend="auto", device="cpu")
    assert backend.name == "onnxruntime-cpu"


def test_auto_fallback_is_loud_on_gpu_hardware(tiny_onnx, fake_trt, monkeypatch, caplog):
    import dann_ros.runtime.backends as backends

    fake_trt()
    monkeypatch.setattr(backends, "_gpu_hardware_present", lambda: True)
    caplog.set_level(logging.INFO, logger="dann_ros.runtime.backends")
    backend = open_backend(tiny_onnx, backend="auto")
    assert backend.name == "onnxruntime-cpu"
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning and "FALLING BACK" in warning[0].getMessage() and "GPU" in warning[0].getMessage()


def test_predictor_passes_precision_and_max_batch_through(tiny_onnx, monkeypatch):
    import dann_ros.runtime.tensorrt_backend as trt_backend
    from dann_ros.runtime.predictor import Predictor

    seen = {}

    class Recorder(OnnxRuntimeBackend):
        def __init__(self, path, **options):
            seen.update(options)
            super().__init__(path, "cpu")

    monkeypatch.setattr(trt_backend, "TensorRTBackend", Recorder)
    Predictor.load(tiny_onnx, backend="tensorrt", precision="fp32", max_batch=2, warmup=False)
    assert seen["precision"] == "fp32" and seen["max_batch"] == 2 and seen["opt_batch"] == 1


# ---------------------------------------------------------------- real TensorRT

@pytest.fixture
def trt():
    module = pytest.importorskip("tensorrt", reason=NO_TRT)
    reason = cuda.why_no_gpu()
    if reason is not None:
        pytest.skip(f"TensorRT is installed but cuda-python sees no GPU ({reason})")
    return module


@pytest.fixture
def onnx_copy(tiny_onnx, tmp_path):
    out = tmp_path / "model.onnx"
    shutil.copy(tiny_onnx, out)
    shutil.copy(parity_frames_path(tiny_onnx), parity_frames_path(out))
    return out


def test_engine_matches_onnxruntime(trt, onnx_copy):
    backend = TensorRTBackend(onnx_copy, max_batch=8)
    assert backend.name.startswith("tensorrt-") and backend.info == OnnxRuntimeBackend(onnx_copy).info
    assert backend.parity["frames"] > 0 and backend.parity["top1_agreement"] >= 0.995
    assert backend.runner.stream.handle != 0  # a dedicated stream, not the legacy default one
    assert tuple(backend.runner.engine.get_tensor_profile_shape(INPUT_NAME, 0)[1])[0] == 1  # opt batch 1
    frames = np.random.default_rng(0).integers(0, 256, (11, 3, 28, 28)).astype(np.float32)  # 11 > max batch
    want = OnnxRuntimeBackend(onnx_copy, device="cpu").run(frames)
    got = backend.run(frames)
    assert set(got) == set(want) == {"scores", "domain"}
    tol = TOLERANCES[backend.precision].max_abs_diff
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=tol)
    np.testing.assert_allclose(TensorRTBackend(backend.engine_path).run(frames[:1])["scores"], want["scores"][:1],
                               atol=tol)


def test_detector_engine_matches_onnxruntime(trt, tiny_detector_onnx, tmp_path):
    onnx = tmp_path / "det.onnx"
    shutil.copy(tiny_detector_onnx, onnx)
    shutil.copy(parity_frames_path(tiny_detector_onnx), parity_frames_path(onnx))
    backend = TensorRTBackend(onnx, precision="fp32")
    assert backend.parity["top1_agreement"] >= 0.995 and backend.parity["max_box_diff"] <= TOLERANCES["fp32"].box_px


def test_fp16_onnx_engine(trt, tiny_fp16_onnx, tmp_path):
    onnx = tmp_path / "fp16.onnx"
    shutil.copy(tiny_fp16_onnx, onnx)
    shutil.copy(parity_frames_path(tiny_fp16_onnx), parity_frames_path(onnx))
    backend = TensorRTBackend(onnx)
    assert backend.name == "tensorrt-fp16" and backend.parity["max_abs_diff"] <= TOLERANCES["fp16"].max_abs_diff


def test_engine_cache_hit(trt, onnx_copy):
    first = build_engine(onnx_copy)
    stamp = first.stat().st_mtime_ns
    assert build_engine(onnx_copy) == first and first.stat().st_mtime_ns == stamp


def test_key_mismatch_gives_another_engine(trt, onnx_copy):
    fp32 = build_engine(onnx_copy, precision="fp32")
    assert TensorRTBackend(fp32).name == "tensorrt-fp32"
    if trt_export.tensorrt_major(trt) == 10:
        fp16 = build_engine(onnx_copy, precision="fp16")
        assert fp32 != fp16 and fp32.exists() and fp16.exists()


def test_engine_that_fails_parity_is_refused(trt, onnx_copy, monkeypatch):
    monkeypatch.setitem(TOLERANCES, "fp32", Tolerance(-1.0, -1.0))
    monkeypatch.setitem(TOLERANCES, "fp16", Tolerance(-1.0, -1.0))
    with pytest.raises(ModelLoadError, match="refused"):
        TensorRTBackend(onnx_copy, precision="fp32")
    assert not list(onnx_copy.parent.glob("*.engine"))


def test_corrupt_engine_rebuilt_with_warning(trt, onnx_copy, caplog):
    engine = build_engine(onnx_copy)
    engine.write_bytes(b"\x00not a plan" * 64)
    caplog.set_level(logging.WARNING, logger="dann_ros.export.tensorrt")
    assert build_engine(onnx_copy) == engine
    assert "corrupt" in caplog.text
    assert trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine.read_bytes()) is not None


def test_engine_from_other_gpu_refused(trt, onnx_copy):
    engine = TensorRTBackend(onnx_copy).engine_path
    meta = engine.with_suffix(".json")
    doc = json.loads(meta.read_text())
    doc["key"]["sm_count"] = doc["key"]["sm_count"] + 1
    doc["key"]["tensorrt_version"] = "10.0.1"
    meta.write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match="built for TensorRT 10.0.1"):
        TensorRTBackend(engine)
