"""A training run's data as frame stores, and the streams its batches are drawn from.

Source records (Replicator crops/frames, or a labelled bag) and every target bag are decoded once
into frame stores (data/frame_cache.py: on disk, keyed, checked); the run then either loads them
into RAM (``train.data: ram``, small data: no reads per step) or streams them from disk with
DataLoader workers (``stream``: memory flat in the data size); ``auto`` picks by size. Both read
the same records through the same code, so the batches, and the weights, do not depend on the choice.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dann_ros.data.bags import BagSelection
from dann_ros.data.frame_cache import bag_store
from dann_ros.data.frame_store import FrameStore, ProgressFn, Progress, Store, Subset
from dann_ros.train.config import TrainConfig
from dann_ros.train.streaming import RandomDraws, Stream, step_generator
from dann_ros.train.tasks import TrainTask, train_task

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    classes: tuple[str, ...]
    source: Store  # the training split
    source_val: Store  # the validation split
    target: list[Store]  # per target bag, the frames training draws from (after target.max_frames)
    eval_target: Store | None  # labelled real frames, reporting only (read from disk a batch at a time)
    in_ram: bool = True

    @property
    def n_target(self) -> int:
        return sum(len(s) for s in self.target)


def store_bytes(store: Store) -> int:
    return len(store) * math.prod(store.record_shape)


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) record indices: a seeded permutation, ``fraction`` of it (at least one) for validation."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def subsample(stores: Sequence[Store], n: int | None, seed: int) -> list[Store]:
    """A seeded subset of ``n`` records of the stores taken together (all of them when ``n`` is None
    or not smaller): ``target.max_frames`` and the evaluated target frames, drawn as they always were."""
    total = sum(len(s) for s in stores)
    if n is None or n >= total:
        return list(stores)
    pick = np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
    starts = np.concatenate([[0], np.cumsum([len(s) for s in stores])])
    return [Subset(s, pick[(pick >= a) & (pick < b)] - a) for s, a, b in zip(stores, starts[:-1], starts[1:])
            if ((pick >= a) & (pick < b)).any()]


def _in_ram(store: Store) -> Store:
    if isinstance(store, FrameStore):
        return store.load()
    if isinstance(store, Subset):
        return dataclasses.replace(store, store=_in_ram(store.store))
    return store


def tqdm_progress(desc: str = "decoding") -> ProgressFn:
    """A frame-cache build's progress as a tqdm bar (frames, frames/s, ETA, skipped frames)."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def report(p: Progress) -> None:
        bar = bars.get(p.what)
        if bar is None:
            bar = bars[p.what] = tqdm(total=p.total, desc=p.what, unit="frame", dynamic_ncols=True, mininterval=1.0)
        bar.total = p.total
        bar.update(p.done - bar.n)
        bar.set_postfix(skipped=p.skipped, refresh=False)
        if p.reasons:
            bar.set_postfix_str(f"skipped {p.skipped} (e.g. {p.reasons[0]})", refresh=False)
        if p.total is not None and p.done + p.skipped >= p.total:
            bar.close()
        log.debug("%s", p.line())

    return report


def load_train_data(cfg: TrainConfig, progress: ProgressFn | None = None) -> TrainData:
    """The run's stores: built (first run) or opened from ``cfg.cache_dir``, in RAM or streamed as
    ``cfg.train.data`` says (auto: in RAM up to ``train.ram_limit_mb`` of frames)."""
    task = train_task(cfg.task)
    store, classes = task.source_store(cfg, progress)
    t = cfg.target
    selection = BagSelection(tuple(t.topics), t.stride, t.start_s, t.end_s)
    bags = [bag_store(bag, selection, cfg.preprocess, cfg.cache_dir, progress) for bag in t.bags]
    mode = cfg.train.data
    if mode == "auto":
        size = store_bytes(store) + sum(store_bytes(b) for b in bags)
        mode = "ram" if size <= cfg.train.ram_limit_mb << 20 else "stream"
        log.info("train.data auto: %.0f MB of prepared frames -> %s", size / 2**20, mode)
    in_ram = mode == "ram"
    if in_ram:
        store, bags = _in_ram(store), [_in_ram(b) for b in bags]
    train_idx, val_idx = split_indices(len(store), cfg.source.val_fraction, cfg.seed)
    eval_target = task.eval_target_store(cfg, classes) if cfg.eval_target is not None else None
    return TrainData(classes, Subset(store, train_idx), Subset(store, val_idx),
                     subsample(bags, t.max_frames, cfg.seed), eval_target, in_ram)


@dataclass
class Sampling:
    """How a run draws its batches: the source and target streams and each step's augmentation generator."""

    source: Stream
    target: Stream | None
    augment_generator: Callable[[int, int], torch.Generator]


def make_sampling(cfg: TrainConfig, data: TrainData, task: TrainTask, world_size: int, uses_target: bool) -> Sampling:
    b, seed, kind = cfg.train.batch_size, cfg.seed, cfg.train.sampling
    weights = list(cfg.target.weights) or None
    targets = data.target if uses_target and data.target else None
    if weights is not None and targets is not None and len(targets) != len(weights):
        # target.max_frames left some bag without frames
        raise ValueError(f"target.weights: {len(weights)} weights, but only {len(targets)} bags keep frames "
                         f"after target.max_frames {cfg.target.max_frames}")
    if kind == "random":
        draws = RandomDraws(len(data.source), [len(s) for s in targets] if targets else None, seed, b, weights)
        source = Stream([data.source], draws.source, task.label, task.ragged)
        target = Stream(targets, draws.target) if targets else None
        return Sampling(source, target, draws.augment_generator)
    source = Stream.of([data.source], seed, b, world_size, label=task.label, ragged=task.ragged)
    target = Stream.of(targets, seed + 1, b, world_size, weights=weights) if targets else None
    return Sampling(source, target, lambda step, rank: step_generator(seed, step, rank))


def default_workers() -> int:
    """Batch-assembling processes when ``train.workers`` is unset: the cores the step's own two
    threads leave, at most 4. On a 2-core machine that is none: batches are read in-process from
    the memory-mapped store, which measured 1.07x the in-RAM path where 2 workers competing with
    the step for the cores gave 0.61x (benchmarks/data_scale.py)."""
    return max(0, min(4, (os.cpu_count() or 1) - 2))
