"""TensorRT engine build, cache and runtime.

TensorRT cannot be installed on this project's machines, so the tests that
build and run real engines skip with the reason; they run wherever
``import tensorrt`` works and a CUDA GPU is present. The cache logic, error
messages and sidecar handling are tested everywhere (the cache logic against
a small fake ``tensorrt`` module, which checks our bookkeeping, not the API).
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
from dann_ros.export.metadata import ModelInfo
from dann_ros.export.tensorrt import (
    EngineKey,
    GpuInfo,
    TensorRTUnavailable,
    build_engine,
    engine_paths,
    onnx_metadata,
    read_sidecar,
    write_sidecar,
)
from dann_ros.runtime.backends import ModelLoadError, OnnxRuntimeBackend, open_backend
from dann_ros.runtime.tensorrt_backend import TensorRTBackend, tensorrt_available

NO_TRT = "TensorRT is not installed here (cannot be installed on this project's machines)"
KEY = EngineKey("ab" * 32, "10.8.0", "NVIDIA H100 80GB HBM3", "9.0", "fp16", 8)


# ---------------------------------------------------------------- everywhere

def test_missing_tensorrt_error_has_install_hint(tiny_onnx, monkeypatch, capsys):
    from dann_ros.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    assert not tensorrt_available()
    with pytest.raises(TensorRTUnavailable) as err:
        build_engine(tiny_onnx)
    assert "pip install tensorrt-cu12" in str(err.value) and "python3-libnvinfer" in str(err.value)
    with pytest.raises(TensorRTUnavailable, match="tensorrt-cu12"):
        TensorRTBackend(tiny_onnx)
    assert main(["build-engine", str(tiny_onnx)]) == 2
    assert "pip install tensorrt-cu12" in capsys.readouterr().err


def test_cache_key_changes_with_every_field():
    digests = {KEY.digest()}
    changed = {"onnx_sha256": "cd" * 32, "tensorrt_version": "10.9.0", "gpu_name": "Orin",
               "compute_capability": "8.7", "precision": "fp32", "max_batch": 16}
    assert set(changed) == {f.name for f in dataclasses.fields(EngineKey)}
    for field, value in changed.items():
        digests.add(dataclasses.replace(KEY, **{field: value}).digest())
    assert len(digests) == len(changed) + 1
    assert KEY.digest() == EngineKey(**dataclasses.asdict(KEY)).digest()  # stable


def test_engine_file_names(tmp_path):
    engine, meta = engine_paths(tmp_path / "model.onnx", KEY)
    assert engine == tmp_path / f"model.{KEY.digest()[:16]}.engine"
    assert meta == tmp_path / f"model.{KEY.digest()[:16]}.json"
    assert engine_paths(tmp_path / "model.onnx", KEY, tmp_path / "out")[0].parent == tmp_path / "out"


def test_sidecar_carries_model_info(tiny_onnx, tmp_path):
    props = onnx_metadata(tiny_onnx)
    meta = tmp_path / "m.json"
    write_sidecar(meta, KEY, props, tiny_onnx, 1024)
    doc = read_sidecar(meta)
    assert EngineKey(**doc["key"]) == KEY and doc["digest"] == KEY.digest()
    info = ModelInfo.from_props(doc["metadata"], str(meta))
    assert info == OnnxRuntimeBackend(tiny_onnx).info
    meta.write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(ValueError, match="'format'"):
        read_sidecar(meta)


def test_engine_without_sidecar_names_it(tmp_path):
    engine = tmp_path / "model.0123456789abcdef.engine"
    engine.write_bytes(b"plan")
    for make in (TensorRTBackend, open_backend):
        with pytest.raises(ModelLoadError, match=r"model\.0123456789abcdef\.json"):
            make(engine)


def test_gpu_info_from_torch(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=0: "NVIDIA Jetson AGX Orin")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=0: (8, 7))
    assert trt_export.gpu_info() == GpuInfo("NVIDIA Jetson AGX Orin", "8.7")


def test_auto_precision():
    trt = _fake_tensorrt()
    fast, slow, unknown = (SimpleNamespace(platform_has_fast_fp16=v) for v in (True, False, None))
    gpu = GpuInfo("any", "8.7")
    assert trt_export.resolve_precision(trt, fast, "auto", gpu) == "fp16"
    assert trt_export.resolve_precision(trt, slow, "auto", gpu) == "fp32"
    assert trt_export.resolve_precision(trt, slow, "fp16", gpu) == "fp16"  # asked for: honoured
    assert trt_export.resolve_precision(trt, unknown, "auto", GpuInfo("GTX 1080", "6.1")) == "fp32"
    assert trt_export.resolve_precision(trt, unknown, "auto", GpuInfo("Orin", "8.7")) == "fp16"
    trt.BuilderFlag = SimpleNamespace()  # a TensorRT without weak typing
    assert trt_export.resolve_precision(trt, fast, "auto", gpu) == "fp32"
    with pytest.raises(trt_export.EngineBuildError, match="FP16 ONNX"):
        trt_export.resolve_precision(trt, fast, "fp16", gpu)
    with pytest.raises(ValueError, match="int8"):
        trt_export.resolve_precision(trt, fast, "int8", gpu)


def _fake_tensorrt(fast_fp16: bool = True):
    """Just enough of the TensorRT 10 surface for build_engine's bookkeeping."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0+fake"
    log = trt.log = SimpleNamespace(builds=[])

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
        platform_has_fast_fp16 = fast_fp16

        def __init__(self, logger):
            pass

        def create_network(self, flags):
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
    trt.BuilderFlag = SimpleNamespace(FP16="FP16")
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    return trt


