"""Shared fixtures: small real models (random weights) as checkpoint and ONNX files.

With DANN_ROS_BLOCK_TORCH=1 (``make test-torchless``) torch is unimportable: the ONNX
fixtures then come from DANN_ROS_TEST_MODELS (written beforehand, with torch, by
``python -m test.make_test_models``) and the checkpoint fixtures skip.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

DIGITS = tuple(str(i) for i in range(10))
TORCH_BLOCKED = os.environ.get("DANN_ROS_BLOCK_TORCH") == "1"
if TORCH_BLOCKED:  # also when this interpreter did not start with test/torchless on PYTHONPATH
    sys.path.insert(0, str(Path(__file__).parent / "torchless"))
    from torch_blocker import install

    install()


def _needs_torch() -> None:
    if TORCH_BLOCKED:
        pytest.skip("torch is blocked (DANN_ROS_BLOCK_TORCH=1): this test needs a checkpoint")


def _prebuilt_model(name: str, tmp_path_factory) -> Path:
    """An ONNX test model written before torch was blocked (copied with its parity frames)."""
    folder = os.environ.get("DANN_ROS_TEST_MODELS")
    if not folder or not (Path(folder) / name).is_file():
        pytest.fail(f"DANN_ROS_BLOCK_TORCH=1 needs DANN_ROS_TEST_MODELS=<folder> holding {name}, written first with "
                    "`python -m test.make_test_models <folder>` (see `make test-torchless`)")
    out = tmp_path_factory.mktemp("prebuilt") / name
    shutil.copy(Path(folder) / name, out)
    frames = Path(folder) / (Path(name).stem + ".parity.npz")
    if frames.exists():
        shutil.copy(frames, out.with_name(frames.name))
    return out


def make_classifier_checkpoint(path: Path, preprocess=None, with_domain: bool = True, seed: int = 0) -> Path:
    _needs_torch()
    import torch

    from dann_ros.data.preprocess import Preprocess
    from dann_ros.model.builders import build_classifier, build_discriminator
    from dann_ros.model.config import ModelConfig
    from dann_ros.train.checkpoint import model_state, save_atomic

    torch.manual_seed(seed)
    preprocess = preprocess or Preprocess()
    cfg = ModelConfig(discriminator_hidden=64)
    model = build_classifier(cfg, len(DIGITS), preprocess)
    disc = build_discriminator(cfg, model) if with_domain else None
    model.eval()
    if disc is not None:
        disc.eval()
    save_atomic(model_state(model, disc, task="classification", classes=DIGITS, preprocess=preprocess,
                            model_config=cfg, digest="test", step=0), path)
    return path


def make_detector_checkpoint(path: Path, preprocess=None, with_domain: bool = True, seed: int = 0) -> Path:
    """A CenterNet detector (lenet, random weights) on a letterboxed 48 x 64 input."""
    _needs_torch()
    import torch

    from dann_ros.data.preprocess import Preprocess
    from dann_ros.model.builders import build_discriminator, build_model
    from dann_ros.model.config import ModelConfig
    from dann_ros.train.checkpoint import model_state, save_atomic

    torch.manual_seed(seed)
    preprocess = preprocess or Preprocess(height=48, width=64, resize="letterbox")
    cfg = ModelConfig(backbone="lenet", discriminator_hidden=16)
    model = build_model(cfg, "detection", len(DIGITS), preprocess).eval()
    disc = build_discriminator(cfg, model).eval() if with_domain else None
    save_atomic(model_state(model, disc, task="detection", classes=DIGITS, preprocess=preprocess,
                            model_config=cfg, digest="test", step=0), path)
    return path


@pytest.fixture(scope="session")
def tiny_detector_checkpoint(tmp_path_factory) -> Path:
    _needs_torch()
    return make_detector_checkpoint(tmp_path_factory.mktemp("det_model") / "model.pt")


@pytest.fixture(scope="session")
def tiny_detector_onnx(tmp_path_factory, request) -> Path:
    if TORCH_BLOCKED:
        return _prebuilt_model("detector.onnx", tmp_path_factory)
    from dann_ros.export.onnx_export import export_onnx

    tiny_detector_checkpoint = request.getfixturevalue("tiny_detector_checkpoint")
    out = tmp_path_factory.mktemp("det_onnx") / "model.onnx"
    export_onnx(tiny_detector_checkpoint, out)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    _needs_torch()
    return make_classifier_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, request) -> Path:
    if TORCH_BLOCKED:
        return _prebuilt_model("classifier.onnx", tmp_path_factory)
    from dann_ros.export.onnx_export import export_onnx

    tiny_checkpoint = request.getfixturevalue("tiny_checkpoint")
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(tiny_checkpoint, out)
    return out


def monitor_scenes(n: int, shape: tuple[int, int, int], seed: int, noise: float = 4.0,
                   gain: float = 1.0) -> np.ndarray:
    """Prepared uint8 (N, C, H, W) frames: soft gradients (a 'scene') with sensor noise; ``noise`` and
    ``gain`` < 1 (dark) shift them away from the frames a feature monitor is fitted on."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(n):
        base = 90 + 60 * np.sin(rng.uniform(2, 6) * xx + rng.uniform(0, 6)) * np.cos(rng.uniform(2, 6) * yy)
        img = np.stack([base * rng.uniform(0.8, 1.2) for _ in range(c)]) * gain + rng.normal(0, noise, (c, h, w))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def synthetic_digits(path: Path) -> Path:
    """A stand-in for OpenCV's digits.png: cell (row, col) is filled with the value row (class row // 5)."""
    import cv2

    grid = np.repeat(np.repeat(np.arange(50, dtype=np.uint8)[:, None] * 5, 20, 0), 2000, 1)
    grid[:, ::20] = 255  # mark cell borders so that a wrong split would show
    cv2.imwrite(str(path), grid)
    return path


def export_with_feature_monitor(checkpoint: Path, out: Path):
    """Export with the post-hoc shift monitor fitted on monitor_scenes (target) vs uniform noise (source)."""
    from dann_ros.export.checkpoint_model import load_model
    from dann_ros.export.onnx_export import export_onnx

    shape = load_model(checkpoint)[1].preprocess.input_shape
    source = np.random.default_rng(9).integers(0, 256, (40, *shape), np.uint8)
    return export_onnx(checkpoint, out, monitor_frames=(monitor_scenes(160, shape, 0), source))


@pytest.fixture(scope="session")
def tiny_monitored_detector_onnx(tmp_path_factory, request) -> Path:
    """tiny_detector_onnx with the feature monitor (output feature_shift) fitted on monitor_scenes."""
    if TORCH_BLOCKED:
        return _prebuilt_model("monitored_detector.onnx", tmp_path_factory)
    out = tmp_path_factory.mktemp("det_monitor_onnx") / "model.onnx"
    export_with_feature_monitor(request.getfixturevalue("tiny_detector_checkpoint"), out)
    return out


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests run in parallel on 2 cores: one intra-op thread each avoids oversubscription."""
    if not TORCH_BLOCKED:
        import torch

        torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    yield
