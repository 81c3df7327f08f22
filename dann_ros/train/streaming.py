"""Training batches assembled in DataLoader worker processes from frame stores.

Item ``s`` of :class:`StepBatches` is the whole batch of training step ``s`` on this rank:
which records it holds comes from :class:`~dann_ros.data.sampling.MixedSampler` (a pure
function of seed, step and rank), so a run resumed at step ``s`` reads exactly the batches it
would have read, and ranks read disjoint records. Workers read the records (positional reads,
CRC-checked), stack them into uint8 tensors and run the optional batch ``transform`` (seeded
from the same step and rank) while the main process trains; on a GPU the loader pins the
batches and :func:`to_device` copies them without blocking.

The stores can be on disk (:class:`~dann_ros.data.frame_store.FrameStore`, bounded memory) or in
RAM (:class:`~dann_ros.data.frame_store.MemoryStore`, small data): the same code reads both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from dann_ros.data import replicator
from dann_ros.data.bags import BagSelection
from dann_ros.data.frame_cache import bag_store, crop_store, detection_store, frame_label_store
from dann_ros.data.frame_store import Store, Subset
from dann_ros.data.sampling import MixedSampler, Part
from dann_ros.train.config import TrainConfig

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Stream:
    """One domain's parts (stores) and how to draw from them; ``label`` names a per-record column
    to return as the class ids, ``ragged`` the per-record ragged columns (detection boxes)."""

    stores: Sequence[Store]
    sampler: MixedSampler
    label: str | None = None
    ragged: tuple[str, ...] = ()

    @classmethod
    def of(cls, stores: Sequence[Store], seed: int, batch_size: int, world_size: int = 1,
           weights: Sequence[float] | None = None, max_frames: Sequence[int | None] | None = None,
           label: str | None = None, ragged: tuple[str, ...] = ()) -> Stream:
        weights = weights or [1.0] * len(stores)
        max_frames = max_frames or [None] * len(stores)
        if len(weights) != len(stores) or len(max_frames) != len(stores):
            raise ValueError(f"{len(stores)} stores (bags) but {len(weights)} weights and {len(max_frames)} "
                             "max_frames: give one each")
        shapes = {tuple(s.record_shape) for s in stores}
        if len(shapes) > 1:
            raise ValueError(f"stores of one stream must hold one record shape, got {sorted(shapes)}")
        parts = [Part(len(s), w, m) for s, w, m in zip(stores, weights, max_frames)]
        return cls(list(stores), MixedSampler(parts, seed, batch_size, world_size), label, ragged)

    def assemble(self, step: int, rank: int) -> dict[str, Any]:
        parts, records = self.sampler.batch(step, rank)
        first = self.stores[0]
        batch = torch.empty((len(records), *first.record_shape), dtype=torch.uint8)
        if get_worker_info() is not None:  # read straight into shared memory: the loader then sends it uncopied
            batch.share_memory_()
        images = batch.numpy()
        if len(self.stores) == 1:
            first.read(records, out=images)
        else:
            for k, store in enumerate(self.stores):
                mine = np.flatnonzero(parts == k)
                if len(mine):
                    images[mine] = store.read(records[mine])
        out: dict[str, Any] = {"images": batch,
                               "ids": torch.from_numpy(np.stack([parts, records], 1))}
        if self.label is not None:
            out["labels"] = torch.from_numpy(np.array(
                [self.stores[k].columns[self.label][i] for k, i in zip(parts.tolist(), records.tolist())], np.int64))
        for name in self.ragged:
            out[name] = [torch.from_numpy(self.stores[k].ragged(name, i))
                         for k, i in zip(parts.tolist(), records.tolist())]
        return out


def step_generator(seed: int, step: int, rank: int, stream: int = 0) -> torch.Generator:
    """The generator of a step's augmentation: a pure function of (seed, step, rank)."""
    return torch.Generator().manual_seed((((seed * 1_000_003 + step) * 131 + rank) * 7 + stream) & (2**62 - 1))


class StepBatches(Dataset):
    """Item ``step`` = {"source": ..., "target": ...} batches of that step on ``rank``."""

    def __init__(self, source: Stream, target: Stream | None, seed: int, rank: int = 0,
                 transform: Transform | None = None) -> None:
        self.source, self.target, self.seed, self.rank, self.transform = source, target, seed, rank, transform

    def __len__(self) -> int:  # items are addressed by step; any step is valid
        return 2**62

    def __getitem__(self, step: int) -> dict[str, Any]:
        batch = {"step": step, "source": self.source.assemble(step, self.rank)}
        if self.target is not None:
            batch["target"] = self.target.assemble(step, self.rank)
        if self.transform is not None:
            for i, name in enumerate(("source", "target")):
                if name in batch:
                    g = step_generator(self.seed, step, self.rank, i)
                    batch[name]["images"] = self.transform(batch[name]["images"], g)
        return batch


