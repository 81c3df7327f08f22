"""Domain randomisation in the demo simulator: its render speed, and how much it widens the source.

1. Renders the detection demo's scenes (160x120, 1-4 digits) with randomisation off and on,
   alternately in rounds (one process, one worker), and prints frames/s of both and their ratio.
2. Computes per-frame image statistics (mean luminance, contrast, colour cast, sharpness, noise,
   edge density) of both render sets and of a real target bag (the demo's real_scenes_train when
   it exists, else --target), all at the network's 128x96, and prints each statistic's 5-95%
   range and the share of target frames inside the source's 1-99% range (coverage): DANN aligns
   the target with the source, so the target should fall inside what the source covers.

    python benchmarks/synth_randomisation.py [--frames N] [--rounds N] [--target BAG] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dann_ros.demo_data.synth import Randomisation, SynthConfig, render_dataset  # noqa: E402

DEMO = dict(width=160, height=120, digits_per_image=(1, 4), digit_height=(12.0, 32.0), max_overlap=0.0)
STATS = ("luminance", "contrast", "colour_cast", "log_sharpness", "noise", "edge_density")
NET = (128, 96)


def frame_stats(rgb: np.ndarray) -> list[float]:
    f = cv2.resize(rgb, NET, interpolation=cv2.INTER_AREA).astype(np.float32)
    luma = f @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = cv2.Laplacian(luma, cv2.CV_32F)
    edges = cv2.Canny(luma.astype(np.uint8), 50, 150)
    return [float(luma.mean()), float(luma.std()), float((f[..., 0] - f[..., 2]).mean()),
            float(np.log(lap.var() + 1.0)), float(np.abs(luma - cv2.GaussianBlur(luma, (0, 0), 1.0)).mean()),
            float((edges > 0).mean())]


def render_stats(folder: Path) -> np.ndarray:
    return np.array([frame_stats(cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
                     for p in sorted(folder.glob("rgb_*.png"))])


def target_stats(bag: Path, limit: int) -> np.ndarray:
    from dann_ros.data.bags import iter_frames

    out = []
    for frame in iter_frames(bag):
        out.append(frame_stats(frame.image))
        if len(out) >= limit:
            break
    return np.array(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="frames per render round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--target", type=Path, default=ROOT / ".cache/demo/real_scenes_train")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    modes = {"off": None, "on": Randomisation()}
    fps: dict[str, list[float]] = {m: [] for m in modes}
    stats: dict[str, np.ndarray] = {}
    work = Path(tempfile.mkdtemp(prefix="synth_dr_"))
    try:
        for r in range(args.rounds):
            for mode, dr in (modes.items() if r % 2 == 0 else reversed(list(modes.items()))):
                cfg = SynthConfig(n_frames=args.frames, seed=r, randomisation=dr, **DEMO)
                out = work / f"{mode}{r}"
                t0 = time.perf_counter()
                render_dataset(out, cfg)
                fps[mode].append(args.frames / (time.perf_counter() - t0))
                if mode not in stats:
                    stats[mode] = render_stats(out)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {m: float(np.median(v)) for m, v in fps.items()}
    print(f"render speed, {args.frames} frames x {args.rounds} rounds, 1 worker, 160x120, 1-4 digits:")
    for m in modes:
        print(f"  randomisation {m:3s}: {med[m]:6.1f} frames/s  (rounds: {', '.join(f'{v:.1f}' for v in fps[m])})")
    print(f"  ratio on/off: {med['on'] / med['off']:.2f}")

    if args.target and (args.target / "metadata.yaml").exists():
        stats["target"] = target_stats(args.target, args.frames)
    print("\nper-frame statistics at 128x96: 5-95% range" + (", coverage of the target" if "target" in stats else ""))
    result = {"fps": fps, "fps_median": med, "stats": {}}
    for j, name in enumerate(STATS):
        row = {k: [float(np.percentile(v[:, j], 5)), float(np.percentile(v[:, j], 95))] for k, v in stats.items()}
        line = "  ".join(f"{k} {lo:8.2f}..{hi:<8.2f}" for k, (lo, hi) in row.items())
        if "target" in stats:
            t = stats["target"][:, j]
            for k in modes:
                lo, hi = np.percentile(stats[k][:, j], [1, 99])
                row[f"coverage_{k}"] = float(np.mean((t >= lo) & (t <= hi)))
            line += f"  coverage off {row['coverage_off']:.2f} on {row['coverage_on']:.2f}"
        print(f"  {name:14s} {line}")
        result["stats"][name] = row
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
