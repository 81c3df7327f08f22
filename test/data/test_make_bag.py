import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from ruamel.yaml import YAML

from dann_ros.data.bags import iter_frames
from dann_ros.data.labels import LabelFile
from dann_ros.data.make_bag import (
    DEFAULT_START_NS,
    add_make_bag_parser,
    digits_grid,
    images_from_folder,
    images_from_video,
    make_bag,
)
from test.conftest import synthetic_digits

# Where `make setup` puts it (scripts/fetch_demo_data.sh), then an installed opencv-doc.
DIGITS_CANDIDATES = [Path(__file__).resolve().parents[2] / ".cache" / "data" / "opencv" / "digits.png",
                     Path("/usr/share/doc/opencv-doc/examples/data/digits.png")]
REAL_DIGITS = next((p for p in DIGITS_CANDIDATES if p.exists()), None)
RNG = np.random.default_rng(11)
IMAGES = [RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(5)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("compressed", [False, "png", True])
def test_make_bag_round_trip(tmp_path, storage, compressed):
    bag = tmp_path / "bag"
    stamps = make_bag(bag, IMAGES, topic="/robot/cam", frame_id="cam_optical", fps=20.0, compressed=compressed,
                      storage=storage, start_ns=5_000_000_123)
    assert stamps == [5_000_000_123 + i * 50_000_000 for i in range(5)]
    meta = YAML(typ="safe").load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == storage
    with AnyReader([bag]) as reader:  # read back with plain rosbags, independent of dann_ros.data.bags
        (conn,) = reader.connections
        assert (conn.topic, conn.msgtype) == (
            "/robot/cam", "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image")
        log_times = [t for _, t, _ in reader.messages()]
    assert log_times == stamps
    frames = list(iter_frames(bag))
    assert [f.stamp_ns for f in frames] == stamps and {f.frame_id for f in frames} == {"cam_optical"}
    for frame, image in zip(frames, IMAGES):
        diff = np.abs(frame.image.astype(int) - image)
        assert diff.max() == 0 if compressed in (False, "png") else diff.mean() < 60


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "mono16"])
def test_make_bag_raw_encodings(tmp_path, encoding):
    make_bag(tmp_path / "bag", IMAGES[:1], encoding=encoding)
    (frame,) = iter_frames(tmp_path / "bag")
    want = IMAGES[0] if encoding == "bgr8" else np.repeat(cv2.cvtColor(IMAGES[0], cv2.COLOR_RGB2GRAY)[:, :, None], 3, 2)
    np.testing.assert_array_equal(frame.image, want)


def test_make_bag_refuses_bad_input_and_leaves_nothing_behind(tmp_path):
    bag = tmp_path / "bag"
    make_bag(bag, IMAGES[:1])
    with pytest.raises(FileExistsError, match="exists already"):
        make_bag(bag, IMAGES[:1])
    with pytest.raises(ValueError, match="cannot write encoding 'yuv422'"):
        make_bag(tmp_path / "b2", IMAGES, encoding="yuv422")
    with pytest.raises(ValueError, match="no images"):
        make_bag(tmp_path / "b3", [])
    with pytest.raises(ValueError, match="uint8"):
        make_bag(tmp_path / "b4", [IMAGES[0], IMAGES[1].astype(np.float32)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]


def test_images_from_folder_and_video(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, name in enumerate(["b_1.png", "a_0.png", "c_2.jpg"]):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), (10 * i, 20, 200), np.uint8))  # BGR on disk
    (folder / "notes.txt").write_text("ignored")
    images = list(images_from_folder(folder))
    assert [img[0, 0].tolist() for img in images[:2]] == [[200, 20, 10], [200, 20, 0]]  # sorted, RGB
    assert len(images) == 3

    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (32, 24))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for i in range(5):
        writer.write(np.full((24, 32, 3), i * 40, np.uint8))
    writer.release()
    frames = list(images_from_video(video, max_frames=3))
    assert len(frames) == 3 and frames[0].shape == (24, 32, 3)
    assert abs(int(frames[2][12, 16, 0]) - 80) <= 3
    with pytest.raises(FileNotFoundError, match="video not found"):
        images_from_video(tmp_path / "nope.avi")
    with pytest.raises(ValueError, match="no .* images in"):
        images_from_folder(tmp_path)


def test_digits_grid_splits_cells(tmp_path):
    images, labels = digits_grid(synthetic_digits(tmp_path / "digits.png"))
    assert len(images) == len(labels) == 5000 and images[0].shape == (20, 20, 3)
    assert labels[0] == "0" and labels[499] == "0" and labels[500] == "1" and labels[4999] == "9"
    assert images[777][5, 5].tolist() == [35, 35, 35] and images[777][5, 0].tolist() == [255] * 3  # row 7
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="expected OpenCV's 2000x1000"):
        digits_grid(tmp_path / "small.png")


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="dann-ros")
    add_make_bag_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["make-bag", *argv])
    return args.func(args)


def test_cli_digits_and_images(tmp_path, capsys):
    digits = synthetic_digits(tmp_path / "digits.png")
    assert run_cli("--digits", str(digits), "--out", str(tmp_path / "d"), "--limit", "40", "--shuffle-seed", "1",
                   "--compressed", "png", "--topic", "/cam") == 0
    labels = LabelFile.load(tmp_path / "d.labels.json")
    assert labels.topic == "/cam" and len(labels.frames) == 40 and labels.classes == tuple("0123456789")
    assert [f.stamp_ns for f in iter_frames(tmp_path / "d")] == [f.stamp_ns for f in labels.frames]
    assert "wrote 40 frames" in capsys.readouterr().out

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), IMAGES[i][:, :, ::-1])
    assert run_cli("--images", str(folder), "--out", str(tmp_path / "i"), "--limit", "3", "--fps", "5",
                   "--storage", "sqlite3", "--frame-id", "f") == 0
    frames = list(iter_frames(tmp_path / "i"))
    assert len(frames) == 3 and frames[1].stamp_ns - frames[0].stamp_ns == 200_000_000
    np.testing.assert_array_equal(frames[2].image, IMAGES[2])
    assert frames[0].stamp_ns == DEFAULT_START_NS and frames[0].frame_id == "f"
    with pytest.raises(SystemExit):
        run_cli("--images", str(folder), "--video", "x.avi", "--out", str(tmp_path / "z"))


@pytest.mark.skipif(REAL_DIGITS is None, reason="digits.png not fetched (make setup puts it in .cache/data/opencv)")
def test_real_digits_png():
    images, labels = digits_grid(REAL_DIGITS)
    assert len(images) == 5000 and labels.count("3") == 500
    assert 20 < np.mean([img.mean() for img in images]) < 120  # white strokes on black
