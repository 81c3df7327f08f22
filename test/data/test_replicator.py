"""Reading Isaac Sim Replicator BasicWriter output (as written by the simulator) and cropping objects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dann_ros.data.replicator import (BBOX_DTYPE, Box, CropSpec, ReplicatorFormatError, ReplicatorFrame, crop_box,
                                      frame_labels, iter_crops, read_rgb, scan)
from dann_ros.demo_data.synth import SynthConfig, render_dataset

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


def test_boxes_read_as_corners_and_occlusion_is_optional(tmp_path):
    _write_frame(tmp_path, "0000", [(5, 1, 2, 11, 12, 0.25), (6, 3, 3, 9, 9, -1.0)],
                 {"5": {"class": "car"}, "6": {"class": " truck "}})
    old = np.dtype([(n, BBOX_DTYPE[n]) for n in ("semanticId", "x_min", "y_min", "x_max", "y_max")])
    _write_frame(tmp_path, "0001", [(5, 1, 2, 11, 12)], {"5": {"class": "car"}}, dtype=old)
    f0, f1 = scan(tmp_path)
    assert f0.boxes == (Box(1, 2, 12, 13, "car", 0.25, ("car",)), Box(3, 3, 10, 10, "truck", None, ("truck",)))
    assert f1.boxes == (Box(1, 2, 12, 13, "car", None, ("car",)),)
    assert f0.boxes[0].width == 11 and f0.boxes[0].height == 11  # columns 1..11 inclusive
    assert f0.duplicates == f1.duplicates == 0


# --------------------------------------------------------------------------- real BasicWriter quirks
# Each test writes files in the exact form Isaac Sim's BasicWriter writes them (measured on Isaac
# Sim 4.2, ../shared/notes/measured.md): structured .npy with its field names and dtypes, the labels
# JSON keyed by semantic id strings, RGBA PNGs, 4-digit frame numbers in one flat folder.

def _basicwriter_frame(folder: Path, name: str, rows: list[tuple], id_to_labels: dict, size=(72, 128),
                       dtype=BBOX_DTYPE, prefix: str = "bounding_box_2d_tight_", alpha: np.ndarray | None = None,
                       bgr: np.ndarray | None = None) -> None:
    """One BasicWriter frame: rgb (RGBA), the tight-box array, its labels and prim paths, a semantic PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    colour = bgr if bgr is not None else np.full((h, w, 3), 90, np.uint8)
    a = alpha if alpha is not None else np.full((h, w), 255, np.uint8)
    cv2.imwrite(str(folder / f"rgb_{name}.png"), np.dstack([colour, a]))
    np.save(folder / f"{prefix}{name}.npy", np.array(rows, dtype=dtype))
    (folder / f"{prefix}labels_{name}.json").write_text(json.dumps(id_to_labels))
    (folder / f"{prefix}prim_paths_{name}.json").write_text(
        json.dumps([f"/World/obj_{i}" for i in range(len(rows))]))
    cv2.imwrite(str(folder / f"semantic_segmentation_{name}.png"), np.zeros((h, w, 4), np.uint8))
    (folder / f"semantic_segmentation_labels_{name}.json").write_text(
        json.dumps({"(0, 0, 0, 0)": {"class": "BACKGROUND"}}))


def test_inclusive_coordinates_become_corners_up_to_the_image_edge(tmp_path):
    """x_max reaches width - 1 in real output (1279 on 1280): read as x_max = width, one convention after."""
    h, w = 72, 128
    _basicwriter_frame(tmp_path, "0000", [(0, 100, 50, w - 1, h - 1, 0.0), (1, 7, 9, 7, 9, 0.0)],
                       {"0": {"class": "pallet"}, "1": {"class": "screw"}}, size=(h, w))
    (frame,) = scan(tmp_path)
    edge, pixel = frame.boxes
    assert (edge.x_min, edge.y_min, edge.x_max, edge.y_max) == (100, 50, w, h)
    assert (edge.width, edge.height) == (28, 22)
    assert (pixel.width, pixel.height) == (1, 1)  # a one-pixel object is one pixel wide, not zero
    image = frame.load_rgb()
    crop = crop_box(image, edge, CropSpec(margin=0.0, square=False))
    assert crop.shape == (22, 28, 3) and np.array_equal(crop, image[50:, 100:])


def test_synth_writes_inclusive_boxes_and_the_reader_gives_corners(single):
    """The demo simulator writes what BasicWriter writes; source and label-sidecar boxes then agree."""
    for frame in scan(single):
        raw = np.load(single / f"bounding_box_2d_tight_{frame.name}.npy")
        (box,) = frame.boxes
        assert (box.x_min, box.y_min, box.x_max, box.y_max) == (raw["x_min"][0], raw["y_min"][0],
                                                                 raw["x_max"][0] + 1, raw["y_max"][0] + 1)


