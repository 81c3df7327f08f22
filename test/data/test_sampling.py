"""The batch of (seed, step, rank): pure, epoch-complete, disjoint across ranks, mixed by weight."""

from __future__ import annotations

import numpy as np
import pytest

from dann_ros.data.sampling import MixedSampler, Part, apportion


def _pairs(sampler: MixedSampler, steps, rank=0) -> list[tuple[int, int]]:
    out = []
    for s in steps:
        parts, records = sampler.batch(s, rank)
        out += list(zip(parts.tolist(), records.tolist()))
    return out


def test_batches_are_a_pure_function_of_seed_step_and_rank():
    a = MixedSampler([Part(100), Part(37, 2.0)], seed=4, batch_size=16)
    b = MixedSampler([Part(100), Part(37, 2.0)], seed=4, batch_size=16)
    later = [b.batch(s) for s in (40, 3, 17)]  # another order, another instance: same batches
    for s, (parts, records) in zip((40, 3, 17), later):
        np.testing.assert_array_equal(a.batch(s)[0], parts)
        np.testing.assert_array_equal(a.batch(s)[1], records)
    c = MixedSampler([Part(100), Part(37, 2.0)], seed=5, batch_size=16)
    assert _pairs(a, range(5)) != _pairs(c, range(5))


def test_one_part_visits_every_record_once_per_epoch_in_a_new_order():
    sampler = MixedSampler([Part(60)], seed=0, batch_size=12)
    epoch0 = [r for _, r in _pairs(sampler, range(5))]
    epoch1 = [r for _, r in _pairs(sampler, range(5, 10))]
    assert sorted(epoch0) == sorted(epoch1) == list(range(60))
    assert epoch0 != epoch1


def test_ranks_read_disjoint_records_within_an_epoch():
    world, batch, n = 4, 8, 512
    samplers = [MixedSampler([Part(n)], seed=1, batch_size=batch, world_size=world) for _ in range(world)]
    seen = [set(_pairs(s, range(n // (world * batch)), rank=r)) for r, s in enumerate(samplers)]
    for i in range(world):
        assert len(seen[i]) == n // world
        for j in range(i + 1, world):
            assert not seen[i] & seen[j]
    assert set().union(*seen) == {(0, i) for i in range(n)}
    with pytest.raises(ValueError, match="rank 4 outside 0..3"):
        samplers[0].batch(0, 4)


def test_parts_are_mixed_by_weight_and_each_keeps_its_epochs():
    parts = [Part(1000, 1.0), Part(50, 3.0), Part(300, 0.5, max_frames=40)]
    sampler = MixedSampler(parts, seed=2, batch_size=64, round_size=900)
    np.testing.assert_allclose(sampler.weights, [1 / 4.5, 3 / 4.5, 0.5 / 4.5], atol=1 / 900)
    drawn = _pairs(sampler, range(300))
    counts = np.bincount([p for p, _ in drawn], minlength=3) / len(drawn)
    np.testing.assert_allclose(counts, sampler.weights, atol=0.005)
    small = [r for p, r in drawn if p == 1]
    # part 1 has 50 records: every full epoch of it holds each record exactly once
    for e in range(len(small) // 50):
        assert sorted(small[e * 50:(e + 1) * 50]) == list(range(50))
    # max_frames keeps one seeded subset of 40 of part 2's 300 records, all of them used
    subset = {r for p, r in drawn if p == 2}
    assert len(subset) == 40 and max(subset) < 300
    assert subset == {r for p, r in _pairs(MixedSampler(parts, 2, 64, round_size=900), range(300, 400)) if p == 2}
    assert sampler.part_sizes() == [1000, 50, 40]


def test_apportion_and_validation():
    assert apportion([1, 1, 1], 10).tolist() in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    assert apportion([1000, 1e-9], 100).tolist() == [99, 1]  # every part gets at least one slot
    with pytest.raises(ValueError, match="weights must be positive"):
        Part(10, 0.0)
    with pytest.raises(ValueError, match="at least one record"):
        Part(0)
    with pytest.raises(ValueError, match="nothing to sample"):
        MixedSampler([], 0, 4)
