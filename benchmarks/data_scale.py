"""Data at robot scale: peak RSS and source images/s of the streamed data path, in one run.

1. Writes a large synthetic target bag (JPEG camera frames panning over a scene) and a large
   Replicator set (BasicWriter layout: rgb PNGs, tight boxes, labels), then decodes both once
   into frame stores at a large network input (default 384 x 512: 590 KB a frame). Prints the
   decode rate (frames/s) and the build's peak RSS.
2. Trains a few hundred steps streaming from those stores (DataLoader workers; a light
   stride-8 CNN with a task head on the source and a domain head behind a gradient reversal
   layer, since a real detector at this input size is too slow for a CPU benchmark: what is
   measured is the data path's memory and feed rate). Prints peak RSS of the process and its
   workers against what the in-RAM path would hold (the frames themselves; today's loader peaks
   near twice that while stacking them).
3. Trains the detection demo's config (small_cnn CenterNet + pixel discriminator) on the large set at
   that input, streamed, with evaluation on: source-val and eval-target mAP (a labelled JPEG bag of
   other renders), box stability and the proxy A-distance after training (issue 22: the fixed
   128-frame evaluation batches were killed at 24 GB). Samples the anonymous memory (RssAnon) of
   the process and its DataLoader workers and prints its peak, in training and in evaluation,
   against the issue's goal (< 3 GB). ``--detection-only`` runs just this measurement (with the data
   it needs); the issue's full figure: ``--detection-only --target-frames 8000 --source-frames 3000``.
4. On a small set (the demo's 28 x 28 digit crops and target frames) runs the real DANN step
   through the Trainer itself (lenet classifier + domain discriminator, 128 + 128 images a step)
   with ``train.data: ram`` (the stores in RAM, batches assembled in-process) and ``stream`` (read
   from disk by DataLoader workers), and, as the baseline, the former trainer's batching (uint8
   tensors indexed in the training process) with the same step, alternately in fresh processes;
   prints peak RSS and source images/s of each and the ratios.

Every measurement runs in its own process (peak RSS is per process). Figures are wall-clock on
whatever machine runs this: compare the ratios printed, not absolute numbers across machines.

    python benchmarks/data_scale.py [--big] [--smoke] [--target-frames N] [--source-frames N]
                                    [--input-hw H W] [--steps N] [--detection-steps N] [--detection-batch N]
                                    [--eval-target-frames N] [--detection-only] [--rounds N] [--workers N]
                                    [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Sizes:
    target_frames: int = 3000  # large target bag, 640 x 480 JPEG
    source_frames: int = 1500  # large Replicator set, 640 x 480 PNG
    input_hw: tuple[int, int] = (384, 512)
    large_steps: int = 200
    large_batch: int = 16
    small_source_frames: int = 4000  # demo-like digit renders (one crop each)
    small_target_frames: int = 2000
    small_steps: int = 200
    small_batch: int = 128
    rounds: int = 2
    distinct: int = 48  # distinct Replicator renders, repeated (hard links) up to source_frames
    detection_steps: int = 30  # the detection run with evaluation (issue 22's: 30 steps of batch 8)
    detection_batch: int = 8
    eval_target_frames: int = 200  # labelled 640 x 480 JPEG frames the detector's eval-target mAP reads


PRESETS = {
    "default": Sizes(),
    # 30 minutes of one 30 Hz camera and a 50,000-frame Replicator set (the example: ~62 GB)
    "big": Sizes(target_frames=54_000, source_frames=50_000),
    "smoke": Sizes(target_frames=40, source_frames=24, input_hw=(96, 128), large_steps=4, large_batch=4,
                   small_source_frames=120, small_target_frames=60, small_steps=4, small_batch=16, rounds=1,
                   distinct=6, detection_steps=2, detection_batch=4, eval_target_frames=8),
}


def _status_kb(pid: int | str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: per address space, so not inherited from the parent)."""
    return _status_kb("self", "VmHWM") / 1024


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _pss_kb(pid: int, field: str = "Pss") -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemoryWatch:
    """Samples, every ``every_s``, the proportional set size (PSS) of this process and its children
    (DataLoader workers: forked, they share the parent's pages, which their RSS would count again) and
    their anonymous memory, what the out-of-memory killer counts: RssAnon summed (pages a forked worker
    still shares with its parent count twice: an upper bound) and Pss_Anon summed (shared pages split
    between the processes). Peaks are kept per ``stage`` (set by the caller: training, evaluation)."""

    def __init__(self, every_s: float = 0.1) -> None:
        import threading

        self.peak_total_kb = self.peak_worker_hwm_kb = 0
        self.stage = "start"
        self.peak_anon_kb: dict[str, int] = {}
        self.peak_pss_anon_kb: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def sample(self) -> None:
        """One sample now; also called while the workers are known to be alive, since on a loaded machine
        a short run's workers may come and go between two samples of the thread."""
        me = os.getpid()
        kids = _children(me)
        self.peak_total_kb = max(self.peak_total_kb, _pss_kb(me) + sum(_pss_kb(k) for k in kids))
        anon = sum(_status_kb(p, "RssAnon") for p in [me, *kids])
        self.peak_anon_kb[self.stage] = max(self.peak_anon_kb.get(self.stage, 0), anon)
        pss_anon = sum(_pss_kb(p, "Pss_Anon") for p in [me, *kids])
        self.peak_pss_anon_kb[self.stage] = max(self.peak_pss_anon_kb.get(self.stage, 0), pss_anon)
        for k in kids:
            self.peak_worker_hwm_kb = max(self.peak_worker_hwm_kb, _status_kb(k, "VmHWM"))

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(every_s)

    def stop(self) -> tuple[float, float]:
        """(peak PSS of this process + its workers, largest worker VmHWM), MB."""
        self._stop.set()
        self._thread.join()
        return self.peak_total_kb / 1024, self.peak_worker_hwm_kb / 1024

    def anon_mb(self, proportional: bool = False) -> dict[str, float]:
        """Peak anonymous memory (this process + its workers: RssAnon, or Pss_Anon) per stage, MB."""
        peaks = self.peak_pss_anon_kb if proportional else self.peak_anon_kb
        return {k: v / 1024 for k, v in peaks.items()}


