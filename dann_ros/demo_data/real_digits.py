"""The demo's real classification target: OpenCV's handwritten digits recorded as camera bags.

Each cell of digits.png becomes one frame; the split into train and test is made per class before
anything is written, so no handwritten digit of the test bag is in the training bag.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from dann_ros.data.make_bag import DIGIT_CLASSES, digits_grid, write_labelled_bag


def record_digits(digits_png: str | os.PathLike[str], out_dir: str | os.PathLike[str], seed: int = 0,
                  test_fraction: float = 0.2, storage: Literal["mcap", "sqlite3"] = "mcap",
                  compressed: bool | Literal["jpeg", "png"] = False) -> tuple[Path, Path]:
    """The demo's "real camera": out_dir/real_digits_train and real_digits_test bags.

    The split is disjoint and stratified per class; each bag plays its digits in shuffled
    order and has a label sidecar. Returns the two bag paths.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be within (0, 1), got {test_fraction}")
    images, labels = digits_grid(digits_png)
    rng = np.random.default_rng(seed)
    label_arr = np.asarray(labels)
    train_idx, test_idx = [], []
    for cls in DIGIT_CLASSES:
        members = rng.permutation(np.flatnonzero(label_arr == cls))
        n_test = round(len(members) * test_fraction)
        test_idx += members[:n_test].tolist()
        train_idx += members[n_test:].tolist()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bags = []
    for name, idx in (("real_digits_train", train_idx), ("real_digits_test", test_idx)):
        order = rng.permutation(np.asarray(idx))
        bag = out_dir / name
        write_labelled_bag(bag, [images[i] for i in order], [labels[i] for i in order], DIGIT_CLASSES,
                           storage=storage, compressed=compressed,
                           source={"digits_png": str(digits_png), "seed": seed, "split": name,
                                   "cells": [int(i) for i in order]})
        bags.append(bag)
    return bags[0], bags[1]
