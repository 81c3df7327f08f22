"""Training speed: our DANN step against the reference DANN recipe's step, measured in the same run.

The reference is tllib's digits DANN recipe, written out here (not imported): LeNet
(conv 20, conv 50, fc 500, dropout), bottleneck Linear(500, 256)-BN-ReLU, head
Linear(256, 10), DomainDiscriminator(256, 1024) with a sigmoid and BCE, the GRL
coefficient and learning rate set per iteration, SGD nesterov with weight decay,
its meters read with .item() every step; fp32, NCHW. It gets its batches as float
tensors already normalised, so the data pipeline costs it nothing (tllib's
DataLoader of PIL images would cost more): only its arithmetic is compared.

Ours is ``Trainer.train_step`` itself (batch gathering from the uint8 frames, the
schedules, the losses, clipping, the update) on the demo config's model, and on the
reference's own architecture; plus that architecture in our trainer with our speed
features turned off, to show where the time goes. Rounds are interleaved and the
best of each is kept (a shared machine's load drifts); ratios are the figure to read.

time-to-90% = steps to 90% target accuracy x seconds per step: the reference's steps
come from its measured curve (../shared/notes/measured.md: first >= 90% at iteration
3,500), ours from a run's metrics.json (``--ours-metrics``) or the README's 3-seed runs.

    python benchmarks/train_throughput.py [--steps 30] [--repeats 3] [--smoke] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dann_ros.paths import share_file
from dann_ros.train.config import load_train_config
from dann_ros.data.frame_store import MemoryStore
from dann_ros.train.data import TrainData
from dann_ros.train.hardware import native_bf16
from dann_ros.train.trainer import Trainer

REFERENCE_STEPS_TO_90 = 3500  # tllib digits DANN on the demo data (measured.md): 89.3 at 3,000, 90.4 at 3,500
# demo recipe (DANN + MCC + geometric): the 3-seed mean first >= 90% at step 500 (README) unless --ours-metrics
OURS_STEPS_TO_90 = 500


# ------------------------------------------------------------------------------ the reference
class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


class ReferenceDANN(nn.Module):
    """tllib's digits DANN model and loss, as its recipe builds them."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 20, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(20, 50, kernel_size=5), nn.Dropout2d(p=0.5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(), nn.Linear(50 * 4 * 4, 500), nn.ReLU(), nn.Dropout(p=0.5))
        self.bottleneck = nn.Sequential(nn.Linear(500, 256), nn.BatchNorm1d(256), nn.ReLU())
        self.head = nn.Linear(256, num_classes)
        self.discriminator = nn.Sequential(
            nn.Linear(256, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
            nn.Linear(1024, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
            nn.Linear(1024, 1), nn.Sigmoid())


class ReferenceStep:
    """One tllib DANN iteration: forward of cat(source, target), CE + 0.5 (BCE_s + BCE_t) behind
    the GRL, backward, SGD step, LambdaLR step, and the meters' .item() reads."""

    def __init__(self, batch: int, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = ReferenceDANN()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3, nesterov=True)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda i: (1 + 0.001 * i) ** -0.75)
        g = torch.Generator().manual_seed(seed)
        self.x_s = (torch.rand(2048, 1, 28, 28, generator=g) - 0.5) / 0.5  # already normalised floats
        self.x_t = (torch.rand(2048, 1, 28, 28, generator=g) - 0.5) / 0.5
        self.y_s = torch.randint(0, 10, (2048,), generator=g)
        self.g, self.batch, self.i = g, batch, 0
        self.meters: list[float] = []

    def __call__(self) -> None:
        m, b = self.model, self.batch
        m.train()
        i_s = torch.randint(len(self.x_s), (b,), generator=self.g)
        i_t = torch.randint(len(self.x_t), (b,), generator=self.g)
        x = torch.cat([self.x_s[i_s], self.x_t[i_t]])
        f = m.bottleneck(m.backbone(x))
        y = m.head(f)
        y_s = y[:b]
        coeff = 2.0 / (1.0 + math.exp(-self.i / 1000)) - 1.0  # WarmStartGradientReverseLayer(alpha 1, 1000 iters)
        d = m.discriminator(_ReverseGrad.apply(f, coeff))
        d_s, d_t = d[:b], d[b:]
        cls_loss = F.cross_entropy(y_s, self.y_s[i_s])
        transfer = 0.5 * (F.binary_cross_entropy(d_s, torch.ones_like(d_s)) +
                          F.binary_cross_entropy(d_t, torch.zeros_like(d_t)))
        loss = cls_loss + transfer
        domain_acc = 0.5 * ((d_s >= 0.5).float().mean() + (d_t < 0.5).float().mean())
        cls_acc = (y_s.argmax(1) == self.y_s[i_s]).float().mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.i += 1
        self.meters = [loss.item(), cls_acc.item(), domain_acc.item()]


# ------------------------------------------------------------------------------ ours
def _random_data(channels: int, n: int = 2048, seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, channels, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int64)
    source = MemoryStore(frames, {"class_ids": labels}, {}, {})
    val = MemoryStore(frames[:64], {"class_ids": labels[:64]}, {}, {})
    return TrainData(tuple(str(i) for i in range(10)), source, val, [MemoryStore(frames[::-1].copy(), {}, {}, {})],
                     None)


class OurStep:
    """``Trainer.train_step`` on in-memory random frames (no files, nothing written)."""

    def __init__(self, config: Path, out: Path, **overrides) -> None:
        cfg = load_train_config(config)
        cfg = cfg.replace(**{"output_dir": out, "train.device": "cpu", "eval_target": None, **overrides})
        self.trainer = Trainer(cfg, resume=False, show_progress=False, data=_random_data(cfg.preprocess.num_channels))
        self.trainer.step_module.train()
        # timed in the run's last quarter, where every opt-in extra of the config is on (pseudo-labels
        # start half-way; their teacher's forward pass is part of the step)
        self.trainer.step = cfg.train.steps * 3 // 4
        self.describe = (f"{cfg.model.backbone} {cfg.preprocess.channels}, bottleneck {cfg.model.bottleneck_dim}, "
                         f"discriminator {cfg.model.discriminator_hidden}x{cfg.model.discriminator_layers}, "
                         f"{'NHWC' if cfg.train.channels_last else 'NCHW'}, "
                         f"{'bf16' if self.trainer.autocast else 'fp32'}")

    def __call__(self) -> None:
        t = self.trainer
        t._apply_schedules(t.step)
        t.train_step(t.step)
        t.step += 1


def timed(step, steps: int, warmup: int, batch: int) -> float:
    """Source images per second over ``steps`` steps after ``warmup``."""
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def steps_to(metrics: Path, threshold: float = 0.90) -> int | None:
    hist = json.loads(metrics.read_text())["history"]
    return next((h["step"] for h in hist if (h.get("target_accuracy") or 0) >= threshold), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(share_file("config", "train_demo.yaml")))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best of each is kept")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ours-metrics", type=Path, help="a demo DANN run's metrics.json: its steps to 90%%")
    ap.add_argument("--smoke", action="store_true", help="a few steps, one round: checks the script runs")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.repeats = 2, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    import tempfile

    base = load_train_config(args.config)
    batch = base.train.batch_size
    reference_arch = {"model.backbone": "tllib_lenet", "model.bottleneck_dim": 256, "model.dropout": 0.0,
                      "model.discriminator_hidden": 1024, "model.discriminator_layers": 2,
                      "preprocess.channels": "grey", "preprocess.mean": [0.5], "preprocess.std": [0.5]}
    with tempfile.TemporaryDirectory() as tmp:
        runners = {
            "reference": ReferenceStep(batch),
            "ours_demo": OurStep(args.config, Path(tmp) / "a"),
            "ours_reference_arch": OurStep(args.config, Path(tmp) / "b", **reference_arch),
            "ours_reference_arch_plain": OurStep(args.config, Path(tmp) / "c", **reference_arch,
                                                 **{"train.channels_last": False, "train.amp": False}),
        }
        rates: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.repeats):  # interleaved so drifting machine load hits all alike
            for name, step in runners.items():
                rates[name].append(timed(step, args.steps, args.warmup, batch))
        described = {k: getattr(r, "describe", "tllib LeNet grey, fp32 NCHW, its own loop") for k, r in runners.items()}
    best = {k: max(v) for k, v in rates.items()}
    ours_steps = OURS_STEPS_TO_90
    if args.ours_metrics:
        ours_steps = steps_to(args.ours_metrics) or ours_steps
    print(f"batch {batch} source + {batch} target images a step, threads {torch.get_num_threads()}, "
          f"CPU native bf16: {native_bf16(torch.device('cpu'))}")
    print(f"{'step':<28}{'source img/s':>14}{'vs reference':>14}   what")
    for k in runners:
        print(f"{k:<28}{best[k]:>14.0f}{best[k] / best['reference']:>13.2f}x   {described[k]}")
    ratio_demo = best["ours_demo"] / best["reference"]
    ratio_arch = best["ours_reference_arch"] / best["reference"]
    print(f"ratio demo model DANN step / reference step: {ratio_demo:.2f} (goal >= 1.2)")
    print(f"ratio our trainer on the reference architecture / reference step: {ratio_arch:.2f} (goal >= 1.2)")
    sec = {k: batch / v for k, v in best.items()}
    t_ref = REFERENCE_STEPS_TO_90 * sec["reference"]
    t_ours = ours_steps * sec["ours_demo"]
    print(f"time-to-90%: reference {REFERENCE_STEPS_TO_90} steps x {sec['reference'] * 1e3:.1f} ms = {t_ref:.0f} s; "
          f"ours {ours_steps} steps x {sec['ours_demo'] * 1e3:.1f} ms = {t_ours:.0f} s; "
          f"ratio {t_ref / t_ours:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"rates": rates, "best": best, "ratio_demo": ratio_demo,
                                               "ratio_reference_arch": ratio_arch,
                                               "time_to_90_s": {"reference": t_ref, "ours": t_ours},
                                               "steps_to_90": {"reference": REFERENCE_STEPS_TO_90, "ours": ours_steps}},
                                              indent=2))


if __name__ == "__main__":
    main()
