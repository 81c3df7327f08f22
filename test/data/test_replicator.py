"""Reading Isaac Sim Replicator BasicWriter output (as written by the simulator) and cropping objects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dann_ros.data.replicator import (BBOX_DTYPE, Box, CropSpec, ReplicatorFormatError, ReplicatorFrame, crop_box,
                                      frame_labels, iter_crops, scan)
from dann_ros.data.synth import SynthConfig, render_dataset

DIGITS = set("0123456789")


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("single")
    render_dataset(root, SynthConfig(n_frames=6, seed=3))
    return root


@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("two")
    render_dataset(root, SynthConfig(n_frames=3, width=120, height=90, digits_per_image=(2, 4), camera="cam_left"))
    render_dataset(root, SynthConfig(n_frames=2, width=120, height=90, digits_per_image=(2, 4), camera="cam_right",
                                     seed=1))
    (root / "notes").mkdir()  # folders without renders are ignored
    return root


def _write_frame(folder: Path, name: str, rows: list[tuple], labels: dict | str | None,
                 dtype=BBOX_DTYPE, size=(40, 50)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"rgb_{name}.png"), np.full((*size, 4), 200, np.uint8))
    np.save(folder / f"bounding_box_2d_tight_{name}.npy", np.array(rows, dtype=dtype))
    if labels is not None:
        text = labels if isinstance(labels, str) else json.dumps(labels)
        (folder / f"bounding_box_2d_tight_labels_{name}.json").write_text(text)


# --------------------------------------------------------------------------- scanning

def test_reads_single_camera_synth_output(single):
    frames = scan(single)
    assert [f.name for f in frames] == [f"{i:04d}" for i in range(6)]
    assert {f.camera for f in frames} == {""}
    for f in frames:
        assert len(f.boxes) == 1
        box = f.boxes[0]
        assert box.class_name in DIGITS and box.occlusion == 0.0
        assert 0 <= box.x_min < box.x_max <= 64 and 0 <= box.y_min < box.y_max <= 64
        rgb = f.load_rgb()
        assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
        bgra = cv2.imread(str(f.rgb_path), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(rgb, bgra[:, :, 2::-1])
    assert scan(single) == frames  # deterministic


def test_reads_camera_subfolders(two_cameras):
    frames = scan(two_cameras)
    assert [f.key for f in frames] == ["cam_left/0000", "cam_left/0001", "cam_left/0002",
                                       "cam_right/0000", "cam_right/0001"]
    assert all(len(f.boxes) >= 1 and f.load_rgb().shape == (90, 120, 3) for f in frames)
    assert all(0.0 <= b.occlusion < 1.0 for f in frames for b in f.boxes)


def test_prefixed_names_sort_naturally_and_missing_annotator_means_whole_frame(tmp_path):
    render_dataset(tmp_path / "src", SynthConfig(n_frames=12, frame_prefix="0_", frame_padding=1))
    for p in (tmp_path / "src").glob("rgb_*.png"):  # only the rgb annotator
        (tmp_path / "rgb_only").mkdir(exist_ok=True)
        shutil.copy(p, tmp_path / "rgb_only" / p.name)
    frames = scan(tmp_path / "src")
    assert [f.name for f in frames] == [f"0_{i}" for i in range(12)]
    bare = scan(tmp_path / "rgb_only")
    assert [f.name for f in bare] == [f.name for f in frames]
    assert all(f.boxes == () for f in bare)


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ReplicatorFormatError, match="empty"):
        scan(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ReplicatorFormatError, match=str(tmp_path)):
        scan(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope"):
        scan(tmp_path / "nope")


def test_multi_label_class_takes_first_and_occlusion_is_optional(tmp_path):
    _write_frame(tmp_path, "0000", [(5, 1, 2, 11, 12, 0.25), (6, 3, 3, 9, 9, -1.0)],
                 {"5": {"class": "car,vehicle"}, "6": {"class": " truck "}})
    old = np.dtype([(n, BBOX_DTYPE[n]) for n in ("semanticId", "x_min", "y_min", "x_max", "y_max")])
    _write_frame(tmp_path, "0001", [(5, 1, 2, 11, 12)], {"5": {"class": "car"}}, dtype=old)
    f0, f1 = scan(tmp_path)
    assert f0.boxes == (Box(1, 2, 11, 12, "car", 0.25), Box(3, 3, 9, 9, "truck", None))
    assert f1.boxes == (Box(1, 2, 11, 12, "car", None),)
    assert f0.boxes[0].width == 10 and f0.boxes[0].height == 10


@pytest.mark.parametrize("write, what", [
    (lambda p: np.save(p, np.zeros((3, 5), np.float32)), "structured"),
    (lambda p: np.save(p, np.zeros(2, np.dtype([("semanticId", "<u4"), ("x_min", "<i4"), ("y_min", "<i4"),
                                                  ("y_max", "<i4")]))), "x_max"),
    (lambda p: p.write_bytes(b"\x00garbage\xff" * 10), "npy"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "npy"),
])
def test_malformed_npy_names_the_file(tmp_path, write, what):
    _write_frame(tmp_path, "0000", [(1, 0, 0, 10, 10, 0.0)], {"1": {"class": "a"}})
    bad = tmp_path / "bounding_box_2d_tight_0000.npy"
    write(bad)
    with pytest.raises(ReplicatorFormatError, match=what) as err:
        scan(tmp_path)
    assert bad.name in str(err.value)


@pytest.mark.parametrize("labels, what", [
    ('{"1": {"class": "a"', "JSON"),
    ({"2": {"class": "a"}}, "semanticId 1"),
    ({"1": {"name": "a"}}, "class"),
    ({"1": "a"}, "class"),
    ([1, 2], "object"),
])
def test_malformed_labels_name_the_file(tmp_path, labels, what):
    _write_frame(tmp_path, "0007", [(1, 0, 0, 10, 10, 0.0)], labels)
    with pytest.raises(ReplicatorFormatError, match=what) as err:
        scan(tmp_path)
    assert "bounding_box_2d_tight_labels_0007.json" in str(err.value)


def test_boxes_without_labels_file_is_an_error(tmp_path):
    _write_frame(tmp_path, "0000", [(1, 0, 0, 10, 10, 0.0)], None)
    with pytest.raises(ReplicatorFormatError, match="bounding_box_2d_tight_0000.npy"):
        scan(tmp_path)


# --------------------------------------------------------------------------- crops

def _frame_with(image: np.ndarray, boxes, tmp_path: Path) -> ReplicatorFrame:
    path = tmp_path / "rgb_0000.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGRA))
    return ReplicatorFrame("", "0000", path, tuple(boxes))


def _pattern(h=100, w=100) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 2 % 256, yy * 2 % 256, (xx + yy) % 256], axis=2).astype(np.uint8)


def test_crop_margin_square_and_border_replication():
    image = _pattern()
    box = Box(40, 40, 60, 50, "a", 0.0)  # 20 x 10, centre (50, 45)
    square = crop_box(image, box, CropSpec(margin=0.15, square=True))
    assert np.array_equal(square, image[32:58, 37:63])  # 20 + 2 * 3 = 26 on both sides
    rect = crop_box(image, box, CropSpec(margin=0.15, square=False))
    assert np.array_equal(rect, image[37:53, 37:63])
    tight = crop_box(image, box, CropSpec(margin=0.0, square=False))
    assert np.array_equal(tight, image[40:50, 40:60])
    corner = crop_box(image, Box(0, 0, 20, 20, "a", None), CropSpec(margin=0.25))
    assert corner.shape == (30, 30, 3)
    assert np.array_equal(corner[5:, 5:], image[:25, :25])
    assert np.array_equal(corner[:5, 5:], np.broadcast_to(image[0, :25], (5, 25, 3)))  # replicated top rows
    assert crop_box(image, Box(150, 150, 170, 170, "a", None), CropSpec()) is None


def test_iter_crops_filters_and_counts(tmp_path):
    boxes = [
        Box(10, 10, 40, 40, "keep", 0.1),
        Box(50, 50, 55, 80, "keep", 0.0),  # 5 px wide: too small
        Box(50, 10, 90, 40, "keep", 0.9),  # mostly hidden
        Box(10, 50, 40, 90, "other", 0.0),  # class not wanted
        Box(60, 60, 90, 90, "keep", None),  # occlusion unknown: kept
        Box(200, 200, 230, 230, "keep", 0.0),  # outside the image
    ]
    frames = [_frame_with(_pattern(), boxes, tmp_path), ReplicatorFrame("", "x", tmp_path / "x.png", ())]
    stream = iter_crops(frames, CropSpec(min_size=8, max_occlusion=0.6), classes={"keep"})
    out = list(stream)
    assert [c for _, c in out] == ["keep", "keep"]
    assert all(img.dtype == np.uint8 and img.shape[2] == 3 and img.shape[0] == img.shape[1] for img, _ in out)
    s = stream.stats
    assert s.crops == 2 and s.frames == 2 and s.frames_without_boxes == 1
    assert dict(s.skipped) == {"small": 1, "occluded": 1, "class": 1, "outside": 1}


def test_iter_crops_skips_and_counts_unreadable_frames(tmp_path):
    bad = tmp_path / "rgb_0000.png"
    bad.write_bytes(b"not a png")
    stream = iter_crops([ReplicatorFrame("", "0000", bad, (Box(0, 0, 20, 20, "a", 0.0),))])
    assert list(stream) == [] and stream.stats.bad_frames == 1


def test_iter_crops_on_synth_output(two_cameras):
    crops = list(iter_crops(scan(two_cameras), CropSpec(max_occlusion=1.0, min_size=1)))
    assert len(crops) == sum(len(f.boxes) for f in scan(two_cameras))
    assert all(c in DIGITS and img.shape[0] == img.shape[1] >= 4 for img, c in crops)


def test_crop_spec_validation():
    with pytest.raises(ValueError):
        CropSpec(margin=-0.1)
    with pytest.raises(ValueError):
        CropSpec(max_occlusion=1.5)


# --------------------------------------------------------------------------- whole-frame labels

def test_frame_labels(two_cameras, single, tmp_path):
    label_file = tmp_path / "labels.json"
    label_file.write_text(json.dumps({"cam_left/0001": "cat", "cam_right/0000": "dog"}))
    out = frame_labels(two_cameras, label_file)
    assert [(f.key, c) for f, c in out] == [("cam_left/0001", "cat"), ("cam_right/0000", "dog")]

    label_file.write_text(json.dumps({"0002": "seven", "0000": "one"}))
    assert [(f.key, c) for f, c in frame_labels(single, label_file)] == [("0000", "one"), ("0002", "seven")]

    label_file.write_text(json.dumps({"0001": "x"}))  # in both cameras
    with pytest.raises(ReplicatorFormatError, match="ambiguous") as err:
        frame_labels(two_cameras, label_file)
    assert "labels.json" in str(err.value) and "0001" in str(err.value)

    label_file.write_text(json.dumps({"cam_left/0099": "x"}))
    with pytest.raises(ReplicatorFormatError, match="cam_left/0099") as err:
        frame_labels(two_cameras, label_file)
    assert "labels.json" in str(err.value)

    label_file.write_text(json.dumps({"0000": 3}))
    with pytest.raises(ReplicatorFormatError, match="'0000'"):
        frame_labels(single, label_file)

    label_file.write_text("{oops")
    with pytest.raises(ReplicatorFormatError, match="labels.json"):
        frame_labels(single, label_file)