@pytest.mark.parametrize("row, field", [((0, 10, 10, 9, 20, 0.0), "x_max"), ((0, 10, 10, 20, 3, 0.0), "y_max")])
def test_box_with_max_below_min_names_file_row_and_field(tmp_path, row, field):
    _basicwriter_frame(tmp_path, "0003", [(0, 1, 1, 5, 5, 0.0), row], {"0": {"class": "pallet"}})
    with pytest.raises(ReplicatorFormatError, match=f"row 1.*{field}") as err:
        scan(tmp_path)
    assert "bounding_box_2d_tight_0003.npy" in str(err.value)


def test_float_coordinates_are_refused_naming_the_field(tmp_path):
    floats = np.dtype([("semanticId", "<u4"), ("x_min", "<f4"), ("y_min", "<i4"), ("x_max", "<i4"),
                       ("y_max", "<i4")])
    _basicwriter_frame(tmp_path, "0000", [(0, 1.5, 1, 5, 5)], {"0": {"class": "a"}}, dtype=floats)
    with pytest.raises(ReplicatorFormatError, match="x_min.*integers") as err:
        scan(tmp_path)
    assert "bounding_box_2d_tight_0000.npy" in str(err.value)


def test_parent_and_child_prim_with_the_same_box_are_one_object(tmp_path):
    """occlusionRatio -1 marks a prim with semantic children; it often repeats its child's box."""
    rows = [
        (0, 10, 10, 40, 30, -1.0),  # parent /World/forklift
        (0, 10, 10, 40, 30, 0.2),  # its child, same box: the same object
        (0, 50, 10, 60, 30, -1.0),  # a parent whose box no child repeats: kept, occlusion unknown
        (1, 10, 10, 40, 30, 0.0),  # same pixels, other class: a different label, kept
        (2, 70, 40, 90, 60, 0.1), (2, 70, 40, 90, 60, -1.0),  # child listed first this time
    ]
    _basicwriter_frame(tmp_path, "0000", rows, {"0": {"class": "forklift"}, "1": {"class": "pallet"},
                                                "2": {"class": "cone"}})
    (frame,) = scan(tmp_path)
    assert frame.duplicates == 2
    got = [(b.class_name, b.x_min, b.y_min, b.x_max, b.y_max, b.occlusion) for b in frame.boxes]
    assert got == [("forklift", 10, 10, 41, 31, pytest.approx(0.2)), ("forklift", 50, 10, 61, 31, None),
                   ("pallet", 10, 10, 41, 31, 0.0), ("cone", 70, 40, 91, 61, pytest.approx(0.1))]
    stream = iter_crops([frame], CropSpec(min_size=1, max_occlusion=1.0))
    assert len(list(stream)) == 4
    assert stream.stats.skipped["duplicate"] == 2 and stream.stats.crops == 4


def test_comma_joined_class_names_keep_every_label(tmp_path):
    """BasicWriter joins a prim's semantic labels with commas ("cone,obstacle")."""
    _basicwriter_frame(tmp_path, "0000", [(0, 5, 5, 30, 30, 0.0), (1, 40, 5, 70, 30, 0.0)],
                       {"0": {"class": "cone,obstacle"}, "1": {"class": "wall, static ,"}})
    (frame,) = scan(tmp_path)
    cone, wall = frame.boxes
    assert (cone.class_name, cone.names) == ("cone", ("cone", "obstacle"))
    assert (wall.class_name, wall.names) == ("wall", ("wall", "static"))
    assert cone.class_among(None) == "cone" and cone.class_among({"obstacle"}) == "obstacle"
    assert wall.class_among({"obstacle"}) is None
    stream = iter_crops([frame], CropSpec(min_size=1), classes={"obstacle", "static"})
    assert sorted(c for _, c in stream) == ["obstacle", "static"]


def test_comma_only_class_is_an_error_naming_the_file(tmp_path):
    _basicwriter_frame(tmp_path, "0000", [(0, 5, 5, 30, 30, 0.0)], {"0": {"class": " , "}})
    with pytest.raises(ReplicatorFormatError, match="empty class") as err:
        scan(tmp_path)
    assert "bounding_box_2d_tight_labels_0000.json" in str(err.value)


