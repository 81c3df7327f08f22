"""Does the on-robot domain-shift monitor see shift? Both monitors, on camera bags, through the Predictor.

For each demo model (the detector det_dann and the classifier dann, when `make demo` has trained
them) this exports the checkpoint to ONNX, which fits the post-hoc feature monitor on the
adaptation-target bag the model was trained with, then writes camera bags (rosbag2, MCAP) of:

- the held-out real test bag as recorded (frames like the adaptation target, never fitted on),
- the same frames blurred (Gaussian, sigma 2 px), with sensor noise (sigma 20), and night-like
  (gamma 2.2 and a third of the light),
- another scene (the other demo task's real bag),
- the synthetic source renders,

and plays each through the Predictor (ONNX Runtime, as on the robot). It prints, per bag, the
post-hoc monitor's mean ``feature_shift`` and the share of frames at or above the node's WARN
level, next to the GRL discriminator's mean ``domain`` and the score the node derives from it
(|domain - 0.5| / 0.5). Not a timing: a check with figures, machine-independent.

    python benchmarks/monitor_shift.py [--frames N] [--out DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEMO = ROOT / ".cache/demo"
MODELS = {  # name: (checkpoint, real test bag, another scene's bag, source renders)
    "det_dann": (ROOT / "runs/demo/det_dann/model.pt", DEMO / "real_scenes_test", DEMO / "real_digits_test",
                 DEMO / "synth_det"),
    "dann": (ROOT / "runs/demo/dann/model.pt", DEMO / "real_digits_test", DEMO / "real_scenes_test", DEMO / "synth"),
}
WARN = 0.3  # the node's domain_shift_warn default


def shifted(name: str, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if name == "blur":
        return cv2.GaussianBlur(rgb, (0, 0), 2.0)
    if name == "noise":
        return np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)
    if name == "night":
        return np.clip(((rgb / 255.0) ** 2.2) * (255 / 3), 0, 255).astype(np.uint8)
    return rgb


def bag_images(bag: Path, limit: int) -> list[np.ndarray]:
    from dann_ros.data.bags import iter_frames

    out = []
    for frame in iter_frames(bag):
        out.append(frame.image)
        if len(out) >= limit:
            break
    return out


def scores(predictor, bag: Path) -> tuple[np.ndarray, np.ndarray]:
    from dann_ros.data.bags import iter_frames

    shift, domain = [], []
    for frame in iter_frames(bag):
        (r,) = predictor.infer_batch([frame.image])
        shift.append(np.nan if r.shift_score is None else r.shift_score)
        domain.append(np.nan if r.domain_score is None else r.domain_score)
    return np.array(shift), np.array(domain)


def check(name: str, frames: int, work: Path) -> dict:
    from dann_ros.data import replicator
    from dann_ros.data.make_bag import make_bag
    from dann_ros.export.onnx_export import export_onnx
    from dann_ros.runtime.predictor import Predictor

    checkpoint, test_bag, other_bag, renders = MODELS[name]
    onnx_path = work / f"{name}.onnx"
    info, _ = export_onnx(checkpoint, onnx_path)
    if not info.has_feature_monitor:
        raise RuntimeError(f"{checkpoint}: its adaptation-target bag was not found, so no monitor was fitted")
    predictor = Predictor.load(onnx_path, backend="onnxruntime")
    rng = np.random.default_rng(0)
    test = bag_images(test_bag, frames)
    sources = {"target test bag": test, "blur": [shifted("blur", im, rng) for im in test],
               "noise": [shifted("noise", im, rng) for im in test], "night": [shifted("night", im, rng) for im in test],
               "another scene": bag_images(other_bag, frames),
               "source renders": [f.load_rgb() for f in replicator.scan(renders, read_boxes=False)[:frames]]}
    rows = {}
    for label, images in sources.items():
        bag = work / f"{name}_{label.replace(' ', '_')}"
        make_bag(bag, images, fps=10.0, storage="mcap")
        shift, domain = scores(predictor, bag)
        rows[label] = {"frames": len(shift), "feature_shift_mean": float(np.nanmean(shift)),
                       "feature_shift_at_or_above_warn": float(np.mean(shift >= WARN)),
                       "grl_domain_mean": float(np.nanmean(domain)) if np.isfinite(domain).any() else None,
                       "grl_shift_score": float(np.nanmean(np.abs(domain - 0.5)) / 0.5)
                       if np.isfinite(domain).any() else None}
        shutil.rmtree(bag, ignore_errors=True)
    return {"model": str(checkpoint), "task": info.task, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=150, help="frames per bag")
    ap.add_argument("--out", type=Path, default=None, help="keep the exported models here (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    present = [n for n, (ckpt, *bags) in MODELS.items() if ckpt.exists() and all(b.exists() for b in bags)]
    if not present:
        print("no demo models or bags found: run `make demo` first")
        return 0
    work = args.out or Path(tempfile.mkdtemp(prefix="monitor_shift_"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for name in present:
            results[name] = res = check(name, args.frames, work)
            print(f"\n{name} ({res['task']}): feature_shift (post-hoc monitor) vs the GRL discriminator")
            print(f"  {'bag':16s} {'frames':>6s} {'shift mean':>10s} {'>= warn':>8s} {'GRL domain':>10s} "
                  f"{'GRL score':>9s}")
            for label, r in res["rows"].items():
                grl = (f"{r['grl_domain_mean']:10.4f} {r['grl_shift_score']:9.3f}" if r["grl_domain_mean"] is not None
                       else f"{'-':>10s} {'-':>9s}")
                print(f"  {label:16s} {r['frames']:6d} {r['feature_shift_mean']:10.3f} "
                      f"{r['feature_shift_at_or_above_warn']:8.2f} {grl}")
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
