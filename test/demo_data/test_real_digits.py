"""The demo's real classification bags: a disjoint, stratified, shuffled split with label sidecars."""

import numpy as np

from dann_ros.data.bags import iter_frames
from dann_ros.data.labels import LabelFile, default_labels_path
from dann_ros.demo_data.real_digits import record_digits
from test.conftest import synthetic_digits


def test_record_digits_writes_disjoint_labelled_bags(tmp_path):
    train, test = record_digits(synthetic_digits(tmp_path / "digits.png"), tmp_path / "out", seed=3,
                                test_fraction=0.2, storage="sqlite3")
    assert (train.name, test.name) == ("real_digits_train", "real_digits_test")
    train_labels, test_labels = LabelFile.load(default_labels_path(train)), LabelFile.load(default_labels_path(test))
    assert len(train_labels.frames) == 4000 and len(test_labels.frames) == 1000
    assert set(train_labels.source["cells"]).isdisjoint(test_labels.source["cells"])
    counts = np.bincount([int(f.label) for f in test_labels.frames])
    assert counts.tolist() == [100] * 10  # stratified
    assert [f.label for f in test_labels.frames[:20]] != sorted(f.label for f in test_labels.frames[:20])  # shuffled
    frames = list(iter_frames(test))
    m = test_labels.match(_frameset(frames))
    assert m.unmatched == 0 and m.by_index == 0
    # every frame's pixels say which row (hence class) of the grid it came from
    assert all(int(f.image[5, 5, 0]) // 25 == cls for f, cls in zip(frames, m.class_ids))


def _frameset(frames):
    from types import SimpleNamespace
    return SimpleNamespace(stamps_ns=np.array([f.stamp_ns for f in frames]),
                           indices=np.array([f.index for f in frames]), topics=np.array([f.topic for f in frames]))
