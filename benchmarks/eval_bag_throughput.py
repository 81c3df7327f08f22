"""eval-bag frames/s against rosbags' own read + decode speed on the same bag, in the same run.

Baseline: AnyReader + deserialize + rosbags-image decode of every frame, no model. Then
``evaluate_bag`` (the code behind ``dann-ros eval-bag``) on the same bag with a tiny random
model exported to ONNX:

  no model      model time taken out by measurement: prepare and the model replaced by no-ops,
                so only eval-bag's own overhead (thread hand-off, batching, bookkeeping) is
                left on top of iter_frames' decoding; target >= 0.8
  frames        decode + prepare + model (no result bag, no reports): what the model costs
  full          everything the command does: + result bag (a byte copy of every frame) + reports
  iter_frames   dann_ros.data.bags.iter_frames alone, for reference (it copies each frame into
                its own RGB array, the baseline's rosbags-image decode returns a view)

Measurements are interleaved round by round and each is the best of its rounds, so load from
other processes on a shared machine hits all of them alike.

Bags: 640x480, raw rgb8 and JPEG, a few hundred frames (written to a temp dir). Usage:
  .venv/bin/python benchmarks/eval_bag_throughput.py [--frames 300] [--repeat 5] [--json out.json]
  .venv/bin/python benchmarks/eval_bag_throughput.py --smoke   # 8 frames, one round: that it runs (the suite)
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
        self.decode = predictor.decode  # eval-bag decodes through it, as the node does (a cost it keeps)
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
        self.decode = predictor.decode  # eval-bag decodes through it, as the node does (a cost it keeps)
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


def iter_frames_fps(bag: Path) -> float:
    from dann_ros.data.bags import iter_frames

    t = time.perf_counter()
    n = sum(1 for _ in iter_frames(bag))
    return n / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5, help="rounds; every measurement is the best of its rounds")
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--smoke", action="store_true", help="8 frames, one round, batch 4: checks that every mode runs "
                                                         "(the test suite runs this), measures nothing")
    args = ap.parse_args(argv)
    if args.smoke:
        args.frames, args.repeat, args.batch = 8, 1, 4
    logging_off()

    from dann_ros.runtime.predictor import Predictor

    tmp = Path(tempfile.mkdtemp(prefix="eval_bag_bench_"))
    results = {}
    try:
        model = tiny_model(tmp)
        bags = make_bags(tmp, args.frames)
        predictor = Predictor.load(model, backend="onnxruntime", device="cpu")
        print(f"eval-bag throughput, {args.frames} frames 640x480, tiny model {predictor.info.preprocess.input_shape} "
              f"({predictor.backend.name}), batch {args.batch}, best of {args.repeat} interleaved rounds, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        for name, bag in bags.items():
            runs: dict[str, list] = {"base": [], "iter": [], "nomodel": [], "frames": [], "full": []}
            timed = TimedPrepare(predictor)
            for _ in range(args.repeat):  # interleaved, so a burst of load elsewhere hits every mode alike
                runs["base"].append(baseline_fps(bag)[0])
                runs["iter"].append(iter_frames_fps(bag))
                runs["nomodel"].append(eval_fps(NoModel(predictor), bag, None, args.batch))
                timed.prepare_s = 0.0
                runs["frames"].append({**eval_fps(timed, bag, None, args.batch), "prepare_s": timed.prepare_s})
                runs["full"].append(eval_fps(predictor, bag, tmp / "out", args.batch))
            base, it = max(runs["base"]), max(runs["iter"])
            nomodel = max(runs["nomodel"], key=lambda d: d["fps_frames"])
            frames = max(runs["frames"], key=lambda d: d["fps_frames"])
            full = max(runs["full"], key=lambda d: d["fps_total"])
            other_s = full["wall_s"] - full["frames_wall_s"] - full["result_bag_s"]
            row = {
                "baseline_fps": base, "iter_frames_fps": it,
                "eval_bag_full_fps": full["fps_total"], "ratio_full": full["fps_total"] / base,
                "eval_bag_frames_fps": frames["fps_frames"], "ratio_frames": frames["fps_frames"] / base,
                "no_model_fps": nomodel["fps_frames"], "ratio_model_subtracted": nomodel["fps_frames"] / base,
                "prepare_s": frames["prepare_s"], "inference_s": frames["inference_s"],
                "result_bag_s": full["result_bag_s"], "reports_and_setup_s": other_s, "frames": frames["frames"],
            }
            results[name] = row
            print(f"\n[{name}] rosbags AnyReader+deserialize+decode (baseline): {base:8.1f} frames/s")
            print(f"  dann_ros iter_frames alone (reference):          {it:8.1f} frames/s  ratio {it / base:.2f}")
            print(f"  eval-bag, model time taken out (no-op model):    {nomodel['fps_frames']:8.1f} frames/s  "
                  f"ratio {row['ratio_model_subtracted']:.2f}  (target >= 0.8)")
            print(f"  eval-bag frames (decode + prepare + model):      {frames['fps_frames']:8.1f} frames/s  "
                  f"ratio {row['ratio_frames']:.2f}  (prepare {frames['prepare_s']:.2f} s, model "
                  f"{frames['inference_s']:.2f} s, overlapped with decoding)")
            print(f"  eval-bag full command (+ result bag + reports):  {full['fps_total']:8.1f} frames/s  "
                  f"ratio {row['ratio_full']:.2f}  (result bag {full['result_bag_s']:.2f} s, reports and set-up "
                  f"{other_s:.2f} s)")
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
