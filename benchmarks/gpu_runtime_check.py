"""Everything that needs a GPU, in one prepared run for a fresh GPU machine without network (issue 22).

    bash benchmarks/gpu_runtime_check.sh [--cpu-dry-run] [--no-pytest] [--wheels DIR] [out_dir]

(the .sh picks the interpreter and puts this checkout on PYTHONPATH; it then runs this file.)

Each stage is a row, printed as a table and written to ``<out>/results.json``; the exit status is 0 only
when every row that this machine must pass passed. Nothing that should run here is skipped: what is
missing fails, with what to install.

- preflight: a CUDA GPU through torch, and every module the rows import (dann_ros from this checkout
  included). Fails with the list of what is missing and where it is needed.
- onnxruntime-cpu, torch-cuda, onnxruntime-cuda (only where this onnxruntime has the CUDA provider; it
  must then load, see backends.py), tensorrt-fp32 and tensorrt-fp16 (where ``import tensorrt`` works):
  the demo's two architectures (classifier and CenterNet detector, random weights) through each backend
  at batch 1 and 8: median latency, and the largest output difference from ONNX Runtime on the CPU.
  The TensorRT engines are built by dann_ros (parity-checked against ONNX Runtime before they are kept).
- train-classification, train-detection: CUDA training steps of both demo configs
  (config/train_demo.yaml, config/train_detection_demo.yaml) on small generated data, evaluation and
  checkpoint included; the row checks the weights sat on the GPU.
- pytest: the GPU tests (cuda-python buffers, TensorRT engines, predictor, model checks) where pytest is
  installed; a test skipped for a reason this machine does not have fails the row.

``--cpu-dry-run`` runs the rows that need no GPU (preflight without the GPU, onnxruntime-cpu, torch-cpu,
the training steps on the CPU) so the script itself is checked on a machine without one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 8)
GPU_TESTS = ("test/runtime/test_cuda.py", "test/export/test_tensorrt.py", "test/runtime/test_predictor.py",
             "test/runtime/test_model_checks.py")
# what each stage imports: the project's requirements (requirements.txt, less ROS and the tests), then the
# dann_ros modules, whose ModuleNotFoundError names anything else
STAGE_MODULES = {
    "inference": ["numpy", "cv2", "onnx", "onnxruntime", "torch", "yaml", "dann_ros.runtime.predictor",
                  "dann_ros.export.onnx_export", "dann_ros.model.builders"],
    "training": ["torchvision", "tensorboard", "tqdm", "PIL", "matplotlib", "scipy", "sklearn", "rosbags",
                 "rosbags.image", "dann_ros.train.trainer", "dann_ros.demo_data.synth", "dann_ros.data.make_bag",
                 "dann_ros.demo_data.compose"],
}
PIP_NAMES = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn",
             "rosbags": "rosbags rosbags-image"}


class Rows:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, name: str, ok: bool | None, detail: str, **figures) -> dict:
        """ok None: not applicable on this machine (not a failure)."""
        row = {"row": name, "status": "n/a" if ok is None else "ok" if ok else "FAILED", "detail": detail, **figures}
        self.rows.append(row)
        print(f"[{row['status']:>6}] {name}: {detail}", flush=True)
        return row

    @property
    def failed(self) -> list[str]:
        return [r["row"] for r in self.rows if r["status"] == "FAILED"]


# ----------------------------------------------------------------------------- preflight

def preflight(rows: Rows, gpu: bool) -> dict | None:
    """Facts about the machine, or None (and a FAILED row saying what is missing)."""
    problems, facts = [], {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        import dann_ros

        facts["dann_ros"] = str(Path(dann_ros.__file__).parent)
        if Path(dann_ros.__file__).resolve().parents[1] != ROOT:
            problems.append(f"dann_ros is imported from {facts['dann_ros']}, not from this checkout {ROOT} "
                            f"(put {ROOT} first on PYTHONPATH, as gpu_runtime_check.sh does)")
    except ImportError as exc:
        problems.append(f"dann_ros is not importable ({exc}); run through gpu_runtime_check.sh, which puts "
                        f"{ROOT} on PYTHONPATH")
    try:
        import torch

        facts.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
        if gpu:
            if not torch.cuda.is_available():
                problems.append(f"torch {torch.__version__} sees no CUDA GPU (built for CUDA {torch.version.cuda}; "
                                f"is the driver loaded? nvidia-smi)")
            else:
                facts["gpu"] = torch.cuda.get_device_name(0)
                facts["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    except ImportError:
        pass  # named below with what needs it
    missing: dict[str, list[str]] = {}
    for stage, modules in STAGE_MODULES.items():
        for module in modules:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                missing.setdefault(exc.name or module, []).append(f"{stage} ({module})")
            except Exception as exc:  # noqa: BLE001 - an import that fails otherwise is reported as it is
                problems.append(f"importing {module} failed: {type(exc).__name__}: {exc}")
    for name, where in sorted(missing.items()):
        top = name.split(".")[0]
        problems.append(f"module {name!r} (pip: {PIP_NAMES.get(top, top)}) is missing, needed by {', '.join(where)}")
    try:
        import onnxruntime as ort

        facts.update(onnxruntime=ort.__version__, ort_providers=ort.get_available_providers())
    except ImportError:
        pass
    facts["tensorrt"] = _tensorrt_version()
    if facts["tensorrt"] and gpu:
        try:
            from dann_ros.cuda import why_no_gpu

            reason = why_no_gpu()
        except Exception as exc:  # noqa: BLE001
            reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:  # TensorRT is here, so its rows must run: they need cuda-python
            problems.append(f"TensorRT {facts['tensorrt']} imports, but dann_ros.cuda (cuda-python) cannot reach the "
                            f"GPU: {reason}")
    try:
        import pytest

        facts["pytest"] = pytest.__version__
    except ImportError:
        facts["pytest"] = None
    if problems:
        rows.add("preflight", False, "; ".join(problems) + ". Without network: on a machine with it, "
                 "`pip download -d wheels <the missing packages>` for this Python, copy the folder here and run "
                 "gpu_runtime_check.sh --wheels wheels", **facts)
        return None
    what = f"torch {facts['torch']} (CUDA {facts['torch_cuda']})" + (f" on {facts['gpu']}" if gpu else ", CPU dry run")
    if facts["tensorrt"] and gpu:
        what += "; cuda-python reaches the GPU"
    rows.add("preflight", True, f"{what}; onnxruntime {facts.get('onnxruntime')} {facts.get('ort_providers')}; "
             f"TensorRT {facts['tensorrt'] or 'not installed'}; pytest {facts['pytest'] or 'not installed'}", **facts)
    return facts


def _tensorrt_version() -> str | None:
    try:
        import tensorrt
    except Exception:  # noqa: BLE001 - ImportError, or a broken install: then there are no TensorRT rows
        return None
    return str(tensorrt.__version__)


# ----------------------------------------------------------------------------- models and inference rows

# per demo task: its recipe in config/, and the render size, (source, target) frame counts and SynthConfig
# options of data small enough to train 4 steps on
DEMO = {"classification": ("train_demo.yaml", (32, 32), (256, 96), {}),
        "detection": ("train_detection_demo.yaml", (128, 96), (48, 24),
                      dict(digits_per_image=(1, 3), digit_height=(12.0, 28.0), max_overlap=0.0))}

def demo_config(task: str, out: Path, device: str, data: dict[str, Path] | None = None):
    """The demo's TrainConfig for ``task`` (its model, preprocessing, optimiser, batch), pointed at ``data``."""
    import yaml

    from dann_ros.typed_config import from_dict
    from dann_ros.train.config import TrainConfig

    raw = yaml.safe_load((ROOT / "config" / DEMO[task][0]).read_text())
    raw.update(output_dir=str(out / "run"), cache_dir=str(out / "cache"))
    if data is not None:
        raw["source"]["replicator"] = str(data["synth"])
        raw["target"]["bags"] = [str(data["bag"])]
        raw["eval_target"].update(bag=str(data["bag"]), labels=str(data["labels"]))
    raw["train"].update(device=device, steps=4, eval_every=4, checkpoint_every=4, eval_frames=32)
    return from_dict(TrainConfig, raw)


