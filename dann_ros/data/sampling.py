"""Which records a training step reads: a pure function of (seed, step, rank).

Nothing here holds state that a killed run would lose: the batch of (step, rank) is computed
from the seed alone, so a resumed run reads exactly the batches it would have read, and the
ranks of a DistributedDataParallel run read disjoint records.

The stream of one part (a bag, a source set) visits every record once per epoch in a fresh
order: epoch ``e`` is the permutation drawn from (seed, part, e). Several parts are mixed with
weights: global positions come in rounds of ``round_size`` slots; each round holds a fixed
number of slots per part (the weights, apportioned) in an order drawn from (seed, round), so the
part and the position within it follow from the global position alone. Global positions are
handed out step-major, rank-minor: step ``s`` of rank ``r`` with batch ``b`` on ``world`` ranks
takes positions ``(s * world + r) * b ... + b - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_MIX = 0x6D6978  # stream tags keep the draws of different purposes apart
_EPOCH = 0x65706F
_SUBSET = 0x737562


@dataclass(frozen=True)
class Part:
    """One stream to draw from: ``size`` records, mixed in by ``weight``; ``max_frames`` keeps a
    seeded subset of them (the same subset every epoch)."""

    size: int
    weight: float = 1.0
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"a sampled part needs at least one record, got size {self.size}")
        if not self.weight > 0:
            raise ValueError(f"weights must be positive, got {self.weight}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")


def apportion(weights: Sequence[float], slots: int) -> np.ndarray:
    """Slots per part, proportional to ``weights`` (largest remainders), at least one each."""
    w = np.asarray(weights, np.float64)
    if len(w) > slots:
        raise ValueError(f"{len(w)} parts do not fit in rounds of {slots} slots")
    share = w / w.sum() * slots
    counts = np.maximum(np.floor(share).astype(np.int64), 1)
    while counts.sum() > slots:
        counts[np.argmax(counts - share)] -= 1
    order = np.argsort(-(share - counts), kind="stable")
    for i in order[: slots - int(counts.sum())]:
        counts[i] += 1
    return counts


class MixedSampler:
    """Batches of (part, record) pairs as a pure function of (step, rank); see the module doc."""

    def __init__(self, parts: Sequence[Part], seed: int, batch_size: int, world_size: int = 1,
                 round_size: int = 4096) -> None:
        if not parts:
            raise ValueError("nothing to sample from")
        if batch_size < 1 or world_size < 1:
            raise ValueError("batch_size and world_size must be >= 1")
        self.parts, self.seed = tuple(parts), int(seed)
        self.batch_size, self.world_size = int(batch_size), int(world_size)
        self.round_size = max(int(round_size), len(self.parts))
        self.slots = apportion([p.weight for p in self.parts], self.round_size)
        self._subsets = [self._subset(i, p) for i, p in enumerate(self.parts)]
        self._rounds: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._epochs: dict[tuple[int, int], np.ndarray] = {}

    @property
    def weights(self) -> np.ndarray:
        """The mixing weights in effect (the requested ones, rounded to whole slots a round)."""
        return self.slots / self.slots.sum()

    def part_sizes(self) -> list[int]:
        return [len(s) if s is not None else p.size for s, p in zip(self._subsets, self.parts)]

    def _subset(self, i: int, part: Part) -> np.ndarray | None:
        if part.max_frames is None or part.max_frames >= part.size:
            return None
        rng = np.random.default_rng([self.seed, _SUBSET, i])
        return np.sort(rng.choice(part.size, part.max_frames, replace=False))

    def _round(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """(part of each slot, that part's position within the round) for round ``r``."""
        if r not in self._rounds:
            if len(self._rounds) >= 4:
                self._rounds.clear()
            self._rounds[r] = self._draw_round(r)
        return self._rounds[r]

    def _draw_round(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        owner = np.repeat(np.arange(len(self.parts)), self.slots)
        np.random.default_rng([self.seed, _MIX, r]).shuffle(owner)
        rank = np.empty_like(owner)
        for k in range(len(self.parts)):
            mine = owner == k
            rank[mine] = np.arange(int(mine.sum()))
        return owner, rank

    def _epoch(self, k: int, epoch: int) -> np.ndarray:
        """Part ``k``'s record order in ``epoch`` (the two most recent epochs per part are kept)."""
        perm = self._epochs.get((k, epoch))
        if perm is None:
            for old in [key for key in self._epochs if key[0] == k and key[1] < epoch - 1]:
                del self._epochs[old]
            n = self.part_sizes()[k]
            perm = self._epochs[(k, epoch)] = np.random.default_rng([self.seed, _EPOCH, k, epoch]).permutation(n)
        return perm

    def positions(self, step: int, rank: int = 0) -> np.ndarray:
        """The global stream positions of (step, rank)."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} outside 0..{self.world_size - 1}")
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        start = (int(step) * self.world_size + int(rank)) * self.batch_size
        return np.arange(start, start + self.batch_size, dtype=np.int64)

    def batch(self, step: int, rank: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(part ids, record indices within each part) of the batch of (step, rank)."""
        pos = self.positions(step, rank)
        parts = np.empty(len(pos), np.int64)
        records = np.empty(len(pos), np.int64)
        sizes = self.part_sizes()
        for j, p in enumerate(pos.tolist()):
            r, o = divmod(p, self.round_size)
            owner, within = self._round(r)
            k = int(owner[o])
            n = r * int(self.slots[k]) + int(within[o])  # this part's position in its own stream
            epoch, i = divmod(n, sizes[k])
            record = int(self._epoch(k, epoch)[i])
            subset = self._subsets[k]
            parts[j], records[j] = k, (int(subset[record]) if subset is not None else record)
        return parts, records

    def epoch_of(self, step: int, part: int = 0) -> float:
        """How many passes over ``part`` the run has made by ``step`` (for logs)."""
        pos = (step + 1) * self.world_size * self.batch_size
        return pos * float(self.weights[part]) / self.part_sizes()[part]
