"""The robot-side runtime needs no torch: its import closure, and a .pt without torch, say so clearly.

Under ``make test-torchless`` (DANN_ROS_BLOCK_TORCH=1) torch is unimportable in this process and in
every subprocess, so the ROS node tests, eval-bag and replay tests there prove the same end to end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dann_ros.runtime.backends import ModelLoadError
from dann_ros.runtime.predictor import Predictor

ROOT = Path(__file__).resolve().parents[2]
ROBOT_MODULES = ["dann_ros.runtime", "dann_ros.runtime.tensorrt_backend", "dann_ros.cuda", "dann_ros.ros.node",
                 "dann_ros.evaluation.eval_bag", "dann_ros.evaluation.replay", "dann_ros.model.detection_metrics"]


def test_robot_side_modules_do_not_import_torch():
    """Not even where torch is installed: a node that imports it pays seconds and hundreds of MB for nothing."""
    code = ("import sys; "
            + "; ".join(f"import {m}" for m in ROBOT_MODULES)
            + "; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    env = {**os.environ, "DANN_ROS_BLOCK_TORCH": "0"}  # torch importable: nothing may import it anyway
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _blocked_env() -> dict:
    return {**os.environ, "DANN_ROS_BLOCK_TORCH": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "test" / "torchless"), os.environ.get("PYTHONPATH", "")])}


def test_cli_works_without_torch():
    """Every robot-side command parses without torch (the demo, training side, is only listed)."""
    cli = [sys.executable, "-m", "dann_ros.cli"]
    for command in ("eval-bag", "replay", "build-engine", "make-bag"):
        out = subprocess.run([*cli, command, "--help"], capture_output=True, text=True, cwd=ROOT, env=_blocked_env(),
                             timeout=120)
        assert out.returncode == 0 and "usage: dann-ros " + command in out.stdout, out.stderr
    top = subprocess.run([*cli, "--help"], capture_output=True, text=True, cwd=ROOT, env=_blocked_env(), timeout=120)
    assert top.returncode == 0 and "demo" in top.stdout  # listed; says why it cannot run where torch is missing


def test_blocker_really_blocks_torch_in_subprocesses():
    out = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=_blocked_env(),
                         timeout=60)
    assert out.returncode != 0 and "blocked: DANN_ROS_BLOCK_TORCH=1" in out.stderr


def test_onnx_runs_where_torch_is_missing(tiny_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as on a robot without torch
    predictor = Predictor.load(tiny_onnx, backend="auto", device="cpu")
    assert predictor.backend.name == "onnxruntime-cpu"
    assert predictor.predict(np.zeros((28, 28, 3), np.uint8)).class_name in predictor.classes


def test_checkpoint_without_torch_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    path = tmp_path / "model.pt"
    path.write_bytes(b"not loaded: torch is missing first")
    with pytest.raises(ModelLoadError, match=r"model\.pt: a \.pt checkpoint needs torch.*dann-ros export"):
        Predictor.load(path)


def _requirements(name: str) -> list[str]:
    lines = [ln.split("#")[0].strip() for ln in (ROOT / name).read_text().splitlines()]
    return [ln for ln in lines if ln]


def test_runtime_requirements_have_no_torch_and_are_in_the_dev_set():
    runtime = _requirements("requirements-runtime.txt")
    names = [re.split(r"[<>=!\[ ]", r, maxsplit=1)[0].lower() for r in runtime]
    assert not [n for n in names if n.startswith("torch")]
    assert "onnxruntime" in names and "cuda-python" in names and "rosbags" in names
    dev = {re.split(r"[<>=!\[ ]", r, maxsplit=1)[0].lower() for r in _requirements("requirements.txt")}
    assert set(names) - dev == {"cuda-python"}  # torch brings cuda-bindings to the dev venv


def test_setup_py_runtime_extra_reads_the_runtime_requirements():
    source = (ROOT / "setup.py").read_text()
    assert "extras_require={'runtime': requirements('requirements-runtime.txt')}" in source
    namespace: dict = {"__file__": str(ROOT / "setup.py")}
    exec(compile(source.split("\nsetup(", 1)[0], str(ROOT / "setup.py"), "exec"), namespace)  # the helpers only
    assert namespace["requirements"]("requirements-runtime.txt") == _requirements("requirements-runtime.txt")