def demo_models(out: Path) -> dict[str, dict[str, Path]]:
    """task -> {"pt", "onnx", "onnx_fp16"}: the demo architectures with random weights, exported."""
    import numpy as np
    import torch

    from dann_ros.export.onnx_export import export_onnx
    from dann_ros.model.builders import build_discriminator, build_model
    from dann_ros.train.checkpoint import model_state, save_atomic

    models = {}
    for task in DEMO:
        cfg = demo_config(task, out / task, "cpu")
        classes = tuple(str(i) for i in range(10))
        torch.manual_seed(0)
        model = build_model(cfg.model, task, len(classes), cfg.preprocess).eval()
        disc = build_discriminator(cfg.model, model).eval()
        folder = out / f"model_{task}"
        folder.mkdir(parents=True, exist_ok=True)
        pt = folder / "model.pt"
        save_atomic(model_state(model, disc, task=task, classes=classes, preprocess=cfg.preprocess,
                                model_config=cfg.model, digest="gpu-check", step=0), pt)
        frames = np.random.default_rng(0).integers(0, 256, (16, *cfg.preprocess.input_shape), dtype=np.uint8)
        export_onnx(pt, folder / "model.onnx", parity_frames=frames)
        export_onnx(pt, folder / "model_fp16.onnx", fp16=True, parity_frames=frames)
        models[task] = {"pt": pt, "onnx": folder / "model.onnx", "onnx_fp16": folder / "model_fp16.onnx"}
    return models