def step_loader(batches: StepBatches, start_step: int, steps: int, num_workers: int = 2,
                pin_memory: bool = False, prefetch_factor: int = 2) -> DataLoader:
    """Batches of steps ``start_step .. steps - 1`` in order, assembled by ``num_workers`` processes
    (0: in this process, the fast path for data in RAM)."""
    extra: dict[str, Any] = {}
    if num_workers:
        extra = {"prefetch_factor": prefetch_factor, "persistent_workers": False}
    return DataLoader(batches, batch_size=None, sampler=range(start_step, steps), num_workers=num_workers,
                      pin_memory=pin_memory, **extra)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Images to ``device`` as float (0..255, as the network takes them), copied without blocking
    (the loader pinned them on a GPU run); labels alongside; ragged columns stay on the CPU."""
    out = {"step": batch["step"]}
    for name in ("source", "target"):
        if name in batch:
            part = dict(batch[name])
            part["images"] = part["images"].to(device, non_blocking=True).float()
            if "labels" in part:
                part["labels"] = part["labels"].to(device, non_blocking=True)
            out[name] = part
    return out


@dataclass
class StreamedData:
    """A training config's data as stores and streams (what the trainer's ``load_data`` holds in RAM today)."""

    classes: tuple[str, ...]
    source: Store  # the training split
    source_val: Store  # the validation split (same records as today's split_validation picks)
    target: list[Store]  # one per target bag
    source_stream: Stream
    target_stream: Stream | None


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) record indices, the same split as ``datasets.split_validation`` draws."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def streamed_data(cfg: TrainConfig, rank: int = 0, world_size: int = 1, in_ram: bool = False,
                  target_weights: Sequence[float] | None = None) -> StreamedData:
    """Build (or open) the frame stores of ``cfg`` and the streams a run of ``world_size`` ranks draws from.

    ``in_ram`` loads every store into memory first (small data: no reads per step; use 0 workers).
    ``target_weights``: one per target bag (default: equal). ``target.max_frames`` is shared among the
    bags by their sizes. With several ranks, let rank 0 call this first (it builds the stores), then
    the others after a barrier (they open them)."""
    src, pp, cache = cfg.source, cfg.preprocess, cfg.cache_dir
    if src.replicator is None:
        raise NotImplementedError("streaming reads Replicator sources; a labelled-bag source (source.bag) "
                                  "still goes through the in-RAM loader")
    if cfg.task == "detection":
        store = detection_store(src.replicator, src.crop.max_occlusion, cfg.classes, pp, cache)
        label, ragged = None, ("boxes", "box_classes")
    elif src.frame_labels is not None:
        store = frame_label_store(src.replicator, src.frame_labels, cfg.classes, pp, cache)
        label, ragged = "class_ids", ()
    else:
        spec = replicator.CropSpec(src.crop.margin, src.crop.square, src.crop.min_size, src.crop.max_occlusion)
        store = crop_store(src.replicator, spec, cfg.classes, pp, cache)
        label, ragged = "class_ids", ()
    classes = tuple(store.meta["notes"]["class_names"])
    train_idx, val_idx = split_indices(len(store), src.val_fraction, cfg.seed)
    base: Store = store.load() if in_ram else store
    train, val = Subset(base, train_idx), Subset(base, val_idx)
    b, seed = cfg.train.batch_size, cfg.seed
    source_stream = Stream.of([train], seed, b, world_size, label=label, ragged=ragged)
    t = cfg.target
    selection = BagSelection(tuple(t.topics), t.stride, t.start_s, t.end_s)
    targets: list[Store] = [bag_store(bag, selection, pp, cache) for bag in t.bags]
    if in_ram:
        targets = [s.load() for s in targets]
    target_stream = None
    if targets:
        total = sum(len(s) for s in targets)
        caps = None
        if t.max_frames is not None and t.max_frames < total:
            caps = [max(1, round(t.max_frames * len(s) / total)) for s in targets]
        target_stream = Stream.of(targets, seed + 1, b, world_size, weights=target_weights, max_frames=caps)
    return StreamedData(classes, train, val, targets, source_stream, target_stream)


def iter_store(store: Store, batch_size: int = 512):
    """A store's records in order, ``batch_size`` at a time, as uint8 tensors (evaluation without
    holding a large validation split in RAM)."""
    for start in range(0, len(store), batch_size):
        yield torch.from_numpy(store.read(np.arange(start, min(start + batch_size, len(store)))))
