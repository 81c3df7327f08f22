"""A tiny but real source/target pair: rendered digits (Replicator layout) and a camera bag."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dann_ros.typed_config import from_dict
from dann_ros.train.config import TrainConfig


@pytest.fixture(scope="session")
def tiny_domains(tmp_path_factory) -> dict[str, Path]:
    from dann_ros.data.make_bag import write_labelled_bag
    from dann_ros.data.replicator import scan
    from dann_ros.demo_data.synth import SynthConfig, render_dataset

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


@pytest.fixture(scope="session")
def tiny_detection_domains(tmp_path_factory) -> dict[str, Path]:
    """Multi-digit scenes (Replicator layout) and a detection bag of other scenes through a different
    camera, wider than the network input so the letterbox and its box mapping are exercised."""
    from dann_ros.data.make_bag import write_detection_bag
    from dann_ros.data.labels import LabelBox
    from dann_ros.data.replicator import scan
    from dann_ros.demo_data.synth import SynthConfig, render_dataset

    root = tmp_path_factory.mktemp("det_domains")
    common = dict(digits_per_image=(1, 3), digit_height=(10.0, 20.0), max_overlap=0.0)
    render_dataset(root / "synth", SynthConfig(n_frames=48, width=64, height=48, seed=1, **common))
    other = render_dataset(root / "other", SynthConfig(n_frames=24, width=80, height=48, seed=2, **common))
    images, boxes = [], []
    for frame in scan(other):
        grey = 255 - cv2.cvtColor(frame.load_rgb(), cv2.COLOR_RGB2GRAY)
        images.append(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))
        boxes.append([LabelBox(b.x_min, b.y_min, b.x_max, b.y_max, b.class_name) for b in frame.boxes])
    bag = root / "target_bag"
    write_detection_bag(bag, images, boxes, classes=[str(i) for i in range(10)])
    return {"synth": root / "synth", "bag": bag, "labels": Path(f"{bag}.labels.json"), "root": root}


def tiny_detection_config(domains: dict[str, Path], out: Path, **overrides) -> TrainConfig:
    data = {
        "task": "detection", "output_dir": str(out), "cache_dir": str(domains["root"] / "cache"), "seed": 0,
        "classes": [str(i) for i in range(10)],
        "source": {"replicator": str(domains["synth"]), "val_fraction": 0.25},
        "target": {"bags": [str(domains["bag"])]},
        "eval_target": {"bag": str(domains["bag"]), "labels": str(domains["labels"])},
        "preprocess": {"height": 48, "width": 64, "resize": "letterbox"},
        "model": {"backbone": "lenet", "discriminator_hidden": 16},
        "optim": {"optimizer": "adam", "lr": 0.002, "lr_schedule": "constant"},
        "selection": "source_val",
        "train": {"steps": 6, "batch_size": 4, "eval_every": 3, "checkpoint_every": 3, "device": "cpu",
                  "eval_frames": 16},
    }
    cfg = from_dict(TrainConfig, data)
    return cfg.replace(**overrides) if overrides else cfg