def _median_ms(fn, iters: int = 30, warmup: int = 5) -> float:
    import numpy as np

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def inference_rows(rows: Rows, models: dict, facts: dict, gpu: bool) -> None:
    import numpy as np

    from dann_ros.runtime.backends import OnnxRuntimeBackend, TorchBackend

    cuda_ort = "CUDAExecutionProvider" in (facts.get("ort_providers") or [])
    device = "cuda" if gpu else "cpu"
    candidates = [("onnxruntime-cpu", True, lambda m: OnnxRuntimeBackend(m["onnx"], "cpu")),
                  (f"torch-{device}", True, lambda m: TorchBackend(m["pt"], device))]
    if gpu:
        candidates.append(("onnxruntime-cuda", cuda_ort or None, lambda m: OnnxRuntimeBackend(m["onnx"], "cuda")))
        trt = facts.get("tensorrt")
        candidates.append(("tensorrt-fp32", bool(trt) or None, lambda m: _tensorrt(m["onnx"], "fp32")))
        candidates.append(("tensorrt-fp16", bool(trt) or None, lambda m: _tensorrt(m["onnx_fp16"], "fp16")))
    for task, m in models.items():
        reference = OnnxRuntimeBackend(m["onnx"], "cpu")
        shape = reference.info.preprocess.input_shape
        batches = {b: np.random.default_rng(b).integers(0, 256, (b, *shape)).astype(np.float32) for b in BATCHES}
        want = reference.run(batches[8])
        for label, required, make in candidates:
            name = f"{label} {task}"
            if required is None:
                why = ("this onnxruntime has no CUDA provider (a CPU build)" if label.startswith("onnxruntime")
                       else "`import tensorrt` fails here")
                rows.add(name, None, why)
                continue
            try:
                t0 = time.perf_counter()
                backend = make(m)
                load_s = time.perf_counter() - t0
                latency = {f"batch{b}_ms": _median_ms(lambda x=x, backend=backend: backend.run(x))
                           for b, x in batches.items()}
                got = backend.run(batches[8])
                diff = {k: float(np.abs(got[k].astype(np.float64) - want[k]).max()) for k in want}
                # scores: class scores, or a detector's top-K scores best first (which of two tied candidates
                # comes first may differ between backends, so boxes and classes are not compared one by one)
                timings = ", ".join(f"batch {b} {latency[f'batch{b}_ms']:.3f} ms" for b in BATCHES)
                detail = (f"{backend.name}: {timings}; scores max |diff| vs ORT CPU {diff['scores']:.2e}; "
                          f"load {load_s:.1f} s")
                rows.add(name, True, detail, backend=backend.name, load_s=load_s, max_abs_diff=diff, **latency)
            except Exception as exc:  # noqa: BLE001 - a backend that must run here and does not is the finding
                rows.add(name, False, f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=6))


