"""The reader eval-bag and replay share: read-ahead in a thread, bounded, errors raised in the
consumer, the producer stopped and its iterator closed when the consumer stops early."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dann_ros.evaluation.frames import Prefetch
from dann_ros.evaluation.bag_report_tools import claim_bag_output, default_out_dir, percentiles, thin
from dann_ros.evaluation.result_bag import OutputExistsError


def test_items_arrive_in_order_across_chunks():
    assert list(Prefetch(lambda: iter(range(23)), "t", chunk=4, depth=2)) == list(range(23))
    assert list(Prefetch(lambda: iter(()), "t")) == []


def test_a_producer_error_is_raised_in_the_consumer_after_what_was_read():
    def produce():
        yield from range(5)
        raise ValueError("corrupt chunk")

    got = []
    with pytest.raises(ValueError, match="corrupt chunk"):
        for item in Prefetch(produce, "t", chunk=2):
            got.append(item)
    assert got == [0, 1, 2, 3]  # the last partial chunk is lost with the error, as the reader stops there


def test_stopping_early_stops_the_producer_and_closes_its_iterator():
    produced, closed = [], threading.Event()

    def produce():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    reader = Prefetch(produce, "t", chunk=4, depth=2)
    for item in reader:
        if item == 5:
            break
    reader.close()
    assert closed.wait(5) and not reader.thread.is_alive()
    assert len(produced) <= 8 + 4 * 2 + 4  # bounded read-ahead: never the whole source


def test_the_producer_runs_ahead_of_a_slow_consumer():
    all_read = threading.Event()

    def produce():
        yield from range(8)
        all_read.set()

    for item in Prefetch(produce, "t", chunk=1, depth=8):
        if item == 0:  # the consumer holds the first frame: the rest is read meanwhile
            assert all_read.wait(10)


def test_percentiles_and_thinning():
    p = percentiles([4.0, 1.0, np.nan, 3.0, 2.0])
    assert p == {"n": 4, "mean": 2.5, "p50": 2.5, "p90": pytest.approx(3.7), "p99": pytest.approx(3.97), "max": 4.0}
    assert percentiles([])["n"] == 0 and percentiles([])["p50"] is None
    x, y = thin(np.arange(10), np.arange(10) * 2, max_points=4)
    assert x == [0, 3, 6, 9] and y == [0, 6, 12, 18]


def test_output_folders(tmp_path):
    bag = tmp_path / "run1.bag"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("x")
    (bag / "run1.bag_0.mcap").write_bytes(b"")
    assert default_out_dir(bag) == tmp_path / "run1.bag.eval"
    assert default_out_dir(bag / "run1.bag_0.mcap", "replay") == tmp_path / "run1.bag.replay"  # a file inside it
    assert default_out_dir(tmp_path / "shared.mcap") == tmp_path / "shared.eval"
    out = tmp_path / "o" / "result_bag"
    claim_bag_output(out, overwrite=False)  # nothing there: fine
    out.mkdir(parents=True)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        claim_bag_output(out, overwrite=False)
    claim_bag_output(out, overwrite=True)
    assert not out.exists()
