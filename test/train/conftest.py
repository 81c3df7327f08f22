"""A tiny but real source/target pair: rendered digits (Replicator layout) and a camera bag."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dann_ros.config import from_dict
from dann_ros.train.config import TrainConfig


@pytest.fixture(scope="session")
def tiny_domains(tmp_path_factory) -> dict[str, Path]:
    from dann_ros.data.make_bag import write_labelled_bag
    from dann_ros.data.replicator import scan
    from dann_ros.data.synth import SynthConfig, render_dataset

    root = tmp_path_factory.mktemp("domains")
    render_dataset(root / "synth", SynthConfig(n_frames=240, width=32, height=32, seed=1))
    # "real" target: other renders seen through a different camera (grey, inverted, blurred, noisy)
    other = render_dataset(root / "other", SynthConfig(n_frames=160, width=32, height=32, seed=2))
    rng = np.random.default_rng(0)
    images, labels = [], []
    for frame in scan(other):
        grey = 255 - cv2.cvtColor(frame.load_rgb(), cv2.COLOR_RGB2GRAY)
        grey = cv2.GaussianBlur(grey, (3, 3), 0).astype(np.float32) + rng.normal(0, 12, grey.shape)
        images.append(cv2.cvtColor(np.clip(grey, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB))
        labels.append(frame.boxes[0].class_name)
    bag = root / "target_bag"
    write_labelled_bag(bag, images, labels, classes=[str(i) for i in range(10)])
    return {"synth": root / "synth", "bag": bag, "labels": Path(f"{bag}.labels.json"), "root": root}


def tiny_config(domains: dict[str, Path], out: Path, **overrides) -> TrainConfig:
    data = {
        "output_dir": str(out), "cache_dir": str(domains["root"] / "cache"), "seed": 0,
        "source": {"replicator": str(domains["synth"]), "val_fraction": 0.2},
        "target": {"bags": [str(domains["bag"])]},
        "eval_target": {"bag": str(domains["bag"]), "labels": str(domains["labels"])},
        "preprocess": {"height": 28, "width": 28},
        "model": {"backbone": "lenet", "bottleneck_dim": 32, "discriminator_hidden": 32},
        "train": {"steps": 12, "batch_size": 16, "eval_every": 4, "checkpoint_every": 2, "device": "cpu",
                  "eval_frames": 64},
    }
    cfg = from_dict(TrainConfig, data)
    return cfg.replace(**overrides) if overrides else cfg
