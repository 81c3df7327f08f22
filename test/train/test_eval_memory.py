"""Evaluation bounded by bytes (issue 22): every evaluation pass (source-val and eval-target metrics,
box stability, IM/SND, the proxy A-distance) reads as many frames a batch as ``train.eval_memory_mb``
pays for at the model's measured cost per frame, not a fixed 128 or 512 frames; the budget changes
how evaluation batches, not what it computes; and labelled bags are read from their frame store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dann_ros.data.bags import BagSelection, load_frames
from dann_ros.data.frame_store import FrameStore, MemoryStore, Subset, frames_per_batch
from dann_ros.data.labels import LabelFile, class_map
from dann_ros.data.preprocess import Preprocess
from dann_ros.model.builders import build_model
from dann_ros.model.config import ModelConfig
from dann_ros.model.inference import DETECTION_PASSES, eval_batch_size, frame_bytes
from test.train.conftest import tiny_config, tiny_detection_config


def _detector(hw: tuple[int, int]) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone="lenet"), "detection", 3, Preprocess(height=hw[0], width=hw[1]))


def test_a_frame_costs_more_at_a_larger_input_and_the_batch_shrinks():
    small, large = _detector((48, 64)), _detector((192, 256))
    a, b = frame_bytes(small, (3, 48, 64)), frame_bytes(large, (3, 192, 256))
    assert b > 10 * a > 10 * 5 * 3 * 48 * 64  # above the input alone: the activations count
    assert eval_batch_size(small, (3, 48, 64), 512, most=128) == 128  # a small input keeps the fixed batch
    batch = eval_batch_size(large, (3, 192, 256), 512, most=128, passes=DETECTION_PASSES)
    assert batch == 512 * 2**20 // int(DETECTION_PASSES * b) and 1 <= batch < 128
    assert eval_batch_size(large, (3, 192, 256), 1) == 1  # never 0 frames
    with pytest.raises(ValueError, match="positive memory budget"):
        frames_per_batch(100, 0, 10)


def _eval_batches(model: torch.nn.Module) -> list[int]:
    """The batch sizes the backbone sees in eval mode (every evaluation pass; not the training steps)."""
    seen: list[int] = []
    model.backbone.register_forward_pre_hook(lambda m, args: None if m.training else seen.append(len(args[0])))
    return seen


def _run(cfg):
    from dann_ros.train.trainer import Trainer

    trainer = Trainer(cfg, resume=False, show_progress=False)
    seen = _eval_batches(trainer.model)
    result = trainer.run()
    return trainer, seen, result


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_evaluation_passes_stay_within_the_memory_budget(tiny_domains, tiny_detection_domains, tmp_path, task):
    """A run's evaluations and its proxy A-distance read batches whose measured cost stays within
    train.eval_memory_mb, and a budget 500 times larger (one batch a split) gives the same metrics."""
    if task == "detection":
        make = lambda out, mb: tiny_detection_config(  # noqa: E731
            tiny_detection_domains, out, selection="stability",
            **{"preprocess.height": 96, "preprocess.width": 128, "adaptation.method": "dann", "train.steps": 2,
               "train.eval_every": 2, "train.checkpoint_every": 2, "train.eval_memory_mb": mb})
        budget = 24
    else:
        make = lambda out, mb: tiny_config(  # noqa: E731
            tiny_domains, out, **{"train.steps": 2, "train.eval_every": 2, "train.checkpoint_every": 2,
                                  "train.eval_memory_mb": mb})
        budget = 1
    trainer, seen, result = _run(make(tmp_path / "small", budget))
    cost = frame_bytes(trainer.model, trainer.cfg.preprocess.input_shape)
    allowed = frames_per_batch(cost, budget, 512)
    evaluated = len(trainer.data.source_val) + len(trainer.data.eval_target) + sum(map(len, trainer.target_probe))
    assert 1 < allowed < len(trainer.data.source_val), "the budget must split the passes into several batches"
    assert max(seen) <= allowed and max(seen) * cost <= budget * 2**20
    assert sum(seen) >= evaluated + len(trainer.data.source_val) + sum(map(len, trainer.target_probe))  # + PAD
    _, wide, same = _run(make(tmp_path / "large", 500 * budget))
    assert max(wide) > max(seen)
    for k in (k for k in result["last"] if k != "step"):  # equal up to float rounding (sums in other batches)
        assert result["last"][k] == pytest.approx(same["last"][k], rel=1e-6, abs=1e-9), k
    assert result["proxy_a_distance"] == pytest.approx(same["proxy_a_distance"], rel=1e-6)
    assert json.loads((tmp_path / "small" / "metrics.json").read_text())["history"] == result["history"]


def test_box_stability_is_the_same_in_any_batch_size():
    from dann_ros.train.tasks.detection import box_stability

    model = _detector((48, 64)).eval()
    with torch.no_grad():  # untrained, but firing: peaks above the score threshold, boxes a few cells wide
        model.heatmap[-1].bias.fill_(1.0)
        model.size[-1].bias.fill_(4.0)
    images = np.random.default_rng(0).integers(0, 256, (12, 3, 48, 64), dtype=np.uint8)
    stores = [MemoryStore(images[:7], {}, {}, {}), MemoryStore(images[7:], {}, {}, {})]
    cpu = torch.device("cpu")
    scores = [box_stability(model, stores, cpu, budget_mb=mb) for mb in (1, 4, 512)]  # 1, 2 and 12 frames a batch
    assert 0.0 < scores[0] < 1.0 and scores == pytest.approx([scores[0]] * 3, rel=1e-7)  # the same dropout masks


def _base(store):
    while isinstance(store, Subset):
        store = store.store
    return store


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_labelled_bags_are_read_from_their_frame_store(tiny_domains, tiny_detection_domains, tmp_path, task):
    """The eval target (and a labelled source bag) is the bag's frame store on disk with the label file
    matched on as columns: the frames and labels the in-RAM loader gives, without holding them in RAM."""
    from dann_ros.train.data import load_train_data
    from dann_ros.train.tasks import train_task

    domains = tiny_domains if task == "classification" else tiny_detection_domains
    make = tiny_config if task == "classification" else tiny_detection_config
    cfg = make(domains, tmp_path / "run", **{"cache_dir": tmp_path / "cache"})
    classes = tuple(str(i) for i in range(10))
    store = train_task(task).eval_target_store(cfg, classes)
    assert isinstance(store, Subset) and isinstance(store.store, FrameStore)
    ram = load_frames(domains["bag"], BagSelection(), cfg.preprocess.prepare)
    label_file = LabelFile.load(domains["labels"])
    match = label_file.match(ram)
    np.testing.assert_array_equal(store.read(np.arange(len(store))), ram.images[store.indices])
    if task == "classification":
        assert len(store) == len(ram)
        np.testing.assert_array_equal(store.columns["class_ids"],
                                      class_map(label_file.classes, classes)[match.class_ids])
    else:
        np.testing.assert_array_equal(store.indices, np.flatnonzero(match.matched))
        for k, i in enumerate(store.indices):
            np.testing.assert_allclose(ram.geometry(i).to_image(store.ragged("boxes", k)), match.boxes[i], atol=1e-3)

    # a labelled bag as the source (train on the target): its labelled frames, in RAM or streamed alike
    source = {"source.replicator": None, "source.bag": str(domains["bag"]), "source.labels": str(domains["labels"])}
    loaded = {mode: load_train_data(cfg.replace(**source, **{"train.data": mode})) for mode in ("stream", "ram")}
    assert isinstance(_base(loaded["ram"].source), MemoryStore) and isinstance(_base(loaded["stream"].source),
                                                                                FrameStore)
    for name in ("source", "source_val"):
        a, b = (getattr(d, name) for d in loaded.values())
        np.testing.assert_array_equal(a.read(np.arange(len(a))), b.read(np.arange(len(b))))
        if task == "classification":
            np.testing.assert_array_equal(a.columns["class_ids"], b.columns["class_ids"])
            assert (a.columns["class_ids"] >= 0).all()
        else:
            for i in range(len(a)):
                np.testing.assert_array_equal(a.ragged("boxes", i), b.ragged("boxes", i))
