"""Bags for the evaluation tests: real rosbag2 files written like robot recordings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

CLASSES = tuple(str(i) for i in range(10))


def digit_images(n: int, size: tuple[int, int] = (40, 48), seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Small camera-like frames with a drawn digit, and their labels."""
    rng = np.random.default_rng(seed)
    h, w = size
    images, labels = [], []
    for _ in range(n):
        digit = int(rng.integers(0, 10))
        image = np.clip(rng.normal(rng.uniform(60, 190), 15, (h, w, 3)), 0, 255).astype(np.uint8)
        cv2.putText(image, str(digit), (w // 4, int(h * 0.8)), cv2.FONT_HERSHEY_SIMPLEX, h / 32,
                    (255, 255, 255), 2)
        images.append(image)
        labels.append(str(digit))
    return images, labels


@pytest.fixture(scope="session")
def labelled_bag(tmp_path_factory) -> dict[str, Path]:
    from dann_ros.data.make_bag import write_labelled_bag

    root = tmp_path_factory.mktemp("labelled")
    images, labels = digit_images(90)
    bag = root / "cam_bag"
    label_path = write_labelled_bag(bag, images, labels, classes=CLASSES)
    return {"bag": bag, "labels": label_path, "n": len(images)}


# --------------------------------------------------------------------------- a detector that detects
DET_CLASSES = ("red", "blue")
DET_SIZE = (96, 128)  # camera frames; the detector's input is 48 x 64, so boxes scale by exactly 0.5


def box_scenes(n: int, seed: int) -> tuple[list[np.ndarray], list[list]]:
    """Dark noisy frames with one or two red or blue rectangles, and their boxes (LabelBox)."""
    from dann_ros.data.labels import LabelBox

    rng = np.random.default_rng(seed)
    h, w = DET_SIZE
    images, boxes = [], []
    for _ in range(n):
        image = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
        frame_boxes = []
        for k in range(int(rng.integers(1, 3))):
            bw, bh = int(rng.integers(22, 36)), int(rng.integers(22, 36))
            x = int(rng.integers(2, w // 2 - bw)) + k * (w // 2)  # one per half: no overlap
            y = int(rng.integers(2, h - bh - 2))
            cls = int(rng.integers(0, 2))
            image[y:y + bh, x:x + bw] = (220, 30, 30) if cls == 0 else (30, 30, 220)
            frame_boxes.append(LabelBox(float(x), float(y), float(x + bw), float(y + bh), DET_CLASSES[cls]))
        images.append(image)
        boxes.append(frame_boxes)
    return images, boxes


def make_trained_detector_checkpoint(path: Path) -> Path:
    """A lenet CenterNet with the feature pyramid neck, fitted for 80 steps (about 10 s on one core) on box
    scenes: it publishes real detections (the random-weight detector of test/conftest.py publishes empty
    arrays at the node's threshold, so it cannot show that detections are decoded and scored), and the
    node, replay and eval-bag tests run the multi-scale model through ONNX Runtime."""
    import torch

    from dann_ros.data.preprocess import Preprocess
    from dann_ros.model.builders import build_model
    from dann_ros.model.config import ModelConfig
    from dann_ros.train.checkpoint import model_state, save_atomic

    steps = 80
    torch.manual_seed(0)
    torch.set_num_threads(1)  # the suite runs on 2 cores in parallel
    pre = Preprocess(height=48, width=64, resize="letterbox")
    cfg = ModelConfig(backbone="lenet", discriminator_hidden=16, neck="fpn")
    model = build_model(cfg, "detection", len(DET_CLASSES), pre)
    images, boxes = box_scenes(96, seed=11)
    x = torch.from_numpy(np.stack([pre.prepare(im)[0] for im in images]))
    net_boxes = [np.array([[b.x_min, b.y_min, b.x_max, b.y_max] for b in bs], np.float32) * 0.5 for bs in boxes]
    net_classes = [np.array([DET_CLASSES.index(b.class_name) for b in bs], np.int64) for bs in boxes]
    targets = model.encode_targets(net_boxes, net_classes)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        rows = torch.from_numpy(np.random.default_rng(step).choice(len(images), 16, replace=False))
        _, out = model.forward_train(x[rows])
        loss = model.task_loss(out, {k: v[rows] for k, v in targets.items()})
        optim.zero_grad()
        loss.backward()
        optim.step()
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(model_state(model, None, task="detection", classes=DET_CLASSES, preprocess=pre, model_config=cfg,
                            digest="test", step=steps), path)
    return path


@pytest.fixture(scope="session")
def trained_detector_onnx(tmp_path_factory) -> Path:
    from test.conftest import TORCH_BLOCKED, _prebuilt_model

    if TORCH_BLOCKED:  # written by `python -m test.make_test_models` before torch was blocked
        return _prebuilt_model("trained_detector.onnx", tmp_path_factory)
    from dann_ros.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("trained_det")
    export_onnx(make_trained_detector_checkpoint(folder / "model.pt"), folder / "model.onnx")
    return folder / "model.onnx"


@pytest.fixture(scope="session")
def box_bag(tmp_path_factory) -> dict:
    """24 box scenes at 10 Hz in a rosbag2 folder named like `ros2 bag record -o scenes.bag` names it,
    with a detection label file next to it."""
    from dann_ros.data.make_bag import write_detection_bag

    images, boxes = box_scenes(24, seed=12)
    bag = tmp_path_factory.mktemp("box_bag") / "scenes.bag"
    labels = write_detection_bag(bag, images, boxes, DET_CLASSES, fps=10.0)
    return {"bag": bag, "labels": labels, "n": len(images), "images": images}
