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

Two samplers, both pure functions of (seed, step, rank): :class:`~dann_ros.data.sampling.MixedSampler`
(``train.sampling: epoch``: every record once per epoch, bags mixed by weight, ranks disjoint) and
:class:`RandomDraws` (``random``: uniform draws with replacement, the sampling the demo recipe
was tuned with, batch for batch the same as before streaming existed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from dann_ros.data.frame_store import Store
from dann_ros.data.sampling import MixedSampler, Part
from dann_ros.model.inference import eval_batch_size

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class Sampler(Protocol):
    def batch(self, step: int, rank: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(part, record) of each item of the batch of ``step`` on ``rank``."""


@dataclass
class Stream:
    """One domain's parts (stores) and how to draw from them; ``label`` names a per-record column
    to return as the class ids, ``ragged`` the per-record ragged columns (detection boxes)."""

    stores: Sequence[Store]
    sampler: Sampler
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
            labels = np.empty(len(records), np.int64)
            for k, store in enumerate(self.stores):
                mine = parts == k
                labels[mine] = store.columns[self.label][records[mine]]
            out["labels"] = torch.from_numpy(labels)
        for name in self.ragged:
            out[name] = [torch.from_numpy(self.stores[k].ragged(name, i))
                         for k, i in zip(parts.tolist(), records.tolist())]
        return out


class StepStream(IntEnum):
    """The independent draws of one step, each its own ``step_generator`` stream (at most 7: 0 to 6)."""

    SOURCE = 0  # the source batch's transform and augmentation
    TARGET = 1  # the target batch's transform
    SECOND_VIEW = 2  # self-training's masked / camera view
    TARGET_PATCHES = 3
    FOURIER_STYLE = 4


def step_generator(seed: int, step: int, rank: int, stream: int = StepStream.SOURCE) -> torch.Generator:
    """The generator of a step's augmentation: a pure function of (seed, step, rank)."""
    return torch.Generator().manual_seed((((seed * 1_000_003 + step) * 131 + rank) * 7 + stream) & (2**62 - 1))


def _draw_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 131 + rank) & (2**62 - 1))


class RandomDraws:
    """Uniform draws with replacement, a pure function of (seed, step, rank): one torch generator per
    step draws ``batch_size`` source records, then (``target_sizes`` given) ``batch_size`` target
    records, then the step's source augmentation (:meth:`augment_generator`). Target records are
    uniform over all bags' frames together, or (``target_weights``) a bag by weight, then a frame.
    Ranks draw independently (not disjoint): use :class:`~dann_ros.data.sampling.MixedSampler` for that."""

    def __init__(self, n_source: int, target_sizes: Sequence[int] | None, seed: int, batch_size: int,
                 target_weights: Sequence[float] | None = None) -> None:
        self.n_source, self.seed, self.b = int(n_source), seed, batch_size
        self.sizes = None if target_sizes is None else np.asarray(target_sizes, np.int64)
        self.weights = None if target_weights is None else torch.tensor(target_weights, dtype=torch.float64)

    def draws(self, step: int, rank: int, target: bool = True):
        """(source records, (target parts, records) or None, the generator where it stands now)."""
        g = _draw_generator(self.seed, step, rank)
        source = torch.randint(self.n_source, (self.b,), generator=g).numpy()
        if self.sizes is None or not target:
            return source, None, g
        if self.weights is None:
            flat = torch.randint(int(self.sizes.sum()), (self.b,), generator=g).numpy()
            starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
            parts = np.searchsorted(starts, flat, side="right") - 1
            return source, (parts, flat - starts[parts]), g
        parts = torch.multinomial(self.weights, self.b, replacement=True, generator=g).numpy()
        records = (torch.rand(self.b, generator=g, dtype=torch.float64).numpy() * self.sizes[parts]).astype(np.int64)
        return source, (parts, np.minimum(records, self.sizes[parts] - 1)), g

    def augment_generator(self, step: int, rank: int) -> torch.Generator:
        return self.draws(step, rank)[2]

    @property
    def source(self) -> Sampler:
        return _Role(self, "source")

    @property
    def target(self) -> Sampler:
        return _Role(self, "target")


@dataclass
class _Role:
    draws: RandomDraws
    role: str

    def batch(self, step: int, rank: int = 0) -> tuple[np.ndarray, np.ndarray]:
        source, target, _ = self.draws.draws(step, rank, target=self.role == "target")
        return (np.zeros(len(source), np.int64), source) if self.role == "source" else target


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
            for stream, name in ((StepStream.SOURCE, "source"), (StepStream.TARGET, "target")):
                if name in batch:
                    g = step_generator(self.seed, step, self.rank, stream)
                    batch[name]["images"] = self.transform(batch[name]["images"], g)
        return batch


def step_loader(batches: StepBatches, start_step: int, steps: int, num_workers: int = 2,
                pin_memory: bool = False, prefetch_factor: int = 2) -> DataLoader:
    """Batches of steps ``start_step .. steps - 1`` in order, assembled by ``num_workers`` processes
    (0: in this process, the fast path for data in RAM)."""
    extra: dict[str, Any] = {}
    if num_workers:
        extra = {"prefetch_factor": prefetch_factor, "persistent_workers": False}
    # its own generator: making the loader's iterator must not draw from the global RNG (dropout's), or a
    # resumed run (a new loader at step s) would diverge from the straight one
    return DataLoader(batches, batch_size=None, sampler=range(start_step, steps), num_workers=num_workers,
                      pin_memory=pin_memory, generator=torch.Generator(), **extra)


def to_device(batch: dict[str, Any], device: torch.device,
              memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, Any]:
    """Images to ``device`` as float (0..255, as the network takes them) in ``memory_format``, copied
    without blocking (the loader pinned them on a GPU run); labels alongside; ragged columns stay on the CPU."""
    out = {"step": batch["step"]}
    for name in ("source", "target"):
        if name in batch:
            part = dict(batch[name])
            part["images"] = part["images"].to(device, non_blocking=True).to(torch.float32, memory_format=memory_format)
            if "labels" in part:
                part["labels"] = part["labels"].to(device, non_blocking=True)
            out[name] = part
    return out


def iter_store(store: Store, batch_size: int):
    """A store's records in order, ``batch_size`` at a time, as uint8 tensors."""
    for start in range(0, len(store), batch_size):
        yield torch.from_numpy(store.read(np.arange(start, min(start + batch_size, len(store)))))


def eval_batches(model: torch.nn.Module, store: Store, budget_mb: float, most: int = 512, passes: float = 1.0):
    """A store's records in order, as many a batch as an evaluation pass of ``model`` may hold in
    ``budget_mb`` (``inference.eval_batch_size``): evaluation never holds a split, or one batch
    larger than its budget, in RAM."""
    if len(store):
        yield from iter_store(store, eval_batch_size(model, tuple(store.record_shape), budget_mb, most, passes))