# --------------------------------------------------------------------------- data

def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    import cv2

    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([(x / w) * 200 + 30, (y / h) * 160 + 40, ((x + y) / (w + h)) * 120 + 60], -1)
    img = img.astype(np.uint8)
    for _ in range(60):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(8, 60)), c, -1)
        corner = [tuple(int(v) for v in rng.integers(0, (w, h))) for _ in range(2)]
        cv2.rectangle(img, corner[0], corner[1], c, int(rng.integers(2, 6)))
    return img


def write_target_bag(path: Path, frames: int, seed: int = 0) -> Path:
    """A camera panning across a textured scene: every frame different, JPEG-compressed like a real log."""
    from dann_ros.data.make_bag import make_bag

    if (path / "metadata.yaml").exists():
        return path
    rng = np.random.default_rng(seed)
    scene = _scene(rng, 480 * 2, 640 * 2)

    def images():
        for i in range(frames):
            t = i / max(frames - 1, 1) * 2 * np.pi * 7
            oy, ox = int((np.sin(t) + 1) / 2 * 480), int((np.cos(t * 0.7) + 1) / 2 * 640)
            yield np.ascontiguousarray(scene[oy:oy + 480, ox:ox + 640])

    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    make_bag(tmp, images(), compressed="jpeg", fps=30.0, jpeg_quality=85)
    os.replace(tmp, path)
    return path


def write_replicator_set(root: Path, frames: int, distinct: int, hw: tuple[int, int], seed: int = 1) -> Path:
    """``distinct`` BasicWriter-layout renders (dann-ros synth), each repeated as hard links up to
    ``frames`` frames: every frame is still read and decoded on its own."""
    from dann_ros.demo_data.synth import SynthConfig, render_dataset

    done = root / "complete.json"
    if done.exists() and json.loads(done.read_text()) == {"frames": frames, "distinct": distinct, "hw": list(hw)}:
        return root
    shutil.rmtree(root, ignore_errors=True)
    base = root.with_name(root.name + ".base")
    shutil.rmtree(base, ignore_errors=True)
    render_dataset(base, SynthConfig(n_frames=distinct, width=hw[1], height=hw[0], digits_per_image=(2, 5),
                                     seed=seed))
    root.mkdir(parents=True)
    kinds = [("rgb_", ".png"), ("bounding_box_2d_tight_", ".npy"), ("bounding_box_2d_tight_labels_", ".json")]
    for i in range(frames):
        for prefix, suffix in kinds:
            os.link(base / f"{prefix}{i % distinct:04d}{suffix}", root / f"{prefix}{i:06d}{suffix}")
    done.write_text(json.dumps({"frames": frames, "distinct": distinct, "hw": list(hw)}))
    return root


