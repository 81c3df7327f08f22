"""Batches from frame stores, assembled in DataLoader workers: exact resume after a kill, the same
batches in RAM and on disk, and disjoint records for the ranks of a real 2-process gloo run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dann_ros.data import replicator
from dann_ros.data.bags import BagSelection
from dann_ros.data.frame_cache import bag_store, crop_store
from dann_ros.data.make_bag import make_bag
from dann_ros.data.preprocess import Preprocess
from dann_ros.demo_data.synth import SynthConfig, render_dataset
from dann_ros.train.streaming import StepBatches, Stream, step_loader, to_device

PP = Preprocess()  # 3 x 28 x 28, the demo's input
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("streaming")
    render_dataset(tmp / "renders", SynthConfig(n_frames=40, width=64, height=64, seed=2))
    rng = np.random.default_rng(0)
    for name, n in (("a.bag", 40), ("b.bag", 15)):
        make_bag(tmp / name, (rng.integers(0, 256, (32, 40, 3), dtype=np.uint8) for _ in range(n)), compressed=True)
    source = crop_store(tmp / "renders", replicator.CropSpec(), (), PP, tmp / "cache", progress=None)
    targets = [bag_store(tmp / name, BagSelection(), PP, tmp / "cache", progress=None) for name in ("a.bag", "b.bag")]
    return source, targets


def _flip(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random horizontal flip per image: augmentation drawn from the step's generator."""
    flip = torch.rand(len(images), generator=g) < 0.5
    images = images.clone()
    images[flip] = images[flip].flip(-1)
    return images


def _batches(source, targets, start, steps, workers, seed=7, batch=8):
    src = Stream.of([source], seed, batch, label="class_ids")
    tgt = Stream.of(targets, seed + 1, batch, weights=[1.0, 1.0])
    return list(step_loader(StepBatches(src, tgt, seed, transform=_flip), start, steps, num_workers=workers))


def _same(a, b) -> None:
    assert a["step"] == b["step"]
    for domain in ("source", "target"):
        for key in a[domain]:
            torch.testing.assert_close(a[domain][key], b[domain][key], rtol=0, atol=0)


def test_resumed_loader_with_workers_replays_the_same_batches(stores):
    source, targets = stores
    full = _batches(source, targets, 0, 12, workers=2)
    assert [b["step"] for b in full] == list(range(12))
    resumed = _batches(source, targets, 7, 12, workers=2)  # a new loader, as after a kill at step 7
    for a, b in zip(full[7:], resumed, strict=True):
        _same(a, b)
    for a, b in zip(full, _batches(source, targets, 0, 12, workers=0), strict=True):
        _same(a, b)  # worker processes change nothing
    first = full[0]
    assert first["source"]["images"].dtype == torch.uint8 and first["source"]["images"].shape == (8, 3, 28, 28)
    ids = first["source"]["ids"][:, 1].numpy()
    np.testing.assert_array_equal(first["source"]["labels"].numpy(), source.columns["class_ids"][ids])
    # the two target bags are mixed 1:1 (the smaller one repeats its epochs sooner)
    parts = torch.cat([b["target"]["ids"][:, 0] for b in full])
    assert 0.35 < float(parts.float().mean()) < 0.65


def test_in_ram_store_gives_the_disk_store_s_batches(stores):
    source, targets = stores
    disk = _batches(source, targets, 3, 6, workers=0)
    ram = _batches(source.load(), [t.load() for t in targets], 3, 6, workers=0)
    for a, b in zip(disk, ram, strict=True):
        _same(a, b)
    on = to_device(ram[0], torch.device("cpu"))
    assert on["source"]["images"].dtype == torch.float32 and on["source"]["labels"].dtype == torch.int64


def _train(source, targets, start, stop, state=None, workers=2):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 28 * 28, 10))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    if state is not None:
        model.load_state_dict(state[0])
        opt.load_state_dict(state[1])
    for batch in _batches(source, targets, start, stop, workers):
        b = to_device(batch, torch.device("cpu"))
        loss = torch.nn.functional.cross_entropy(model(b["source"]["images"] / 255), b["source"]["labels"])
        loss = loss + model(b["target"]["images"] / 255).logsumexp(1).mean() * 0.1
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.state_dict(), opt.state_dict()


def test_training_killed_and_resumed_reaches_the_same_weights(stores):
    source, targets = stores
    straight = _train(source, targets, 0, 10)
    import copy

    half = copy.deepcopy(_train(source, targets, 0, 4))  # "checkpoint" at step 4, then the process dies
    resumed = _train(source, targets, 4, 10, state=half)
    for k in straight[0]:
        torch.testing.assert_close(resumed[0][k], straight[0][k], rtol=0, atol=0)


