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
from torch.utils.data import DataLoader, Dataset

from dann_ros.data.frame_store import Store
from dann_ros.data.sampling import MixedSampler, Part

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
        parts = [Part(len(s), w, m) for s, w, m in zip(stores, weights, max_frames, strict=True)]
        return cls(list(stores), MixedSampler(parts, seed, batch_size, world_size), label, ragged)

    def assemble(self, step: int, rank: int) -> dict[str, Any]:
        parts, records = self.sampler.batch(step, rank)
        first = self.stores[0]
        images = np.empty((len(records), *first.record_shape), np.uint8)
        if len(self.stores) == 1:
            first.read(records, out=images)
        else:
            for k, store in enumerate(self.stores):
                mine = np.flatnonzero(parts == k)
                if len(mine):
                    images[mine] = store.read(records[mine])
        out: dict[str, Any] = {"images": torch.from_numpy(images),
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
