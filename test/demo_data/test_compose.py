from pathlib import Path

import cv2
import numpy as np
import pytest

from dann_ros.data.bags import iter_frames
from dann_ros.demo_data.compose import (
    BOX_ALPHA,
    compose_frame,
    digit_masks,
    iter_video_frames,
    optdigits_masks,
    record_digit_scenes,
    record_holdout_scenes,
    split_cells,
    video_frame_count,
)
from dann_ros.data.labels import LabelFile, default_labels_path

REAL = Path(__file__).resolve().parents[2] / ".cache" / "data" / "opencv"


def _fake_digits(path: Path) -> Path:
    """digits.png stand-in: 50 x 100 cells of 20 x 20, white glyphs on black, 5 rows per class."""
    grid = np.zeros((1000, 2000), np.uint8)
    for r in range(50):
        for c in range(100):
            cell = grid[r * 20:(r + 1) * 20, c * 20:(c + 1) * 20]
            cv2.putText(cell, str(r // 5), (4 + c % 3, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, 255, 1 + c % 2,
                        cv2.LINE_AA)
    cv2.imwrite(str(path), grid)
    return path


def _fake_video(path: Path, n: int = 24, size: tuple[int, int] = (192, 144)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    xx = np.linspace(0, 255, size[0], dtype=np.float32)[None, :]
    yy = np.linspace(0, 255, size[1], dtype=np.float32)[:, None]
    for i in range(n):  # a gradient that drifts, plus a moving dark block ("pedestrian")
        img = np.stack([0.5 * xx + 0.3 * yy + 3 * i, 0.4 * yy + 60 + 0 * xx, 200 - 0.5 * xx + 0 * yy], 2)
        img = np.clip(img, 0, 255).astype(np.uint8)
        cv2.rectangle(img, (10 + 5 * i, 40), (30 + 5 * i, 90), (20, 20, 20), -1)
        writer.write(img)
    writer.release()
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The real digits.png / vtest.avi when the setup has fetched them, else small stand-ins."""
    folder = tmp_path_factory.mktemp("sources")
    digits = REAL / "digits.png" if (REAL / "digits.png").is_file() else _fake_digits(folder / "digits.png")
    video = REAL / "vtest.avi" if (REAL / "vtest.avi").is_file() else _fake_video(folder / "vtest.avi")
    return digits, video


def test_digit_masks_are_tight_ink(sources):
    masks, labels = digit_masks(sources[0])
    assert len(masks) == len(labels) == 5000 and labels[0] == "0" and labels[4999] == "9"
    for m in masks[::250]:
        assert m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
        assert (m[0] >= BOX_ALPHA).any() and (m[-1] >= BOX_ALPHA).any()  # cropped to the ink
        assert (m[:, 0] >= BOX_ALPHA).any() and (m[:, -1] >= BOX_ALPHA).any()


def test_split_is_disjoint_and_stratified():
    labels = [str(i // 500) for i in range(5000)]
    train, test = split_cells(labels, 0.25, np.random.default_rng(0))
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == 5000
    assert np.bincount(np.asarray(labels)[test].astype(int)).tolist() == [125] * 10


def test_compose_frame_boxes_hold_the_ink(sources):
    masks, labels = digit_masks(sources[0])
    rng = np.random.default_rng(1)
    background = np.full((120, 160, 3), 128, np.uint8)
    for _ in range(20):
        f = compose_frame(rng, background, masks, labels, np.arange(5000), 4, (12.0, 32.0))
        assert f.rgb.shape == background.shape and 1 <= len(f.boxes) <= 4 and len(f.classes) == len(f.boxes)
        diff = np.abs(f.rgb.astype(int) - background).max(axis=2)
        changed = diff > 5
        # ink below BOX_ALPHA (anti-aliased fringe) changes a mid-grey pixel by less than 0.25 * 128
        strong = diff > BOX_ALPHA * 128 + 1
        inside = np.zeros_like(changed)
        for (x0, y0, x1, y1), cell, cls in zip(f.boxes, f.cells, f.classes):
            assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120
            assert 10 <= y1 - y0 <= 34
            assert changed[y0:y1, x0:x1].mean() > 0.1  # the box contains ink
            assert changed[y0, x0:x1].any() and changed[y1 - 1, x0:x1].any()  # and is tight around it
            assert cls == labels[cell]
            inside[y0:y1, x0:x1] = True
        assert not (strong & ~inside).any()  # no real ink outside the boxes
        for i in range(len(f.boxes)):  # non-overlapping
            for j in range(i):
                a, b = f.boxes[i], f.boxes[j]
                assert a[0] >= b[2] or b[0] >= a[2] or a[1] >= b[3] or b[1] >= a[3]


def test_record_digit_scenes_writes_labelled_detection_bags(sources, tmp_path):
    digits, video = sources
    train, test, dev = record_digit_scenes(digits, video, tmp_path / "out", seed=2, n_frames=16, test_fraction=0.25,
                                           size=(160, 120), digits_per_frame=(1, 3), dev_frames=0)
    assert dev is None and not (tmp_path / "out" / "real_scenes_dev").exists()
    assert (train.name, test.name) == ("real_scenes_train", "real_scenes_test")
    tl, sl = LabelFile.load(default_labels_path(train)), LabelFile.load(default_labels_path(test))
    assert tl.task == sl.task == "detection" and tl.classes == tuple("0123456789")
    assert len(tl.frames) == 12 and len(sl.frames) == 4
    train_cells = {c for f in tl.source["frames"] for c in f["cells"]}
    test_cells = {c for f in sl.source["frames"] for c in f["cells"]}
    assert train_cells and test_cells and train_cells.isdisjoint(test_cells)
    # the whole video is sampled, in time order, without repeats
    video_frames = [f["video_frame"] for f in tl.source["frames"]]
    assert video_frames == sorted(video_frames) and len(set(video_frames)) == len(video_frames)
    assert set(video_frames).isdisjoint(f["video_frame"] for f in sl.source["frames"])

    frames = list(iter_frames(test))
    assert [f.stamp_ns for f in frames] == [f.stamp_ns for f in sl.frames]
    originals = dict(iter_video_frames(video, [f["video_frame"] for f in sl.source["frames"]], (160, 120)))
    for frame, label, prov in zip(frames, sl.frames, sl.source["frames"]):
        assert frame.image.shape == (120, 160, 3)
        assert 1 <= len(label.boxes) <= 3 and len(label.boxes) == len(prov["cells"])
        diff = np.abs(frame.image.astype(int) - originals[prov["video_frame"]]).max(axis=2) > 20
        for b in label.boxes:
            assert 0 <= b.x_min < b.x_max <= 160 and 0 <= b.y_min < b.y_max <= 120
            assert diff[int(b.y_min):int(b.y_max), int(b.x_min):int(b.x_max)].any()
    m = sl.match(_frameset(frames))
    assert m.unmatched == 0 and sum(len(b) for b in m.boxes) == sum(len(f.boxes) for f in sl.frames)


def _provenance(bag: Path) -> list[dict]:
    return LabelFile.load(default_labels_path(bag)).source["frames"]


def _files(bag: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(bag.iterdir())} | {"labels": default_labels_path(bag).read_bytes()}


def test_dev_bag_shares_no_frame_or_digit_and_leaves_train_and_test_as_they_were(sources, tmp_path):
    """real_scenes_dev: labelled like the others, no video frame and no digit cell in two of the three
    bags, and train/test byte-identical to a recording without dev. Written alone beside existing
    train/test bags (the demo's case), it comes out the same."""
    digits, video = sources
    n_video = video_frame_count(video)
    opts = dict(seed=3, n_frames=min(16, n_video - 6), test_fraction=0.25, size=(160, 120), digits_per_frame=(1, 3))
    train, test, dev = record_digit_scenes(digits, video, tmp_path / "all", dev_frames=6, **opts)
    assert dev == tmp_path / "all" / "real_scenes_dev"
    frames = {b.name: _provenance(b) for b in (train, test, dev)}
    assert len(frames["real_scenes_dev"]) == 6
    video_frames = {n: {f["video_frame"] for f in fs} for n, fs in frames.items()}
    cells = {n: {c for f in fs for c in f["cells"]} for n, fs in frames.items()}
    names = list(frames)
    for i in range(3):
        for j in range(i):
            assert video_frames[names[i]].isdisjoint(video_frames[names[j]]), (names[i], names[j])
            assert cells[names[i]].isdisjoint(cells[names[j]]), (names[i], names[j])
    assert all(cells.values())
    labels = LabelFile.load(default_labels_path(dev))
    assert labels.task == "detection" and labels.source["split"] == "real_scenes_dev"
    assert sum(len(f.boxes) for f in labels.frames) == sum(len(f["cells"]) for f in frames["real_scenes_dev"])
    assert len(list(iter_frames(dev))) == 6
    dv = [f["video_frame"] for f in frames["real_scenes_dev"]]
    assert dv == sorted(dv)  # plays in time order

    # the same recording without dev: train and test byte for byte
    plain = record_digit_scenes(digits, video, tmp_path / "plain", dev_frames=0, **opts)
    assert _files(plain[0]) == _files(train) and _files(plain[1]) == _files(test)
    # dev added later beside them (read from their sidecars), or with train/test only composed in memory
    _, _, dev_later = record_digit_scenes(digits, video, tmp_path / "plain", dev_frames=6, write=("real_scenes_dev",),
                                          **opts)
    assert _files(plain[0]) == _files(train)  # untouched
    alone = record_digit_scenes(digits, video, tmp_path / "alone", dev_frames=6, write=("real_scenes_dev",), **opts)[2]
    assert not (tmp_path / "alone" / "real_scenes_train").exists()
    assert _files(dev_later) == _files(dev) == _files(alone)


def test_optdigits_masks_are_other_writers_tight_ink():
    masks, labels = optdigits_masks()
    assert len(masks) == len(labels) == 1797 and set(labels) == set("0123456789")
    for m in masks:
        assert m.dtype == np.float32 and m.max() <= 1.0 and max(m.shape) <= 8
        rows, cols = np.nonzero(m >= BOX_ALPHA)  # tight: ink touches every edge
        assert rows.min() == 0 and cols.min() == 0 and rows.max() == m.shape[0] - 1 and cols.max() == m.shape[1] - 1


def test_holdout_bag_paints_other_writers_on_the_test_bags_own_frames(sources, tmp_path):
    """real_scenes_holdout: the test bag's video frames, size and digit heights, optdigits' digits instead
    of digits.png's, labelled as the others; a test bag without provenance is refused by name."""
    digits, video = sources
    _, test, _ = record_digit_scenes(digits, video, tmp_path, seed=4, n_frames=12, test_fraction=0.5,
                                     size=(160, 120), digits_per_frame=(1, 3), dev_frames=0)
    bag = record_holdout_scenes(video, test, tmp_path, seed=4, digits_per_frame=(1, 3))
    assert bag == tmp_path / "real_scenes_holdout"
    held, tested = LabelFile.load(default_labels_path(bag)), LabelFile.load(default_labels_path(test))
    assert held.task == "detection" and held.classes == tested.classes
    assert held.source["split"] == "real_scenes_holdout" and "optdigits" in held.source["digits"]
    assert [f["video_frame"] for f in held.source["frames"]] == [f["video_frame"] for f in tested.source["frames"]]
    assert held.source["size"] == [160, 120] and held.source["digit_height"] == tested.source["digit_height"]
    _, opt_labels = optdigits_masks()
    originals = dict(iter_video_frames(video, [f["video_frame"] for f in held.source["frames"]], (160, 120)))
    frames = list(iter_frames(bag))
    assert len(frames) == len(tested.frames) == 6
    for frame, label, prov in zip(frames, held.frames, held.source["frames"]):
        assert 1 <= len(label.boxes) <= 3
        assert [b.class_name for b in label.boxes] == [opt_labels[c] for c in prov["cells"]]
        changed = np.abs(frame.image.astype(int) - originals[prov["video_frame"]]).max(axis=2) > 20
        for b in label.boxes:  # ink inside every box
            assert changed[int(b.y_min):int(b.y_max), int(b.x_min):int(b.x_max)].any()

    sidecar = default_labels_path(test)
    stripped = LabelFile.load(sidecar)
    stripped.source.pop("frames")
    stripped.save(sidecar)
    with pytest.raises(ValueError, match="real_scenes_test.labels.json"):
        record_holdout_scenes(video, test, tmp_path / "again")


def test_bad_arguments_are_named(sources, tmp_path):
    digits, video = sources
    with pytest.raises(ValueError, match="test_fraction"):
        record_digit_scenes(digits, video, tmp_path, test_fraction=1.0)
    with pytest.raises(FileNotFoundError, match="nope.avi"):
        record_digit_scenes(digits, tmp_path / "nope.avi", tmp_path, n_frames=4)
    with pytest.raises(ValueError, match="write"):
        record_digit_scenes(digits, video, tmp_path, write=("real_scenes_val",))
    fake = _fake_video(tmp_path / "short.avi", n=8, size=(64, 48))
    with pytest.raises(ValueError, match="real_scenes_dev"):  # every frame taken: none left for dev
        record_digit_scenes(digits, fake, tmp_path / "short", n_frames=8, size=(64, 48), digit_height=(8.0, 16.0))


def _frameset(frames):
    from types import SimpleNamespace
    return SimpleNamespace(stamps_ns=np.array([f.stamp_ns for f in frames]),
                           indices=np.array([f.index for f in frames]), topics=np.array([f.topic for f in frames]))
