"""eval-bag frames/s against rosbags' own read + decode speed on the same bag, in the same run.

Baseline: AnyReader + deserialize + rosbags-image decode of every frame, no model. Then
``evaluate_bag`` (the code behind ``dann-ros eval-bag``) on the same bag with a tiny random
model exported to ONNX:

  full          everything the command does: decode, prepare, model, result bag, reports
  frames        decode + prepare + model only (no result bag, no reports)
  no model      the frames pipeline with model time taken out by measurement: prepare and the
                model replaced by no-ops, so only eval-bag's own overhead (thread hand-off,
                batching, bookkeeping) is left on top of iter_frames' decoding; target >= 0.8
  arithmetic    frames wall time minus the time spent in prepare and the model (an estimate:
                with decoding and inference overlapped it can be optimistic)

Bags: 640x480, raw rgb8 and JPEG, a few hundred frames (written to a temp dir). Usage:
  .venv/bin/python benchmarks/eval_bag_throughput.py [--frames 300] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def tiny_model(folder: Path) -> Path:
    """A random-weight classifier with a domain head, exported to ONNX (like test/conftest.py)."""
    import torch

    from dann_ros.data.preprocess import Preprocess
    from dann_ros.export.onnx_export import export_onnx
    from dann_ros.model.builders import build_classifier, build_domain_loss
    from dann_ros.model.config import ModelConfig
    from dann_ros.train.checkpoint import model_state, save_atomic

    torch.manual_seed(0)
    pre, cfg = Preprocess(), ModelConfig(discriminator_hidden=64)
    classes = tuple(str(i) for i in range(10))
    model = build_classifier(cfg, len(classes), pre).eval()
    disc = build_domain_loss(cfg, model.feature_dim).discriminator.eval()
    ckpt = folder / "model.pt"
    save_atomic(model_state(model, disc, task="classification", classes=classes, preprocess=pre, model_config=cfg,
                            digest="bench", step=0), ckpt)
    onnx = folder / "model.onnx"
    export_onnx(ckpt, onnx)
    return onnx


def make_bags(folder: Path, n: int) -> dict[str, Path]:
    from dann_ros.data.make_bag import make_bag

    rng = np.random.default_rng(0)
    # smooth gradients plus mild noise: JPEG sizes like a camera's, not like white noise
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.dstack([(xx * 255 / 639), (yy * 255 / 479), ((xx + yy) % 256)]).astype(np.float32)

    def frames():
        for i in range(n):
            noise = rng.normal(0, 6, (480, 640, 3)).astype(np.float32)
            yield np.clip(np.roll(base, 3 * i, axis=1) + noise, 0, 255).astype(np.uint8)

    bags = {}
    for name, compressed in (("raw", False), ("jpeg", "jpeg")):
        bags[name] = folder / f"bag_{name}"
        make_bag(bags[name], frames(), compressed=compressed)
    return bags


def baseline_fps(bag: Path) -> tuple[float, int]:
    from rosbags.highlevel import AnyReader
    from rosbags.image import message_to_cvimage
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_JAZZY", None) or [s for s in Stores if s.name.startswith("ROS2_")][-1]
    t = time.perf_counter()
    n = 0
    with AnyReader([bag], default_typestore=get_typestore(store)) as reader:
        for conn, _, raw in reader.messages():
            image = message_to_cvimage(reader.deserialize(raw, conn.msgtype))
            n += image.shape[0] > 0
    return n / (time.perf_counter() - t), n


class NoModel:
    """The Predictor interface with prepare and the model as no-ops (model time taken out)."""

    def __init__(self, predictor) -> None:
        self.info, self.preprocess, self.backend = predictor.info, predictor.preprocess, predictor.backend
        self._chw = np.zeros(self.preprocess.input_shape, np.uint8)
        k = len(self.info.classes)
        self._scores = np.full((4096, k), 1.0 / k, np.float32)
        self._domain = np.full(4096, 0.5, np.float32)

    def prepare(self, image):
        return self._chw, None

    def run_prepared(self, batch):
        n = len(batch)
        return {"scores": self._scores[:n], "domain": self._domain[:n]}


class TimedPrepare:
    """Wraps a Predictor to add up the time spent in prepare (runs in eval-bag's decoder thread)."""

    def __init__(self, predictor) -> None:
        self.p = predictor
        self.info, self.preprocess, self.backend = predictor.info, predictor.preprocess, predictor.backend
        self.prepare_s = 0.0

    def prepare(self, image):
        t = time.perf_counter()
        out = self.p.prepare(image)
        self.prepare_s += time.perf_counter() - t
        return out

    def run_prepared(self, batch):
        return self.p.run_prepared(batch)


def eval_fps(predictor, bag: Path, out: Path | None, batch: int) -> dict:
    from dann_ros.evaluation.eval_bag import evaluate_bag

    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    result = evaluate_bag(predictor, bag, labels=False, out_dir=out, batch_size=batch, result_bag=out is not None,
                          html=out is not None)
    wall = time.perf_counter() - t
    r = result.report
    n = r["frames"]["evaluated"]
    return {"frames": n, "wall_s": wall, "fps_total": n / wall, "fps_frames": r["throughput"]["frames_per_second"],
            "frames_wall_s": r["throughput"]["frames_wall_s"], "inference_s": r["throughput"]["inference_s"],
            "result_bag_s": r["throughput"]["result_bag_s"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for every measurement")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)
    logging_off()

    from dann_ros.runtime.predictor import Predictor

    tmp = Path(tempfile.mkdtemp(prefix="eval_bag_bench_"))
    results = {}
    try:
        model = tiny_model(tmp)
        bags = make_bags(tmp, args.frames)
        predictor = Predictor.load(model, backend="onnxruntime", device="cpu")
        print(f"eval-bag throughput, {args.frames} frames 640x480, tiny model {predictor.info.preprocess.input_shape} "
              f"({predictor.backend.name}), batch {args.batch}, best of {args.repeat}, {os.cpu_count()} CPUs")
        for name, bag in bags.items():
            best = lambda f: max((f() for _ in range(args.repeat)), key=lambda d: d["fps"])  # noqa: E731
            base = best(lambda: dict(zip(("fps", "n"), baseline_fps(bag))))
            full = best(lambda: {**(d := eval_fps(predictor, bag, tmp / "out", args.batch)), "fps": d["fps_total"]})
            timed = TimedPrepare(predictor)
            frames = best(lambda: {**(d := eval_fps(timed, bag, None, args.batch)), "fps": d["fps_frames"]})
            timed.prepare_s /= args.repeat  # every repeat added to it
            nomodel = best(lambda: {**(d := eval_fps(NoModel(predictor), bag, None, args.batch)), "fps": d["fps_frames"]})
            model_s = frames["inference_s"] + timed.prepare_s
            arith = frames["frames"] / max(frames["frames_wall_s"] - model_s, 1e-9)
            row = {
                "baseline_fps": base["fps"],
                "eval_bag_full_fps": full["fps"], "ratio_full": full["fps"] / base["fps"],
                "eval_bag_frames_fps": frames["fps"], "ratio_frames": frames["fps"] / base["fps"],
                "no_model_fps": nomodel["fps"], "ratio_model_subtracted": nomodel["fps"] / base["fps"],
                "arithmetic_fps": arith, "ratio_model_subtracted_arithmetic": arith / base["fps"],
                "model_s": model_s, "prepare_s": timed.prepare_s, "inference_s": frames["inference_s"],
                "result_bag_s": full["result_bag_s"], "frames": frames["frames"],
            }
            results[name] = row
            print(f"\n[{name}] rosbags AnyReader+deserialize+decode: {base['fps']:8.1f} frames/s")
            print(f"  eval-bag full (result bag + report): {full['fps']:8.1f} frames/s  ratio {row['ratio_full']:.2f}"
                  f"  (result bag {full['result_bag_s']:.2f} s)")
            print(f"  eval-bag frames (decode+prepare+model): {frames['fps']:8.1f} frames/s  ratio {row['ratio_frames']:.2f}"
                  f"  (prepare {timed.prepare_s:.2f} s, model {frames['inference_s']:.2f} s)")
            print(f"  model time subtracted (measured, no-op model): {nomodel['fps']:8.1f} frames/s  "
                  f"ratio {row['ratio_model_subtracted']:.2f}  (target >= 0.8)")
            print(f"  model time subtracted (arithmetic):             {arith:8.1f} frames/s  "
                  f"ratio {row['ratio_model_subtracted_arithmetic']:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def logging_off() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
