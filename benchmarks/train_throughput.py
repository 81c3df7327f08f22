"""Training throughput: DANN vs source-only source images/s, measured in the same run.

The ratio is what to watch (these machines are noisy); the absolute figure is
compared with the reference DANN implementation's ~2,100 source images/s for a
LeNet-sized model at 128 source + 128 target images a step on 2 CPU cores.

    python benchmarks/train_throughput.py [--backbone lenet] [--steps 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from dann_ros.data.preprocess import Preprocess
from dann_ros.model.builders import build_classifier, build_domain_loss
from dann_ros.model.config import ModelConfig
from dann_ros.train.step import StepModule


def measure(method: str, model_cfg: ModelConfig, batch: int, steps: int, warmup: int, device: str) -> float:
    torch.manual_seed(0)
    model = build_classifier(model_cfg, 10, Preprocess()).to(device)
    adv = build_domain_loss(model_cfg, model.feature_dim).to(device) if method == "dann" else None
    step_module = StepModule(model, adv)
    opt = torch.optim.SGD(step_module.parameters(), lr=0.01, momentum=0.9)
    # uint8 frames as the trainer holds them, converted per step as the trainer does
    src = torch.randint(0, 256, (4096, 3, 28, 28), dtype=torch.uint8)
    tgt = torch.randint(0, 256, (4096, 3, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (4096,))
    g = torch.Generator().manual_seed(0)

    def one_step() -> None:
        i = torch.randint(len(src), (batch,), generator=g)
        x_s, y_s = src[i].to(device).float(), labels[i].to(device)
        x_t = tgt[torch.randint(len(tgt), (batch,), generator=g)].to(device).float() if adv is not None else None
        if adv is not None:
            adv.coeff = 0.5
        task, dom = step_module(x_s, y_s, x_t)
        opt.zero_grad(set_to_none=True)
        (task + dom).backward()
        opt.step()

    for _ in range(warmup):
        one_step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="lenet")
    ap.add_argument("--discriminator-hidden", type=int, default=None,
                    help="default 1024 (the demo config's value)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="alternate the two methods this many times")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reference-size", action="store_true",
                    help="LeNet with the classic 120-84 head and a 100-unit discriminator, the size of the "
                         "reference implementation's model")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reference_size:
        args.backbone = "lenet"
        hidden = 100
        cfg = ModelConfig(backbone="lenet", bottleneck_dim=0, head_hidden=(120, 84), discriminator_hidden=100,
                          discriminator_layers=1)
    else:
        hidden = args.discriminator_hidden or 1024
        cfg = ModelConfig(backbone=args.backbone, discriminator_hidden=hidden)
    rates: dict[str, list[float]] = {"none": [], "dann": []}
    for _ in range(args.repeats):  # interleaved so drifting machine load hits both alike
        for method in rates:
            rates[method].append(measure(method, cfg, args.batch, args.steps, args.warmup, args.device))
    best = {m: max(r) for m, r in rates.items()}
    print(f"backbone {args.backbone}, discriminator hidden {hidden}, batch {args.batch} source"
          f" (+{args.batch} target for DANN), device {args.device}, threads {torch.get_num_threads()}")
    print(f"{'method':<12}{'source img/s (best)':>22}{'all repeats':>30}")
    for m, r in rates.items():
        print(f"{m:<12}{best[m]:>22.0f}{', '.join(f'{x:.0f}' for x in r):>30}")
    ratio = best["dann"] / best["none"]
    print(f"DANN / source-only throughput ratio: {ratio:.2f} (DANN also runs the target batch and the "
          f"discriminator: 2x the images through the extractor)")
    print(f"vs reference 2,100 source img/s (LeNet-sized DANN): {best['dann'] / 2100:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rates": rates, "best": best, "ratio": ratio}, f, indent=2)


if __name__ == "__main__":
    main()
