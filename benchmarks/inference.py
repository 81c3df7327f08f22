"""Inference latency and throughput of every backend the node can use, measured in one run.

    python benchmarks/inference.py [--model model.pt] [--onnx model.onnx] [--iters 200]
                                   [--warmup 20] [--threads N] [--json out.json] [--smoke]

Times the backends of dann_ros.runtime.backends (what the Predictor and the
ROS node run): the raw ``backend.run`` on prepared float32 batches of 1 and 8
at the model's input size, and the full ``Predictor.predict_batch`` on one
640x480 camera frame (preprocessing included). PyTorch eager and ONNX Runtime
run in the same process on the same inputs, so their ratio (ORT speed-up =
torch p50 / ORT p50) is comparable; CUDA rows (torch, the ONNX Runtime CUDA
provider) and TensorRT rows are added where available. Without --model a
random-weight model of the demo architecture (small_cnn, 28x28 RGB) is built.
Without torch (the robot-side install) give --onnx: only ONNX Runtime and
TensorRT rows are measured. ``--smoke`` runs a few iterations of everything
(the test suite runs it; its numbers mean nothing). GPU rows need cuda-python
(the GPU query, TensorRT buffers), never torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIGITS = tuple(str(i) for i in range(10))
CAMERA_FRAME = (480, 640)


def demo_checkpoint(path: Path) -> Path:
    """A random-weight model with the demo's architecture (config/train_demo.yaml)."""
    import torch

    from dann_ros.data.preprocess import Preprocess
    from dann_ros.model.builders import build_classifier, build_domain_loss
    from dann_ros.model.config import ModelConfig
    from dann_ros.train.checkpoint import model_state, save_atomic

    torch.manual_seed(0)
    preprocess = Preprocess(height=28, width=28)
    cfg = ModelConfig(backbone="small_cnn", bottleneck_dim=256, discriminator_hidden=512)
    model = build_classifier(cfg, len(DIGITS), preprocess).eval()
    disc = build_domain_loss(cfg, model.feature_dim).discriminator.eval()
    save_atomic(model_state(model, disc, task="classification", classes=DIGITS, preprocess=preprocess,
                            model_config=cfg, digest="benchmark-random", step=0), path)
    return path


def measure(fn, iters: int, warmup: int, batch: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    ms = times * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "images_per_s": float(batch * iters / times.sum())}


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def open_backends(checkpoint: Path | None, onnx: Path, threads: int, cuda: bool, log) -> list:
    """(label, backend) for every backend this machine can run; failures are reported, not fatal."""
    import onnxruntime as ort

    from dann_ros.cuda import why_no_gpu
    from dann_ros.runtime.backends import OnnxRuntimeBackend, TorchBackend
    from dann_ros.runtime.tensorrt_backend import TensorRTBackend, tensorrt_unavailable_reason

    torch = _torch()
    candidates = [("onnxruntime-cpu", lambda: OnnxRuntimeBackend(onnx, "cpu", threads))]
    if torch is not None and checkpoint is not None:
        candidates.insert(0, ("torch-cpu", lambda: TorchBackend(checkpoint, "cpu")))
    else:
        log.append("torch rows: skipped (no torch or no checkpoint: the robot-side install)")
    gpu_reason = why_no_gpu()
    if cuda and gpu_reason is None:
        if torch is not None and checkpoint is not None and torch.cuda.is_available():
            candidates.append(("torch-cuda", lambda: TorchBackend(checkpoint, "cuda")))
        if "CUDAExecutionProvider" in ort.get_available_providers():
            candidates.append(("onnxruntime-cuda", lambda: OnnxRuntimeBackend(onnx, "cuda", threads)))
        else:
            log.append("onnxruntime-cuda: skipped (this onnxruntime has no CUDAExecutionProvider)")
        reason = tensorrt_unavailable_reason()
        if reason is None:
            candidates.append(("tensorrt", lambda: TensorRTBackend(onnx)))
        else:
            log.append(f"tensorrt: skipped ({reason.split(';')[0]})")
    elif cuda:
        log.append(f"CUDA rows: skipped ({gpu_reason})")
    backends = []
    for label, make in candidates:
        try:
            backends.append((label, make()))
        except Exception as exc:  # e.g. the CUDA provider failing to load its libraries
            log.append(f"{label}: could not be opened ({type(exc).__name__}: {exc})")
    return backends