def write_small_set(work: Path, sizes: Sizes) -> tuple[Path, Path]:
    """Demo-sized data: 64 x 64 single-digit renders (cropped to 28 x 28) and a 64 x 64 target bag."""
    from dann_ros.data.make_bag import make_bag
    from dann_ros.demo_data.synth import SynthConfig, render_dataset

    renders, bag = work / "small_renders", work / "small_target.bag"
    marker = renders / "complete.json"
    if not (marker.exists() and json.loads(marker.read_text()) == {"frames": sizes.small_source_frames}):
        shutil.rmtree(renders, ignore_errors=True)
        render_dataset(renders, SynthConfig(n_frames=sizes.small_source_frames, seed=4))
        marker.write_text(json.dumps({"frames": sizes.small_source_frames}))
    if not (bag / "metadata.yaml").exists():
        rng = np.random.default_rng(5)
        scene = _scene(rng, 256, 256)
        images = (np.ascontiguousarray(255 - scene[i % 192:i % 192 + 64, (7 * i) % 192:(7 * i) % 192 + 64])
                  for i in range(sizes.small_target_frames))
        make_bag(bag, images, compressed="jpeg", fps=30.0)
    return renders, bag


def write_eval_scenes(work: Path, frames: int, distinct: int) -> Path:
    """A labelled 640 x 480 JPEG detection bag (the Replicator renders, inverted: another domain) for the
    detection run's eval target; returns the bag (its labels beside it, ``<bag>.labels.json``)."""
    from dann_ros.data.make_bag import write_detection_bag
    from dann_ros.data.labels import LabelBox
    from dann_ros.data.replicator import scan

    bag = work / "eval_scenes.bag"
    marker = work / "eval_scenes.json"
    if marker.exists() and json.loads(marker.read_text()) == {"frames": frames} and (bag / "metadata.yaml").exists():
        return bag
    shutil.rmtree(bag, ignore_errors=True)
    renders = scan(work / "large_renders.base")[:distinct]
    boxes: list = []

    def images():
        for i in range(frames):
            frame = renders[i % len(renders)]
            boxes.append([LabelBox(b.x_min, b.y_min, b.x_max, b.y_max, b.class_name) for b in frame.boxes])
            yield np.ascontiguousarray(255 - frame.load_rgb())

    classes = sorted({b.class_name for f in renders for b in f.boxes})
    write_detection_bag(bag, images(), boxes, classes, compressed="jpeg", fps=10.0, jpeg_quality=85)
    marker.write_text(json.dumps({"frames": frames}))
    return bag


# --------------------------------------------------------------------------- phases (each in a child)

def _stores(args) -> dict:
    from dann_ros.data import replicator
    from dann_ros.data.bags import BagSelection
    from dann_ros.data.frame_cache import bag_store, crop_store, detection_store
    from dann_ros.data.preprocess import Preprocess

    work, cache = Path(args.work), Path(args.work) / "cache"
    if args.set == "large":
        pp = Preprocess(height=args.hw[0], width=args.hw[1], resize="letterbox")
        source = detection_store(work / "large_renders", 0.6, (), pp, cache)
        target = bag_store(work / "large_target.bag", BagSelection(), pp, cache)
    else:
        pp = Preprocess()
        source = crop_store(work / "small_renders", replicator.CropSpec(), (), pp, cache)
        target = bag_store(work / "small_target.bag", BagSelection(), pp, cache)
    return {"source": source, "target": target}


def phase_build(args) -> dict:
    t0, wall = time.perf_counter(), time.time()
    stores = _stores(args)
    seconds = time.perf_counter() - t0
    frames = sum(len(s) for s in stores.values())
    built = {k: s.meta.get("build_seconds") for k, s in stores.items()}
    cached = all((s.path / "meta.json").stat().st_mtime < wall for s in stores.values())
    if cached:  # opened, not built: report the rate of the build that made them
        seconds = sum(built.values())
    return {"frames": frames, "seconds": seconds, "frames_per_s": frames / seconds, "cached": cached,
            "store_bytes": sum(len(s) * s.record_bytes for s in stores.values()),
            "build_seconds": built, "rss_mb": peak_rss_mb(),
            "records": {k: [len(s), list(s.record_shape)] for k, s in stores.items()}}


