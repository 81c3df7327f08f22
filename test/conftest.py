"""Shared fixtures: small real models (random weights) as checkpoint and ONNX files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DIGITS = tuple(str(i) for i in range(10))


def make_classifier_checkpoint(path: Path, preprocess=None, with_domain: bool = True, seed: int = 0) -> Path:
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
    return make_detector_checkpoint(tmp_path_factory.mktemp("det_model") / "model.pt")


@pytest.fixture(scope="session")
def tiny_detector_onnx(tiny_detector_checkpoint, tmp_path_factory) -> Path:
    from dann_ros.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("det_onnx") / "model.onnx"
    export_onnx(tiny_detector_checkpoint, out)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_classifier_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    from dann_ros.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(tiny_checkpoint, out)
    return out


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests run in parallel on 2 cores: one intra-op thread each avoids oversubscription."""
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    yield
