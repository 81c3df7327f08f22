"""Training-step and inference cost of each detector backbone/neck/input size, as ratios to today's
demo detector (small_cnn, conv neck, 128x96) measured in the same run.

    python benchmarks/detector_models.py [--rounds 5] [--threads 1] [--smoke]

Training: one DANN step (16 source + 16 target images, forward, backward, Adam) as the Trainer runs
it (NHWC, bf16 autocast where the CPU has native bf16), every variant in turn in each round (so a
busy machine slows all of them alike); the median per variant. Inference: the exported ONNX graph
(decode inside) under ONNX Runtime, batch 1, the same interleaving. Random weights: the cost does
not depend on them. ``--smoke`` runs two variants at a tiny size once (the test suite runs it; its
numbers mean nothing).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

BASELINE = "small_cnn conv 128x96"
VARIANTS = {  # name: (model config fields, height, width, instance-level alignment)
    BASELINE: ({}, 96, 128, False),
    "small_cnn fpn 128x96": ({"neck": "fpn"}, 96, 128, False),
    "small_cnn fpn 128x96 +instance": ({"neck": "fpn"}, 96, 128, True),
    "resnet18 fpn 128x96": ({"backbone": "resnet18", "neck": "fpn"}, 96, 128, False),
    "mobilenet_v3_small fpn 128x96": ({"backbone": "mobilenet_v3_small", "neck": "fpn"}, 96, 128, False),
    "small_cnn conv 160x120": ({}, 120, 160, False),
    "small_cnn fpn 160x120": ({"neck": "fpn"}, 120, 160, False),
}
SMOKE = {BASELINE: ({}, 24, 32, False), "small_cnn fpn 128x96 +instance": ({"neck": "fpn"}, 24, 32, True)}


def _setup(fields: dict, h: int, w: int, instance: bool, batch: int, out: Path):
    import torch

    from dann_ros.data.preprocess import Preprocess
    from dann_ros.export.onnx_export import export_onnx
    from dann_ros.model.builders import build_discriminator, build_domain_loss, build_model
    from dann_ros.model.config import ModelConfig
    from dann_ros.train.checkpoint import model_state, save_atomic
    from dann_ros.train.step import StepModule

    torch.manual_seed(0)
    cfg = ModelConfig(discriminator_hidden=64, **fields)
    pre = Preprocess(h, w, "rgb", resize="letterbox")
    model = build_model(cfg, "detection", 10, pre).to(memory_format=torch.channels_last)
    loss = build_domain_loss(cfg, model, "dann", instance=instance, consistency=instance)
    loss.coeff = 0.5
    step = StepModule(model, loss).train()
    opt = torch.optim.Adam(step.parameters(), 1e-3)
    xs = (torch.rand(batch, 3, h, w) * 255).contiguous(memory_format=torch.channels_last)
    xt = (torch.rand(batch, 3, h, w) * 255).contiguous(memory_format=torch.channels_last)
    box = [[w * 0.1, h * 0.1, w * 0.3, h * 0.4], [w * 0.5, h * 0.2, w * 0.7, h * 0.5]]
    targets = model.encode_targets([box] * batch, [[1, 2]] * batch)
    ckpt = out / "model.pt"
    model.eval()
    save_atomic(model_state(model, build_discriminator(cfg, model).eval(), task="detection",
                            classes=tuple(map(str, range(10))), preprocess=pre, model_config=cfg, digest="bench",
                            step=0), ckpt)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(ckpt, out / "model.onnx", tolerance=1.0)  # cost only: parity has its own tests
    return step, opt, xs, xt, targets, out / "model.onnx", (h, w)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="two tiny variants once (for the test suite)")
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch

    from dann_ros.train.hardware import native_bf16

    torch.set_num_threads(args.threads)
    variants, rounds, batch, reps = (SMOKE, 1, 2, 1) if args.smoke else (VARIANTS, args.rounds, 16, 3)
    bf16 = native_bf16(torch.device("cpu"))
    tmp = Path(tempfile.mkdtemp(prefix="detector_models_"))
    setups, sessions = {}, {}
    for i, (name, (fields, h, w, instance)) in enumerate(variants.items()):
        (tmp / str(i)).mkdir()
        step, opt, xs, xt, y, onnx_path, hw = _setup(fields, h, w, instance, batch, tmp / str(i))
        setups[name] = (step, opt, xs, xt, y)
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = args.threads
        sessions[name] = (ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"]),
                          np.random.default_rng(0).uniform(0, 255, (1, 3, *hw)).astype(np.float32))

    def train_step(name: str) -> None:
        step, opt, xs, xt, y = setups[name]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            losses = step(xs, y, xt)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    train_s = {n: [] for n in variants}
    infer_s = {n: [] for n in variants}
    for name in variants:  # warm-up
        train_step(name)
        sess, x = sessions[name]
        sess.run(None, {"images": x})
    for _ in range(rounds):
        for name in variants:
            t = time.perf_counter()
            for _ in range(reps):
                train_step(name)
            train_s[name].append((time.perf_counter() - t) / reps)
            sess, x = sessions[name]
            t = time.perf_counter()
            for _ in range(reps * 5):
                sess.run(None, {"images": x})
            infer_s[name].append((time.perf_counter() - t) / (reps * 5))
    base_t, base_i = statistics.median(train_s[BASELINE]), statistics.median(infer_s[BASELINE])
    print(f"DANN training step ({batch}+{batch} images, bf16 {'on' if bf16 else 'off'}) and ONNX Runtime "
          f"inference (batch 1), {args.threads} thread(s), median of {rounds} interleaved rounds; "
          f"ratios to {BASELINE}")
    for name in variants:
        t, i = statistics.median(train_s[name]), statistics.median(infer_s[name])
        print(f"{name:34s} step {t:7.3f} s ({t / base_t:4.2f}x)   inference {1000 * i:7.2f} ms ({i / base_i:4.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