def test_rgba_png_drops_alpha_without_premultiplying(tmp_path):
    """rgb_<frame>.png is RGBA; alpha (0 where nothing was rendered) must not darken or leak into colour."""
    h, w = 72, 128
    bgr = np.zeros((h, w, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 30, 120, 210  # B, G, R
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, w // 2:] = 255
    _basicwriter_frame(tmp_path, "0000", [(0, 1, 1, 10, 10, 0.0)], {"0": {"class": "a"}}, size=(h, w),
                       alpha=alpha, bgr=bgr)
    (frame,) = scan(tmp_path)  # the RGBA semantic_segmentation PNG and its labels are not frames
    assert frame.rgb_path.name == "rgb_0000.png"
    assert cv2.imread(str(frame.rgb_path), cv2.IMREAD_UNCHANGED).shape == (h, w, 4)
    rgb = frame.load_rgb()
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    assert (rgb == np.array([210, 120, 30], np.uint8)).all()


@pytest.mark.parametrize("prefix", ["bounding_box_2d_tight_", "bounding_box_2d_tight_fast_"])
def test_fast_annotator_output_without_occlusion_ratio(tmp_path, prefix):
    """bounding_box_2d_tight_fast has no occlusionRatio; BasicWriter writes it under the usual names,
    writers that name files after the annotator as bounding_box_2d_tight_fast_<frame>.npy."""
    fast = np.dtype([("semanticId", "<u4"), ("x_min", "<i4"), ("y_min", "<i4"), ("x_max", "<i4"), ("y_max", "<i4")])
    rows = [(3, 0, 0, 127, 71), (4, 20, 30, 40, 50), (4, 20, 30, 40, 50)]  # whole frame; a prim twice
    _basicwriter_frame(tmp_path, "0000", rows, {"3": {"class": "floor"}, "4": {"class": "cone,obstacle"}},
                       dtype=fast, prefix=prefix)
    _basicwriter_frame(tmp_path, "0001", [], {}, dtype=fast, prefix=prefix)  # nothing in view
    f0, f1 = scan(tmp_path)
    assert f0.boxes == (Box(0, 0, 128, 72, "floor", None, ("floor",)),
                        Box(20, 30, 41, 51, "cone", None, ("cone", "obstacle")))
    assert f0.duplicates == 1 and f1.boxes == () and f1.duplicates == 0
    crops = list(iter_crops([f0], CropSpec(max_occlusion=0.0), classes={"obstacle"}))  # unknown occlusion: kept
    assert [c for _, c in crops] == ["obstacle"]


def test_plain_annotator_file_wins_over_fast_file_of_the_same_frame(tmp_path):
    _basicwriter_frame(tmp_path, "0000", [(0, 1, 1, 10, 10, 0.5)], {"0": {"class": "a"}})
    fast = np.dtype([(n, BBOX_DTYPE[n]) for n in ("semanticId", "x_min", "y_min", "x_max", "y_max")])
    np.save(tmp_path / "bounding_box_2d_tight_fast_0000.npy", np.array([(0, 2, 2, 20, 20)], fast))
    (frame,) = scan(tmp_path)
    assert frame.boxes == (Box(1, 1, 11, 11, "a", 0.5, ("a",)),)


@pytest.mark.parametrize("write, what", [
    (lambda p: np.save(p, np.zeros((3, 5), np.float32)), "structured"),
    (lambda p: np.save(p, np.zeros(2, np.dtype([("semanticId", "<u4"), ("x_min", "<i4"), ("y_min", "<i4"),
                                                  ("y_max", "<i4")]))), "x_max"),
    (lambda p: p.write_bytes(b"\x00garbage\xff" * 10), "npy"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "npy"),
    # a header declaring 10^12 boxes: refused before numpy tries to allocate 22 TiB (was a MemoryError)
    (lambda p: p.write_bytes(_npy_header((10**12,)) + b"\x00" * 48), r"declares shape \(1000000000000,\)"),
    (lambda p: p.write_bytes(_npy_header((4,)) + b"\x00" * 30), "declares"),  # cut off: 4 rows need 96 bytes
])
def test_malformed_npy_names_the_file(tmp_path, write, what):
    _write_frame(tmp_path, "0000", [(1, 0, 0, 10, 10, 0.0)], {"1": {"class": "a"}})
    bad = tmp_path / "bounding_box_2d_tight_0000.npy"
    write(bad)
    with pytest.raises(ReplicatorFormatError, match=what) as err:
        scan(tmp_path)
    assert bad.name in str(err.value)


def _npy_header(shape) -> bytes:
    header = repr({"descr": BBOX_DTYPE.descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@pytest.mark.parametrize("labels, what", [
    ('{"1": {"class": "a"', "JSON"),
    ("[" * 100_000 + "]" * 100_000, "JSON"),  # nested too deep for json: was a RecursionError
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


def test_cut_off_jpeg_render_is_skipped_and_counted(tmp_path):
    """libjpeg decodes a JPEG cut short with grey rows and only a warning: without its end-of-image
    marker the render is unreadable, not silently half grey."""
    image = _pattern(60, 80)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    path = tmp_path / "rgb_0000.jpg"
    path.write_bytes(jpeg + b"\x00" * 100)  # zero padding after the marker is fine
    assert read_rgb(path).shape == (60, 80, 3)
    path.write_bytes(jpeg[: len(jpeg) * 3 // 4])
    with pytest.raises(ReplicatorFormatError, match="rgb_0000.jpg: JPEG cut short"):
        read_rgb(path)
    stream = iter_crops([ReplicatorFrame("", "0000", path, (Box(0, 0, 20, 20, "a", 0.0),))])
    assert list(stream) == [] and stream.stats.bad_frames == 1


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_empty_or_headless_render_names_the_file(tmp_path, data):
    path = tmp_path / "rgb_0000.png"
    path.write_bytes(data)
    with pytest.raises(ReplicatorFormatError, match="rgb_0000.png"):
        read_rgb(path)


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