def run(args: argparse.Namespace) -> dict:
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(args.threads)
    elif not args.onnx:
        raise SystemExit("without torch give --onnx model.onnx (a random demo model needs torch to be exported)")
    with tempfile.TemporaryDirectory(prefix="dann_ros_bench_") as tmp:
        return _run(args, Path(tmp))


def _run(args: argparse.Namespace, tmp: Path) -> dict:
    import onnxruntime as ort

    from dann_ros.cuda import gpu_info, why_no_gpu
    from dann_ros.runtime.predictor import Predictor

    torch = _torch()
    checkpoint = None
    if torch is not None:
        checkpoint = Path(args.model) if args.model else demo_checkpoint(tmp / "demo.pt")
    if args.onnx:
        onnx = Path(args.onnx)
    else:
        from dann_ros.export.onnx_export import export_onnx
        from dann_ros.export.checkpoint_model import load_model

        onnx = tmp / f"{checkpoint.stem}.onnx"
        _, info = load_model(checkpoint)
        frames = np.random.default_rng(0).integers(0, 256, (16, *info.preprocess.input_shape), dtype=np.uint8)
        export_onnx(checkpoint, onnx, parity_frames=frames)
    notes: list[str] = []
    backends = open_backends(checkpoint, onnx, args.threads, not args.no_cuda, notes)
    info = backends[0][1].info
    rng = np.random.default_rng(1)
    camera = rng.integers(0, 256, (*CAMERA_FRAME, 3), dtype=np.uint8)
    rows = []
    for label, backend in backends:
        for batch in args.batches:
            x = rng.integers(0, 256, (batch, *info.preprocess.input_shape)).astype(np.float32)
            stats = measure(lambda backend=backend, x=x: backend.run(x), args.iters, args.warmup, batch)
            rows.append({"backend": label, "name": backend.name, "what": "run", "batch": batch, **stats})
        predictor = Predictor(backend, info, warmup=False)
        stats = measure(lambda predictor=predictor: predictor.infer_batch([camera]), args.iters, args.warmup, 1)
        rows.append({"backend": label, "name": backend.name, "what": "predict 640x480", "batch": 1, **stats})
    ratios = []
    for device in ("cpu", "cuda"):
        for row in rows:
            if row["backend"] != f"onnxruntime-{device}":
                continue
            ref = next((r for r in rows if r["backend"] == f"torch-{device}" and r["what"] == row["what"]
                        and r["batch"] == row["batch"]), None)
            if ref is not None:
                ratios.append({"device": device, "what": row["what"], "batch": row["batch"],
                               "ort_speedup": ref["p50_ms"] / row["p50_ms"]})
    gpu = gpu_info().name if why_no_gpu() is None else None
    return {"model": str(args.model or ("random demo model (small_cnn)" if checkpoint else args.onnx)),
            "onnx": str(args.onnx or "temporary export"),
            "input_shape": list(info.preprocess.input_shape), "threads": args.threads, "iters": args.iters,
            "warmup": args.warmup, "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "gpu": gpu, "torch": torch.__version__ if torch is not None else None, "onnxruntime": ort.__version__,
            "rows": rows, "ort_speedup": ratios, "notes": notes}


def table(result: dict) -> str:
    lines = [f"model: {result['model']}  input {tuple(result['input_shape'])}  threads {result['threads']}  "
             f"iters {result['iters']} (+{result['warmup']} warm-up)  cpu_count {result['cpu_count']}  "
             f"gpu {result['gpu'] or '-'}",
             f"torch {result['torch'] or '-'}  onnxruntime {result['onnxruntime']}",
             f"{'backend':<18}{'what':<17}{'batch':>5}{'p50 ms':>10}{'p99 ms':>10}{'img/s':>11}"]
    for r in result["rows"]:
        lines.append(f"{r['name']:<18}{r['what']:<17}{r['batch']:>5}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}"
                     f"{r['images_per_s']:>11.0f}")
    if result["ort_speedup"]:
        lines.append("ORT speed-up (torch p50 / ORT p50): " + ", ".join(
            f"{s['device']} {s['what']} b{s['batch']} {s['ort_speedup']:.2f}x" for s in result["ort_speedup"]))
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a dann_ros model checkpoint (.pt); default: random demo model")
    parser.add_argument("--onnx", help="its exported ONNX (default: exported to a temporary folder)")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for torch and ORT")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--no-cuda", action="store_true", help="CPU rows only")
    parser.add_argument("--json", help="write all numbers here")
    parser.add_argument("--smoke", action="store_true", help="a few iterations of everything (a test, not a measure)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.iters, args.warmup, args.batches = 3, 1, [1, 2]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run(args)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