def _tensorrt(onnx: Path, precision: str):
    from dann_ros.runtime.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend(onnx, precision=precision, max_batch=max(BATCHES))
    if backend.precision != precision:
        raise RuntimeError(f"asked for a {precision} engine, got {backend.precision}")
    return backend


# ----------------------------------------------------------------------------- training rows

def demo_data(task: str, root: Path) -> dict[str, Path]:
    """Small Replicator renders (source) and a labelled camera bag of other renders through another camera."""
    import cv2

    from dann_ros.data.replicator import scan
    from dann_ros.data.tasks import task_spec
    from dann_ros.demo_data.synth import SynthConfig, render_dataset

    shutil.rmtree(root, ignore_errors=True)  # a rerun into the same folder starts afresh
    classes = [str(i) for i in range(10)]
    _, size, n, common = DEMO[task]
    render_dataset(root / "synth", SynthConfig(n_frames=n[0], width=size[0], height=size[1], seed=1, **common))
    other = render_dataset(root / "other", SynthConfig(n_frames=n[1], width=size[0], height=size[1], seed=2, **common))
    frames = list(scan(other))
    images = [cv2.cvtColor(255 - cv2.cvtColor(f.load_rgb(), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for f in frames]
    bag = root / "target_bag"
    if task_spec(task).label_payload == "label":
        from dann_ros.data.make_bag import write_labelled_bag

        write_labelled_bag(bag, images, [f.boxes[0].class_name for f in frames], classes=classes)
    else:
        from dann_ros.data.make_bag import write_detection_bag
        from dann_ros.data.labels import LabelBox

        boxes = [[LabelBox(b.x_min, b.y_min, b.x_max, b.y_max, b.class_name) for b in f.boxes] for f in frames]
        write_detection_bag(bag, images, boxes, classes=classes)
    return {"synth": root / "synth", "bag": bag, "labels": Path(f"{bag}.labels.json")}


def training_rows(rows: Rows, out: Path, gpu: bool) -> None:
    from dann_ros.train.trainer import Trainer

    for task in DEMO:
        name = f"train-{task}"
        try:
            data = demo_data(task, out / f"data_{task}")
            shutil.rmtree(out / f"train_{task}", ignore_errors=True)
            cfg = demo_config(task, out / f"train_{task}", "cuda" if gpu else "cpu", data)
            trainer = Trainer(cfg, resume=False, show_progress=False)
            device = next(trainer.model.parameters()).device.type
            if device != ("cuda" if gpu else "cpu"):
                raise RuntimeError(f"the model trained on {device}")
            t0 = time.perf_counter()
            trainer.run()
            wall = time.perf_counter() - t0
            steps = cfg.train.steps
            written = (Path(cfg.output_dir) / "metrics.json").exists()
            rows.add(name, written, f"{steps} steps of the demo config on {device} (batch {cfg.train.batch_size}, "
                     f"{cfg.preprocess.height}x{cfg.preprocess.width}): {1e3 * trainer.train_seconds / steps:.1f} ms a "
                     f"step, {wall:.1f} s with evaluation and checkpoint"
                     + ("" if written else "; no metrics.json written"),
                     device=device, steps=steps, ms_per_step=1e3 * trainer.train_seconds / steps, wall_s=wall)
        except Exception as exc:  # noqa: BLE001
            rows.add(name, False, f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8))


# ----------------------------------------------------------------------------- GPU tests

def pytest_row(rows: Rows, out: Path, facts: dict) -> None:
    if not facts.get("pytest"):
        rows.add("pytest", False, "pytest is not installed: the GPU tests cannot run (add it to the wheels, or "
                 "pass --no-pytest to leave them out knowingly)")
        return
    # skips this machine may have: what preflight found missing on purpose
    allowed = []
    if not facts.get("tensorrt"):
        allowed.append("TensorRT is not installed")
    providers = facts.get("ort_providers") or []
    allowed.append("this onnxruntime has no CUDA provider" if "CUDAExecutionProvider" not in providers
                   else "this onnxruntime has a CUDA provider")
    xml = out / "pytest.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={xml}", *GPU_TESTS]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    (out / "pytest.txt").write_text(run.stdout + run.stderr)
    counts, bad_skips = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}, []
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            counts["tests"] += 1
            for kind in ("failure", "error", "skipped"):
                for element in case.findall(kind):
                    counts["failures" if kind == "failure" else "errors" if kind == "error" else "skipped"] += 1
                    reason = element.get("message", "")
                    if kind == "skipped" and not any(a in reason for a in allowed):
                        bad_skips.append(f"{case.get('name')}: {reason}")
    ok = run.returncode == 0 and not bad_skips and counts["tests"] > 0
    detail = (f"{counts['tests']} tests, {counts['failures']} failed, {counts['errors']} errors, "
              f"{counts['skipped']} skipped in {time.perf_counter() - t0:.0f} s (rc {run.returncode}; "
              f"{out / 'pytest.txt'})")
    if bad_skips:
        detail += f"; skipped although this machine should run them: {'; '.join(bad_skips[:5])}"
    rows.add("pytest", ok, detail, **counts, bad_skips=bad_skips)


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / ".cache" / "gpu_runtime_check"))
    parser.add_argument("--cpu-dry-run", action="store_true", help="no GPU: run the rows that need none")
    parser.add_argument("--no-pytest", action="store_true", help="leave out the GPU tests")
    args = parser.parse_args(argv)
    gpu = not args.cpu_dry_run
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, started = Rows(), time.perf_counter()
    facts = preflight(rows, gpu)
    if facts is not None:
        os.environ.setdefault("PYTHONHASHSEED", "0")
        try:
            models = demo_models(out)
        except Exception as exc:  # noqa: BLE001
            rows.add("models", False, f"building and exporting the demo models failed: {type(exc).__name__}: {exc}",
                     traceback=traceback.format_exc(limit=8))
            models = {}
        inference_rows(rows, models, facts, gpu)
        training_rows(rows, out, gpu)
        if gpu and not args.no_pytest:
            pytest_row(rows, out, facts)
    result = {"cpu_dry_run": not gpu, "seconds": time.perf_counter() - started, "failed": rows.failed,
              "rows": rows.rows}
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\n{'row':<34}{'status':>8}  detail")
    for r in rows.rows:
        detail = re.sub(r"\s+", " ", r["detail"])
        print(f"{r['row']:<34}{r['status']:>8}  {detail[:160]}")
    print(f"\n{len(rows.rows)} rows, {len(rows.failed)} failed ({', '.join(rows.failed) or 'none'}) in "
          f"{result['seconds']:.0f} s; {out / 'results.json'}")
    return 1 if rows.failed else 0


if __name__ == "__main__":
    sys.exit(main())