def _light_model(channels: int, classes: int):
    """A stride-8 CNN with a task head and a domain head behind a gradient reversal layer."""
    import torch
    from torch import nn

    from dann_ros.model.grl import GradientReverseLayer

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(channels, 16, 8, 8), nn.ReLU(), nn.Conv2d(16, 32, 3, 2),
                                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.task = nn.Linear(32, classes)
            self.grl = GradientReverseLayer()
            self.domain = nn.Linear(32, 1)

        def forward(self, x_s, y_s, x_t):
            f = self.features(torch.cat([x_s, x_t]) / 127.5 - 1)
            n = len(x_s)
            task = nn.functional.cross_entropy(self.task(f[:n]), y_s)
            d = self.domain(self.grl(f)).squeeze(1)
            dom = nn.functional.binary_cross_entropy_with_logits(d, torch.cat([torch.ones(n), torch.zeros(len(x_t))]))
            return task, dom

    return Probe()


def _first_box_class(boxes: list, classes: list, none: int):
    import torch

    return torch.tensor([int(c[0]) if len(c) else none for c in classes], dtype=torch.int64)


def phase_trainer(args) -> dict:
    """The small set through ``Trainer.train_step`` with ``train.data`` = ``args.path`` (ram | stream)."""
    import torch

    from dann_ros.typed_config import from_dict
    from dann_ros.train.config import TrainConfig
    from dann_ros.train.trainer import Trainer

    watch = MemoryWatch()
    rss_start = peak_rss_mb()
    work = Path(args.work)
    cfg = from_dict(TrainConfig, {
        "output_dir": str(work / "runs" / args.path), "cache_dir": str(work / "cache"), "seed": 0,
        "source": {"replicator": str(work / "small_renders")}, "target": {"bags": [str(work / "small_target.bag")]},
        "model": {"backbone": "lenet"}, "selection": "source_val",
        "train": {"steps": args.steps, "batch_size": args.batch, "eval_every": 10**9, "checkpoint_every": 10**9,
                  "device": "cpu", "data": args.path, "workers": args.workers}})
    trainer = Trainer(cfg, resume=False, show_progress=False)
    rss_data = peak_rss_mb()
    trainer.step_module.train()
    trainer._open_loader()
    warmup, waited, t0 = max(2, min(10, args.steps // 10)), 0.0, None
    real_batch = trainer._batch
    def timed_batch(step):  # the time the training process waits for (and converts) its batch
        nonlocal waited
        t = time.perf_counter()
        out = real_batch(step)
        waited += time.perf_counter() - t
        return out
    trainer._batch = timed_batch
    for n in range(args.steps):
        if n == warmup:
            t0, waited = time.perf_counter(), 0.0
        trainer._apply_schedules(trainer.step)
        trainer.train_step(trainer.step)
        trainer.step += 1
    seconds = time.perf_counter() - t0
    trainer._loader = None
    total, worker = watch.stop()
    steps = args.steps - warmup
    return {"set": "small", "path": args.path, "steps": steps, "batch": args.batch,
            "workers": 0 if trainer.data.in_ram else args.workers,
            "source_images_per_s": steps * args.batch / seconds, "rss_mb": peak_rss_mb(), "worker_rss_mb": worker,
            "total_mb": max(total, peak_rss_mb()), "rss_after_imports_mb": rss_start, "rss_after_data_mb": rss_data,
            "frames": {"source": len(trainer.data.source) + len(trainer.data.source_val),
                       "target": trainer.data.n_target},
            "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
            "data_wait_ms": waited / steps * 1000, "step_ms": seconds / steps * 1000}


def phase_train(args) -> dict:
    import torch

    from dann_ros.train.streaming import StepBatches, Stream, step_loader, to_device

    torch.manual_seed(0)
    watch = MemoryWatch()
    rss_start = peak_rss_mb()
    stores = _stores(args)
    source, target = stores["source"], stores["target"]
    large = args.set == "large"
    if large:
        classes = len(source.meta["notes"]["class_names"]) + 1
        model = _light_model(source.record_shape[0], classes)
        step_fn = model
        params = list(model.parameters())
    else:
        from dann_ros.data.preprocess import Preprocess
        from dann_ros.model.builders import build_classifier, build_domain_loss
        from dann_ros.model.config import ModelConfig

        classes = len(source.meta["notes"]["class_names"])
        cfg = ModelConfig(backbone="lenet")
        net = build_classifier(cfg, classes, Preprocess())
        adv = build_domain_loss(cfg, net.feature_dim)
        adv.coeff = 0.5

        def step_fn(x_s, y_s, x_t):  # the DANN step: one pass over source + target, task + domain loss
            features, logits = net.forward_train(torch.cat([x_s, x_t]))
            n = len(x_s)
            return net.task_loss(logits[:n], y_s), adv(features[:n], features[n:])

        params = list(net.parameters()) + list(adv.parameters())
        net.train()
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    batch, steps, warmup = args.batch, args.steps, max(2, min(10, args.steps // 10))
    device = torch.device("cpu")

    def train_step(x_s, y_s, x_t):
        task, dom = step_fn(x_s, y_s, x_t)
        opt.zero_grad(set_to_none=True)
        (task + dom).backward()
        opt.step()

    if args.path == "indexed":
        # the former trainer: every frame in RAM as a uint8 tensor, batches indexed in the training process
        src_images = torch.from_numpy(source.load().images)
        labels = torch.from_numpy(source.columns["class_ids"].astype(np.int64))
        tgt_images = torch.from_numpy(target.load().images)
        rss_data = peak_rss_mb()

        def batches():
            for step in range(steps):
                g = torch.Generator().manual_seed(step)
                i = torch.randint(len(src_images), (batch,), generator=g)
                yield src_images[i].float(), labels[i], tgt_images[torch.randint(len(tgt_images), (batch,),
                                                                                  generator=g)].float()
    else:
        rss_data = peak_rss_mb()
        ragged = ("box_classes",) if large else ()
        src = Stream.of([source], 0, batch, label=None if large else "class_ids", ragged=ragged)
        tgt = Stream.of([target], 1, batch)
        loader = step_loader(StepBatches(src, tgt, 0), 0, steps, num_workers=args.workers)

        def batches():
            for item in loader:
                b = to_device(item, device)
                s = b["source"]
                y = _first_box_class([], s["box_classes"], classes - 1) if large else s["labels"]
                yield s["images"], y, b["target"]["images"]

    t0, waited, it = None, 0.0, batches()
    for n in range(steps):
        if n == warmup:
            t0, waited = time.perf_counter(), 0.0
        t = time.perf_counter()
        x_s, y_s, x_t = next(it)  # the time the training process waits for its batch
        waited += time.perf_counter() - t
        if n == 0:
            watch.sample()  # the workers are alive now
        train_step(x_s, y_s, x_t)
    seconds = time.perf_counter() - t0
    for _ in it:  # let the loader finish (joins its workers)
        pass
    total, worker = watch.stop()
    main = peak_rss_mb()
    return {"set": args.set, "path": args.path, "steps": steps - warmup, "batch": batch, "workers":
            args.workers if args.path == "stream" else 0, "source_images_per_s": (steps - warmup) * batch / seconds,
            "rss_mb": main, "worker_rss_mb": worker, "total_mb": max(total, main),
            "rss_after_imports_mb": rss_start, "rss_after_data_mb": rss_data,
            "frames": {"source": len(source), "target": len(target)}, "threads": torch.get_num_threads(),
            "load_average": os.getloadavg()[0], "data_wait_ms": waited / (steps - warmup) * 1000,
            "step_ms": seconds / (steps - warmup) * 1000}


def phase_detection(args) -> dict:
    """``dann-ros train`` on the detection demo's config at the large input on the large set (streamed from
    disk when its frames exceed train.ram_limit_mb, as train.data auto does), evaluating after its last
    step (source-val and eval-target mAP, box stability, proxy A-distance)."""
    from dann_ros.typed_config import load_yaml
    from dann_ros.train.config import TrainConfig
    from dann_ros.train.data import default_workers
    from dann_ros.train.trainer import Trainer

    watch = MemoryWatch()
    work = Path(args.work)
    bag = work / "eval_scenes.bag"
    cfg = load_yaml(TrainConfig, ROOT / "config" / "train_detection_demo.yaml")
    cfg = cfg.replace(**{  # the large set's stores as the build phase keyed them: opened, not decoded again
        "output_dir": str(work / "runs" / "detection"), "cache_dir": str(work / "cache"), "classes": [],
        "source.replicator": str(work / "large_renders"), "target.bags": [str(work / "large_target.bag")],
        "target.topics": [], "eval_target.bag": str(bag), "eval_target.labels": f"{bag}.labels.json",
        "preprocess.height": args.hw[0], "preprocess.width": args.hw[1],
        "train.steps": args.steps, "train.batch_size": args.batch, "train.eval_every": args.steps,
        "train.checkpoint_every": args.steps, "train.device": "cpu",
        **({"train.workers": args.detection_workers} if args.detection_workers is not None else {}),  # else
        # dann-ros train's default (train.workers unset: the cores the step leaves, none on 2 cores)
        **({"train.eval_frames": args.eval_frames} if args.eval_frames else {})})
    watch.stage = "data"
    trainer = Trainer(cfg, resume=False, show_progress=False)
    evaluate, finish = trainer._evaluate_and_save, trainer._finish

    def staged(stage: str, run):
        def call(*a):
            watch.sample()
            watch.stage = stage
            try:
                return run(*a)
            finally:
                watch.sample()
                watch.stage = "training"
        return call

    trainer._evaluate_and_save = staged("evaluation", evaluate)
    trainer._finish = staged("evaluation", finish)  # the proxy A-distance's pooled features
    watch.stage = "training"
    t0 = time.perf_counter()
    result = trainer.run()
    seconds = time.perf_counter() - t0
    total, worker = watch.stop()
    anon, pss_anon = watch.anon_mb(), watch.anon_mb(proportional=True)
    last = result["last"]
    return {"set": "detection", "hw": list(args.hw), "steps": args.steps, "batch": args.batch,
            "in_ram": trainer.data.in_ram, "workers": 0 if trainer.data.in_ram else (
                default_workers() if trainer.cfg.train.workers is None else trainer.cfg.train.workers),
            "frames": {"source": len(trainer.data.source) + len(trainer.data.source_val),
                       "target": trainer.data.n_target, "eval_target": len(trainer.data.eval_target),
                       "target_probe": sum(len(s) for s in trainer.target_probe)},
            "eval_memory_mb": cfg.train.eval_memory_mb, "peak_anon_mb": max(anon.values()), "anon_mb": anon,
            "peak_pss_anon_mb": max(pss_anon.values()), "pss_anon_mb": pss_anon,
            "total_mb": total, "worker_rss_mb": worker, "rss_mb": peak_rss_mb(), "seconds": seconds,
            "metrics": {k: last[k] for k in ("source_val_map50", "target_map50", "stability") if k in last},
            "proxy_a_distance": result["proxy_a_distance"], "load_average": os.getloadavg()[0]}


def child(phase: str, **kw) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", *(map(str, v) if isinstance(v, (list, tuple)) else [str(v)])]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.stderr.write(run.stderr)
        raise SystemExit(f"phase {phase} failed ({run.returncode})")
    for line in run.stderr.splitlines():
        if "frames/s" in line:
            print("   ", line.split(": ", 1)[-1].strip(), file=sys.stderr)
    return json.loads(run.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--big", action="store_true", help="the issue's robot-scale sizes (54,000 + 50,000 frames, ~62 GB "
                    "of stores; hours of decoding)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps: checks the script runs")
    ap.add_argument("--target-frames", type=int)
    ap.add_argument("--source-frames", type=int)
    ap.add_argument("--input-hw", type=int, nargs=2, metavar=("H", "W"), help="network input of the large set "
                    "(default 384 512)")
    ap.add_argument("--steps", type=int, help="training steps of the large streamed run")
    ap.add_argument("--detection-steps", type=int, help="training steps of the detection run (default 30)")
    ap.add_argument("--detection-batch", type=int, help="its batch per domain (default 8)")
    ap.add_argument("--eval-target-frames", type=int, help="labelled frames of its eval target (default 200)")
    ap.add_argument("--eval-frames", type=int, help="target frames it scores at an evaluation (default: the "
                    "detection demo config's train.eval_frames)")
    ap.add_argument("--detection-workers", type=int, help="its DataLoader workers when streamed (default: "
                    "dann-ros train's, train.workers unset)")
    ap.add_argument("--detection-only", action="store_true", help="only the detection run with evaluation (and "
                    "the data it needs): the issue's memory figure")
    ap.add_argument("--small-steps", type=int)
    ap.add_argument("--rounds", type=int, help="alternations of in-RAM and streamed on the small set")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=str(ROOT / ".cache" / "bench" / "data_scale"))
    ap.add_argument("--fresh", action="store_true", help="delete the frame stores first (measures the decode)")
    ap.add_argument("--json")
    # internal: one measured phase in a child process
    ap.add_argument("--phase", choices=["build", "train", "detection"], help=argparse.SUPPRESS)
    ap.add_argument("--set", choices=["large", "small"], help=argparse.SUPPRESS)
    ap.add_argument("--path", choices=["indexed", "ram", "stream"], default="stream", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--hw", type=int, nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        trainer = args.phase == "train" and args.set == "small" and args.path in ("ram", "stream")
        result = phase_build(args) if args.phase == "build" else phase_detection(args) \
            if args.phase == "detection" else phase_trainer(args) if trainer else phase_train(args)
        print(json.dumps(result))
        return

    preset = "smoke" if args.smoke else "big" if args.big else "default"
    base = PRESETS[preset]
    sizes = Sizes(**{**asdict(base), **{k: v for k, v in {
        "target_frames": args.target_frames, "source_frames": args.source_frames, "large_steps": args.steps,
        "small_steps": args.small_steps, "rounds": args.rounds, "detection_steps": args.detection_steps,
        "detection_batch": args.detection_batch, "eval_target_frames": args.eval_target_frames,
        "input_hw": tuple(args.input_hw) if args.input_hw else None}.items() if v is not None}})
    work = Path(args.workdir) / preset
    work.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        shutil.rmtree(work / "cache", ignore_errors=True)
    from importlib.metadata import version  # torch itself stays out of this process: children fork from it

    print(f"data-scale benchmark ({preset}): {os.cpu_count()} CPUs, torch {version('torch')}; work folder {work}")

    t0 = time.perf_counter()
    write_target_bag(work / "large_target.bag", sizes.target_frames)
    write_replicator_set(work / "large_renders", sizes.source_frames, sizes.distinct, (480, 640))
    write_eval_scenes(work, sizes.eval_target_frames, sizes.distinct)
    if not args.detection_only:
        write_small_set(work, sizes)
    bag_mb = sum(p.stat().st_size for p in (work / "large_target.bag").rglob("*") if p.is_file()) / 2**20
    print(f"data written/reused in {time.perf_counter() - t0:.0f} s: target bag {sizes.target_frames} JPEG frames "
          f"640x480 ({bag_mb:.0f} MB), Replicator set {sizes.source_frames} frames 640x480 "
          f"({sizes.distinct} distinct renders), eval bag {sizes.eval_target_frames} labelled JPEG frames 640x480")

    hw = list(sizes.input_hw)
    build = child("build", set="large", work=work, hw=hw)
    data_mb = build["store_bytes"] / 2**20
    print(f"large set at {hw[0]}x{hw[1]} input: {build['frames']} frames, {data_mb:,.0f} MB of prepared frames; "
          f"{'decoded by an earlier run in' if build['cached'] else 'decode once'} {build['seconds']:.0f} s "
          f"({build['frames_per_s']:.0f} frames/s), "
          f"build peak RSS {build['rss_mb']:.0f} MB")

    detection = child("detection", work=work, hw=hw, batch=sizes.detection_batch, steps=sizes.detection_steps,
                      **({"detection_workers": args.detection_workers} if args.detection_workers is not None else {}),
                      **({"eval_frames": args.eval_frames} if args.eval_frames else {}))
    f, anon = detection["frames"], detection["anon_mb"]
    print(f"detection demo config at {hw[0]}x{hw[1]}, {detection['steps']} steps of {detection['batch']}+"
          f"{detection['batch']} frames ({'in RAM' if detection['in_ram'] else 'streamed'}, {detection['workers']} "
          f"workers), then evaluation (source-val and eval-target mAP, box stability on {f['target_probe']} target "
          f"frames, proxy A-distance) with train.eval_memory_mb {detection['eval_memory_mb']}: "
          f"{f['source']} source + {f['target']} target + {f['eval_target']} eval frames, {detection['seconds']:.0f} s")
    goal = 3 * 1024
    print(f"  peak anonymous memory (RssAnon, process + workers, sampled): {detection['peak_anon_mb']:,.0f} MB "
          f"(training {anon.get('training', 0):,.0f} MB, evaluation {anon.get('evaluation', 0):,.0f} MB); "
          f"goal < {goal:,} MB: {'met' if detection['peak_anon_mb'] < goal else 'NOT met'} "
          f"({detection['peak_anon_mb'] / goal:.2f} of it); Pss_Anon (pages shared with workers counted once) "
          f"{detection['peak_pss_anon_mb']:,.0f} MB; the prepared frames are {data_mb:,.0f} MB")
    if args.detection_only:
        if args.json:
            Path(args.json).write_text(json.dumps({"preset": preset, "sizes": asdict(sizes), "build": build,
                                                   "detection": detection}, indent=2))
        return
    write_small_set(work, sizes)
    child("build", set="small", work=work, hw=hw)

    large = child("train", set="large", path="stream", work=work, hw=hw, batch=sizes.large_batch,
                  steps=sizes.large_steps, workers=args.workers)
    in_ram_need = large["rss_after_imports_mb"] + data_mb
    print(f"large set streamed, {large['steps']} steps of {sizes.large_batch}+{sizes.large_batch} frames, "
          f"{args.workers} workers: {large['source_images_per_s']:.0f} source img/s (load average "
          f"{large.get('load_average', 0):.1f}); peak RSS {large['rss_mb']:.0f} "
          f"MB (a worker {large['worker_rss_mb']:.0f} MB, mostly pages shared with the trainer); process + workers "
          f"{large['total_mb']:.0f} MB (peak PSS, sampled)")
    print(f"  in RAM the same frames need >= {in_ram_need:,.0f} MB (imports + frames; today's loader peaks near "
          f"{large['rss_after_imports_mb'] + 2 * data_mb:,.0f} MB while stacking): "
          f"{in_ram_need / large['total_mb']:.1f}x the streamed path's total")

    small: dict[str, list[dict]] = {"indexed": [], "ram": [], "stream": []}
    for _ in range(sizes.rounds):  # alternated so drifting load on a shared machine hits both alike
        for path in small:
            small[path].append(child("train", set="small", path=path, work=work, hw=hw, batch=sizes.small_batch,
                                     steps=sizes.small_steps, workers=args.workers))
    best = {p: max(r["source_images_per_s"] for r in runs) for p, runs in small.items()}
    rss = {p: max(r["total_mb"] for r in runs) for p, runs in small.items()}
    frames = small["ram"][0]["frames"]
    print(f"small set ({frames['source']} source crops + {frames['target']} target frames, 3x28x28; lenet DANN, "
          f"{sizes.small_batch}+{sizes.small_batch} a step, {small['ram'][0]['steps']} timed steps, best of "
          f"{sizes.rounds}):")
    for p, name in (("indexed", "former in-RAM batching"), ("ram", "Trainer, data: ram"),
                    ("stream", f"Trainer, data: stream ({args.workers} workers)")):
        runs = ", ".join(f"{r['source_images_per_s']:.0f} at load {r.get('load_average', 0):.1f}" for r in small[p])
        print(f"  {name:<32} {best[p]:>7.0f} source img/s  (runs {runs}); peak memory {rss[p]:.0f} MB "
              f"(process + workers); waits {min(r['data_wait_ms'] for r in small[p]):.1f} ms a step for its batch, "
              f"of {min(r['step_ms'] for r in small[p]):.0f} ms")
    wait = {p: min(r["data_wait_ms"] for r in runs) for p, runs in small.items()}
    ratio = best["stream"] / best["ram"]
    print(f"  streamed / in-RAM throughput: {ratio:.2f} (goal >= 0.90); large-set streamed peak RSS "
          f"{large['total_mb']:.0f} MB (goal < 4096 MB whatever the data size). The former batching runs a bare "
          "DANN step (no schedules, clipping, checkpoints): compare its batch wait, not its img/s")
    if args.json:
        Path(args.json).write_text(json.dumps({"preset": preset, "sizes": asdict(sizes), "build": build,
                                               "detection": detection,
                                               "large": large, "in_ram_need_mb": in_ram_need, "small": small,
                                               "small_best": best, "small_rss": rss, "throughput_ratio": ratio,
                                               "small_data_wait_ms": wait},
                                              indent=2))


if __name__ == "__main__":
    main()