DDP_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from dann_ros.data.frame_store import FrameStore
    from dann_ros.train.distributed import init_distributed, shutdown
    from dann_ros.train.streaming import StepBatches, Stream, step_loader

    d = init_distributed("cpu")
    store = FrameStore(sys.argv[1])
    steps = int(sys.argv[2])
    stream = Stream.of([store], seed=3, batch_size=4, world_size=d.world_size)
    ids = []
    for batch in step_loader(StepBatches(stream, None, 3, rank=d.rank), 0, steps, num_workers=1):
        ids += batch["source"]["ids"][:, 1].tolist()
    gathered = [None] * d.world_size
    dist.all_gather_object(gathered, {"rank": d.rank, "world": d.world_size, "ids": ids})
    if d.rank == 0:
        print("RESULT " + json.dumps(gathered))
    shutdown(d)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_ranks_read_disjoint_records_in_a_real_gloo_run(stores, tmp_path):
    _, (bag_a, _) = stores
    script = tmp_path / "ddp_shards.py"
    script.write_text(DDP_SCRIPT)
    steps = len(bag_a) // (2 * 4)  # one epoch of bag a over 2 ranks, 4 records a step each
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(bag_a.path), str(steps)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    line = next(ln for ln in outs[0][0].splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert [r["world"] for r in result] == [2, 2]
    a, b = (set(r["ids"]) for r in sorted(result, key=lambda r: r["rank"]))
    assert len(a) == len(b) == steps * 4 and not a & b
    assert a | b == set(range(len(bag_a)))


def _prepared_crops(cfg):
    """Every source crop of the config, prepared, with its class id: what the run must train on."""
    c = cfg.source.crop
    spec = replicator.CropSpec(c.margin, c.square, c.min_size, c.max_occlusion)
    crops = list(replicator.iter_crops(replicator.scan(cfg.source.replicator), spec))
    names = tuple(sorted({n for _, n in crops}))
    images = np.stack([cfg.preprocess.prepare(crop)[0] for crop, _ in crops])
    return images, np.array([names.index(n) for _, n in crops]), names


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (train, val) split runs have always drawn: a seeded permutation, its head for validation."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@pytest.mark.parametrize("mode", ["stream", "ram"])
def test_training_data_of_a_config_holds_the_prepared_records(tiny_domains, tmp_path, mode):
    """The stores hold every crop and target frame prepared as the node prepares it (same split, labels,
    class names), and the epoch sampler's batches read them: the same in RAM and streamed."""
    from dann_ros.data.bags import load_frames
    from dann_ros.train.data import load_train_data, make_sampling
    from dann_ros.train.streaming import iter_store
    from dann_ros.train.tasks import train_task

    from .conftest import tiny_config

    cfg = tiny_config(tiny_domains, tmp_path / "run", **{"cache_dir": tmp_path / "cache", "train.data": mode,
                                                         "train.sampling": "epoch"})
    data = load_train_data(cfg)
    assert data.in_ram == (mode == "ram")
    images, labels, classes = _prepared_crops(cfg)
    train, val = _split(len(images), cfg.source.val_fraction, cfg.seed)
    assert data.classes == classes
    np.testing.assert_array_equal(torch.cat(list(iter_store(data.source_val, 7))).numpy(), images[val])
    np.testing.assert_array_equal(data.source.read(np.arange(len(data.source))), images[train])
    np.testing.assert_array_equal(data.source.columns["class_ids"], labels[train])
    target = load_frames(cfg.target.bags[0], BagSelection(tuple(cfg.target.topics)), cfg.preprocess.prepare).images
    np.testing.assert_array_equal(data.target[0].read(np.arange(len(target))), target)
    sampling = make_sampling(cfg, data, train_task(cfg.task), 1, uses_target=True)
    batch = StepBatches(sampling.source, sampling.target, cfg.seed)[3]
    assert batch["source"]["images"].shape == (16, 3, 28, 28) and batch["target"]["images"].shape == (16, 3, 28, 28)
    ids = batch["source"]["ids"][:, 1].numpy()
    np.testing.assert_array_equal(batch["source"]["labels"].numpy(), labels[train][ids])
    np.testing.assert_array_equal(batch["source"]["images"].numpy(), images[train][ids])


def test_max_frames_keeps_the_seeded_target_subset(tiny_domains, tmp_path):
    from dann_ros.data.bags import load_frames
    from dann_ros.train.data import load_train_data

    from .conftest import tiny_config

    cfg = tiny_config(tiny_domains, tmp_path / "run", **{"cache_dir": tmp_path / "cache", "target.max_frames": 50})
    data = load_train_data(cfg)
    assert data.n_target == 50
    every = load_frames(cfg.target.bags[0], BagSelection(tuple(cfg.target.topics)), cfg.preprocess.prepare).images
    pick = np.sort(np.random.default_rng(cfg.seed).choice(len(every), 50, replace=False))
    np.testing.assert_array_equal(data.target[0].read(np.arange(50)), every[pick])


def test_streamed_detection_data_carries_the_boxes(tiny_detection_domains, tmp_path):
    from dann_ros.data.frame_cache import to_network
    from dann_ros.train.data import load_train_data, make_sampling
    from dann_ros.train.tasks import train_task

    from .conftest import tiny_detection_config

    cfg = tiny_detection_config(tiny_detection_domains, tmp_path / "run", **{
        "cache_dir": tmp_path / "cache", "train.data": "stream", "train.sampling": "epoch"})
    data = load_train_data(cfg)
    sampling = make_sampling(cfg, data, train_task(cfg.task), 2, uses_target=True)
    frames = replicator.scan(cfg.source.replicator)
    train, _ = _split(len(frames), cfg.source.val_fraction, cfg.seed)
    batch = StepBatches(sampling.source, sampling.target, cfg.seed, rank=1)[0]
    for k, i in enumerate(batch["source"]["ids"][:, 1].tolist()):
        frame = frames[train[i]]
        image, geometry = cfg.preprocess.prepare(frame.load_rgb())
        visible = [b for b in frame.boxes if b.occlusion is None or b.occlusion <= cfg.source.crop.max_occlusion]
        want = to_network(np.array([[b.x_min, b.y_min, b.x_max, b.y_max] for b in visible], np.float32), geometry)
        np.testing.assert_allclose(batch["source"]["boxes"][k].numpy(), want, atol=1e-4)
        assert batch["source"]["box_classes"][k].tolist() == [cfg.classes.index(b.class_name) for b in visible]
        np.testing.assert_array_equal(batch["source"]["images"][k].numpy(), image)


def test_stream_arguments_are_checked(stores):
    source, targets = stores
    with pytest.raises(ValueError, match=r"2 stores \(bags\) but 3 weights"):
        Stream.of(targets, 0, 4, weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="one record shape"):
        Stream.of([targets[0], source.load().__class__(np.zeros((2, 1, 8, 8), np.uint8), {}, {}, {})], 0, 4)


def test_random_draws_are_the_trainer_s_former_batches():
    """``train.sampling: random`` draws what Trainer._batch drew before streaming: one generator per
    (seed, step, rank), source indices, then target indices over the bags together, then augmentation."""
    from dann_ros.train.streaming import RandomDraws

    draws = RandomDraws(100, [30, 20], seed=3, batch_size=8)
    for step, rank in ((0, 0), (5, 1)):
        g = torch.Generator().manual_seed(((3 * 1_000_003 + step) * 131 + rank) & (2**62 - 1))
        source, target = torch.randint(100, (8,), generator=g), torch.randint(50, (8,), generator=g)
        s, (parts, records), g2 = draws.draws(step, rank)
        np.testing.assert_array_equal(s, source.numpy())
        np.testing.assert_array_equal(np.where(parts == 0, records, 30 + records), target.numpy())
        assert torch.equal(torch.rand(4, generator=g2), torch.rand(4, generator=g))  # the augmentation's stream
        np.testing.assert_array_equal(draws.source.batch(step, rank)[1], source.numpy())


def test_weighted_target_bags(tiny_domains, tmp_path):
    """target.weights: two bags mixed 1:3 by both samplers, every record inside its own bag."""
    from dann_ros.train.data import load_train_data, make_sampling
    from dann_ros.train.tasks import train_task

    from .conftest import tiny_config

    for sampling in ("random", "epoch"):
        cfg = tiny_config(tiny_domains, tmp_path / sampling, **{
            "target.bags": [tiny_domains["bag"], tiny_domains["bag"]], "target.weights": [1.0, 3.0],
            "train.sampling": sampling, "train.batch_size": 64})
        data = load_train_data(cfg)
        s = make_sampling(cfg, data, train_task(cfg.task), 1, uses_target=True)
        parts = np.concatenate([s.target.sampler.batch(step, 0)[0] for step in range(40)])
        records = np.concatenate([s.target.sampler.batch(step, 0)[1] for step in range(40)])
        assert abs(parts.mean() - 0.75) < 0.05, (sampling, parts.mean())
        assert records.min() >= 0 and records.max() < len(data.target[0])
    with pytest.raises(ValueError, match="target.weights: 1 weights for 2 bags"):
        tiny_config(tiny_domains, tmp_path / "x", **{"target.bags": [tiny_domains["bag"]] * 2, "target.weights": [1.0]})