def test_cache_logic_with_fake_tensorrt(tiny_onnx, tmp_path, monkeypatch, caplog):
    trt = _fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_export, "gpu_info", lambda device=0: GpuInfo("Fake GPU", "8.9"))
    onnx = tmp_path / "model.onnx"
    shutil.copy(tiny_onnx, onnx)
    builds = trt.log.builds

    first = build_engine(onnx)
    assert len(builds) == 1 and first.parent == tmp_path and first.name.startswith("model.")
    config = builds[0]
    assert config.flags == {"FP16"} and config.pools == {"WORKSPACE": 1024 << 20}
    assert config.profiles[0].shapes == {"images": ((1, 3, 28, 28), (4, 3, 28, 28), (8, 3, 28, 28))}
    doc = read_sidecar(first.with_suffix(".json"))
    assert doc["key"]["precision"] == "fp16" and doc["key"]["gpu_name"] == "Fake GPU"
    assert doc["metadata"] == onnx_metadata(onnx)
    timing = tmp_path / "tensorrt-10.99.0+fake-sm89.timing"
    assert timing.read_bytes() == b"+"

    assert build_engine(onnx) == first and len(builds) == 1  # cache hit

    fp32 = build_engine(onnx, precision="fp32")  # another key: another file, the first one kept
    assert fp32 != first and first.exists() and len(builds) == 2 and not builds[1].flags
    assert builds[1].cache.blob == b"+"  # timing cache reloaded
    assert build_engine(onnx, max_batch=4) not in (first, fp32)

    caplog.set_level(logging.WARNING, logger="dann_ros.export.tensorrt")
    first.write_bytes(b"\x00garbage")
    assert build_engine(onnx) == first and len(builds) == 4
    assert "corrupt" in caplog.text and first.read_bytes().startswith(b"FAKEPLAN")

    meta = first.with_suffix(".json")
    doc = json.loads(meta.read_text())
    doc["key"]["tensorrt_version"] = "10.0.0"
    meta.write_text(json.dumps(doc))
    build_engine(onnx)
    assert len(builds) == 5 and "tensorrt_version" in caplog.text
    assert read_sidecar(meta)["key"]["tensorrt_version"] == trt.__version__

    build_engine(onnx, force=True)
    assert len(builds) == 6
    trt.Builder.platform_has_fast_fp16 = False
    assert build_engine(onnx) == fp32 and len(builds) == 6  # auto -> fp32 where FP16 is slow


# ---------------------------------------------------------------- real TensorRT

@pytest.fixture
def trt():
    module = pytest.importorskip("tensorrt", reason=NO_TRT)
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but torch sees no CUDA GPU")
    return module


@pytest.fixture
def onnx_copy(tiny_onnx, tmp_path):
    out = tmp_path / "model.onnx"
    shutil.copy(tiny_onnx, out)
    return out


def test_engine_matches_onnxruntime(trt, onnx_copy):
    engine = build_engine(onnx_copy, max_batch=8)
    backend = TensorRTBackend(engine)
    assert backend.name.startswith("tensorrt-") and backend.info == OnnxRuntimeBackend(onnx_copy).info
    frames = np.random.default_rng(0).integers(0, 256, (11, 3, 28, 28)).astype(np.float32)  # 11 > max batch
    want = OnnxRuntimeBackend(onnx_copy, device="cpu").run(frames)
    got = backend.run(frames)
    assert set(got) == set(want) == {"scores", "domain"}
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-2)
    assert (got["scores"].argmax(1) == want["scores"].argmax(1)).mean() >= 0.9
    np.testing.assert_allclose(TensorRTBackend(onnx_copy).run(frames[:1])["scores"], want["scores"][:1], atol=1e-2)


def test_engine_cache_hit(trt, onnx_copy):
    first = build_engine(onnx_copy)
    stamp = first.stat().st_mtime_ns
    assert build_engine(onnx_copy) == first and first.stat().st_mtime_ns == stamp


def test_key_mismatch_gives_another_engine(trt, onnx_copy):
    fp32 = build_engine(onnx_copy, precision="fp32")
    fp16 = build_engine(onnx_copy, precision="fp16")
    assert fp32 != fp16 and fp32.exists() and fp16.exists()
    assert TensorRTBackend(fp32).name == "tensorrt-fp32"


def test_corrupt_engine_rebuilt_with_warning(trt, onnx_copy, caplog):
    engine = build_engine(onnx_copy)
    engine.write_bytes(b"\x00not a plan" * 64)
    caplog.set_level(logging.WARNING, logger="dann_ros.export.tensorrt")
    assert build_engine(onnx_copy) == engine
    assert "corrupt" in caplog.text
    assert trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine.read_bytes()) is not None


def test_engine_from_other_tensorrt_refused(trt, onnx_copy):
    engine = build_engine(onnx_copy)
    meta = engine.with_suffix(".json")
    doc = json.loads(meta.read_text())
    doc["key"]["tensorrt_version"] = "8.6.1"
    meta.write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match="built for TensorRT 8.6.1"):
        TensorRTBackend(engine)
