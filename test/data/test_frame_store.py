"""The on-disk frame cache: round trips against the in-RAM loaders, damage of every kind is
rebuilt (never trusted), a build that dies leaves nothing finished, a cache too big for its
disk is refused before writing, and one that runs out of space mid-write is a clear error."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dann_ros.data import replicator
from dann_ros.data.bags import BagSelection, load_frames
from dann_ros.data.frame_cache import (bag_store, crop_store, decode_stats, detection_store, estimate_bag_frames,
                                      frame_geometry, frame_index, split_by_topic)
from dann_ros.data.frame_store import (CacheTooBigError, FrameStore, FrameStoreDamaged, MemoryStore, Progress,
                                       Subset, open_or_build)
from dann_ros.data.make_bag import make_bag
from dann_ros.data.preprocess import Preprocess
from dann_ros.demo_data.synth import SynthConfig, render_dataset

PP = Preprocess(height=24, width=32)


def _frames(n: int, seed: int = 0, size=(40, 56)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "cam.bag"
    make_bag(path, _frames(30), compressed="png", fps=10.0)
    return path


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("renders")
    render_dataset(root, SynthConfig(n_frames=6, width=96, height=72, digits_per_image=(2, 3), seed=5))
    return root


def test_bag_store_round_trip_matches_the_in_ram_loader(bag, tmp_path):
    selection = BagSelection(stride=2, start_s=0.5)
    reports: list[Progress] = []
    store = bag_store(bag, selection, PP, tmp_path / "cache", progress=reports.append)
    ram = load_frames(bag, selection, PP.prepare)
    assert len(store) == len(ram) == 13 and store.record_shape == (3, 24, 32)
    np.testing.assert_array_equal(store.read(np.arange(len(store))), ram.images)
    np.testing.assert_array_equal(store.read([5, 0, 5]), ram.images[[5, 0, 5]])
    for name in ("stamps_ns", "log_times_ns", "indices", "image_sizes"):
        np.testing.assert_array_equal(store.columns[name], getattr(ram, name))
    np.testing.assert_allclose(store.columns["geometries"], ram.geometries)
    assert store.meta["notes"]["topics"] == ["/camera/image_raw"] and decode_stats(store).decoded == 13
    # the last report is the finished build: all frames, a rate, a total estimated up front
    assert reports and reports[-1].done == 13 and reports[-1].frames_per_s > 0
    assert reports[-1].total is not None and reports[-1].total >= 13 and "frames/s" in reports[-1].line()

    # opened again from the cache, not rebuilt (same files, untouched)
    stamp = (store.path / "images.u8").stat().st_mtime_ns
    again = bag_store(bag, selection, PP, tmp_path / "cache", progress=reports.append)
    assert again.path == store.path and (again.path / "images.u8").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.read([3]), ram.images[[3]])
    # another selection or preprocessing is another store
    other = bag_store(bag, BagSelection(stride=3), PP, tmp_path / "cache")
    assert other.path != store.path and len(other) == 10
    assert not list((tmp_path / "cache").glob(".*.tmp")), "no temporary folders left behind"


def _bag_with_bad_frames(path: Path) -> Path:
    """Four good JPEG frames and two that cannot be decoded, written with rosbags."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import get_typestore

    from dann_ros.data.bags import ROS2_STORE
    from dann_ros.data.images import encode_compressed

    ts = get_typestore(ROS2_STORE)
    t = ts.types
    with Writer(path, version=9) as writer:
        conn = writer.add_connection("/cam", "sensor_msgs/msg/CompressedImage", typestore=ts)
        for i, image in enumerate(_frames(6, seed=2)):
            data = b"\xff\xd8\xff\xe0 not a jpeg" if i in (1, 4) else encode_compressed(image, "jpeg", 90)
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=10 + i, nanosec=0),
                                               frame_id="cam")
            msg = t["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg",
                                                       data=np.frombuffer(data, np.uint8))
            writer.write(conn, (10 + i) * 10**9, ts.serialize_cdr(msg, msg.__msgtype__))
    return path


def test_skipped_frames_are_reported_with_reasons_and_kept_in_the_cache(tmp_path):
    bag = _bag_with_bad_frames(tmp_path / "bad.bag")
    reports: list[Progress] = []
    store = bag_store(bag, BagSelection(), PP, tmp_path / "cache", progress=reports.append)
    assert len(store) == 4 and store.columns["indices"].tolist() == [0, 2, 3, 5]
    last = reports[-1]
    assert (last.done, last.skipped, last.total) == (4, 2, 7)
    assert "skipped 2 (e.g. /cam#1: cannot decode compressed image" in last.line()
    # read back from the cache, the decode statistics say the same
    again = bag_store(bag, BagSelection(), PP, tmp_path / "cache", progress=None)
    stats = decode_stats(again)
    assert (stats.decoded, stats.skipped) == (4, 2) and stats.examples[1].startswith("/cam#4: cannot decode")
    ram = load_frames(bag, BagSelection(), PP.prepare)
    np.testing.assert_array_equal(again.read(np.arange(len(again))), ram.images)
    index = frame_index(again)  # what label files are matched against
    for name in ("stamps_ns", "indices", "topics"):
        np.testing.assert_array_equal(getattr(index, name), getattr(ram, name))
    assert [frame_geometry(again, i) for i in range(4)] == [ram.geometry(i) for i in range(4)]
    assert stats.summary() == ram.stats.summary() and again.meta["key"]["bag"] == str(bag.resolve())


def test_a_bag_with_two_cameras_splits_into_one_view_per_topic(tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import get_typestore

    from dann_ros.data.bags import ROS2_STORE
    from dann_ros.data.images import rgb8_to_image_fields

    ts = get_typestore(ROS2_STORE)
    t = ts.types
    with Writer(tmp_path / "two.bag", version=9) as writer:
        conns = {c: writer.add_connection(c, "sensor_msgs/msg/Image", typestore=ts) for c in ("/left", "/right")}
        for i, image in enumerate(_frames(9, seed=4, size=(24, 32))):
            topic = "/left" if i % 3 else "/right"
            *_, step, data = rgb8_to_image_fields(image, "rgb8")
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id="c")
            msg = t["sensor_msgs/msg/Image"](header=header, height=24, width=32, encoding="rgb8", is_bigendian=0,
                                             step=step, data=np.frombuffer(bytes(data), np.uint8))
            writer.write(conns[topic], (i + 1) * 10**9, ts.serialize_cdr(msg, msg.__msgtype__))
    store = bag_store(tmp_path / "two.bag", BagSelection(), PP, tmp_path / "cache", progress=None)
    views = split_by_topic(store)
    assert sorted(views) == ["/left", "/right"] and (len(views["/left"]), len(views["/right"])) == (6, 3)
    right = views["/right"]
    assert right.columns["stamps_ns"].tolist() == [0, 3 * 10**9, 6 * 10**9]
    same = int(np.flatnonzero(store.columns["stamps_ns"] == 3 * 10**9)[0])
    np.testing.assert_array_equal(right.read([1]), store.read([same]))


def test_memory_store_and_subset_read_like_the_disk_store(bag, tmp_path):
    store = bag_store(bag, BagSelection(), PP, tmp_path)
    ram = store.load()
    assert isinstance(ram, MemoryStore) and len(ram) == len(store) == 30
    idx = np.array([7, 2, 29])
    np.testing.assert_array_equal(ram.read(idx), store.read(idx))
    part = Subset(store, np.arange(10, 20))
    np.testing.assert_array_equal(part.read([0, 9]), store.read([10, 19]))
    np.testing.assert_array_equal(part.columns["indices"], np.arange(10, 20))


def _damage_flip_record(path: Path) -> None:
    with (path / "images.u8").open("r+b") as f:
        f.seek(5 * PP.height * PP.width * 3 + 17)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def _damage_truncate(path: Path) -> None:
    with (path / "images.u8").open("r+b") as f:
        f.truncate(f.seek(0, os.SEEK_END) - 100)


def _damage_meta(path: Path) -> None:
    meta = json.loads((path / "meta.json").read_text())
    meta["count"] += 1  # a plausible but wrong header: its checksum no longer matches
    (path / "meta.json").write_text(json.dumps(meta))


def _damage_column(path: Path) -> None:
    data = bytearray((path / "stamps_ns.npy").read_bytes())
    data[-3] ^= 0x55
    (path / "stamps_ns.npy").write_bytes(bytes(data))


DAMAGE = {
    "truncated data": _damage_truncate,
    "header edited": _damage_meta,
    "header garbage": lambda p: (p / "meta.json").write_bytes(b"\x00\xff{not json"),
    "header missing": lambda p: (p / "meta.json").unlink(),
    "crc file missing": lambda p: (p / "crc32.npy").unlink(),
    "column bit flip": _damage_column,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_store_is_refused_and_rebuilt(bag, tmp_path, damage, caplog):
    store = bag_store(bag, BagSelection(), PP, tmp_path)
    want = store.read(np.arange(len(store)))
    DAMAGE[damage](store.path)
    with pytest.raises(FrameStoreDamaged, match=str(store.path)):
        FrameStore(store.path, verify=True)
    with caplog.at_level(logging.WARNING):
        rebuilt = bag_store(bag, BagSelection(), PP, tmp_path)
    assert "rebuilding the frame cache" in caplog.text
    assert rebuilt.path == store.path
    np.testing.assert_array_equal(rebuilt.read(np.arange(len(rebuilt))), want)
    FrameStore(rebuilt.path, verify=True)  # passes every check again


def test_flipped_pixel_is_caught_on_read_and_the_store_rebuilt_next_time(bag, tmp_path, caplog):
    store = bag_store(bag, BagSelection(), PP, tmp_path)
    want = store.read([5])
    _damage_flip_record(store.path)
    opened = FrameStore(store.path)  # sizes and header are fine: only the record's CRC tells
    np.testing.assert_array_equal(opened.read([4]), store.read([4]))
    with pytest.raises(FrameStoreDamaged, match="record 5: CRC mismatch"):
        opened.read([3, 5])
    with caplog.at_level(logging.WARNING):
        rebuilt = bag_store(bag, BagSelection(), PP, tmp_path)
    assert "rebuilding the frame cache" in caplog.text
    np.testing.assert_array_equal(rebuilt.read([5]), want)


def test_store_of_other_inputs_is_not_trusted(bag, tmp_path):
    store = bag_store(bag, BagSelection(), PP, tmp_path)
    with pytest.raises(FrameStoreDamaged, match="key mismatch"):
        FrameStore(store.path, key_digest="0" * 64)


def test_a_build_that_dies_leaves_no_store(tmp_path):
    def build(make_writer):
        with make_writer((3, 8, 8), expected=10) as writer:
            for i in range(3):
                writer.append(np.full((3, 8, 8), i, np.uint8), {"label": i})
            raise KeyboardInterrupt  # killed part way

    with pytest.raises(KeyboardInterrupt):
        open_or_build(tmp_path, "dies", {"x": 1}, build)
    assert list(tmp_path.iterdir()) == []

    def good(make_writer):
        with make_writer((3, 8, 8), expected=10, progress=None) as writer:
            for i in range(10):
                writer.append(np.full((3, 8, 8), i, np.uint8), {"label": i})
            return writer.finish()

    store = open_or_build(tmp_path, "dies", {"x": 1}, good)
    assert len(store) == 10 and store.read([7])[0, 0, 0, 0] == 7 and store.columns["label"][7] == 7


def test_records_must_keep_their_shape_and_columns(tmp_path):
    def build(make_writer):
        with make_writer((3, 8, 8), progress=None) as writer:
            writer.append(np.zeros((3, 8, 8), np.uint8), {"a": 1})
            writer.append(np.zeros((3, 8, 9), np.uint8), {"a": 1})

    with pytest.raises(ValueError, match=r"record 1 is uint8 \(3, 8, 9\), the store holds uint8 \(3, 8, 8\)"):
        open_or_build(tmp_path, "shape", {}, build)


def test_cache_too_big_for_the_disk_is_refused_before_writing(bag, tmp_path):
    free = __import__("shutil").disk_usage(tmp_path).free
    frames = estimate_bag_frames(bag, BagSelection())
    side = int(np.sqrt(free / frames / 3)) + 64  # 30 frames at this input size need more than the disk holds
    huge = Preprocess(height=side, width=side)
    with pytest.raises(CacheTooBigError, match=r"needs about .* GB but .* free; point cache_dir at a larger disk"):
        bag_store(bag, BagSelection(), huge, tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir()), "nothing written"


def _build_with_file_size_limit(limit: int, imports: str, build: str) -> subprocess.CompletedProcess:
    """Run ``build`` (a frame_cache call; ``PRE`` is a 24x32 Preprocess) in a process whose files cannot
    grow past ``limit`` bytes, as on a full disk: exit 3 and the message on CacheTooBigError."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        from dann_ros.data.frame_cache import bag_store, detection_store
        from dann_ros.data.frame_store import CacheTooBigError
        from dann_ros.data.preprocess import Preprocess
        {imports}
        PRE = Preprocess(height=24, width=32)
        try:
            {build}
        except CacheTooBigError as err:
            print("ERROR:", err)
            sys.exit(3)
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_running_out_of_space_while_writing_is_a_clear_error(bag, tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes the disk 'full' after 20 kB for a real write."""
    run = _build_with_file_size_limit(20_000, "from dann_ros.data.bags import BagSelection",
                                      f"bag_store({str(bag)!r}, BagSelection(), PRE, {str(tmp_path / 'c')!r})")
    assert run.returncode == 3, run.stderr
    assert "ran out of disk space" in run.stdout and "after" in run.stdout
    assert not any((tmp_path / "c").iterdir()), "the partial store was removed"


def test_crop_store_matches_the_crop_stream(renders, tmp_path):
    spec = replicator.CropSpec()
    store = crop_store(renders, spec, (), Preprocess(), tmp_path)
    crops = list(replicator.iter_crops(replicator.scan(renders), spec))
    names = store.meta["notes"]["class_names"]
    assert len(store) == len(crops) > 6
    assert [names[i] for i in store.columns["class_ids"]] == [n for _, n in crops]
    np.testing.assert_array_equal(store.read([2])[0], Preprocess().prepare(crops[2][0])[0])


def test_detection_store_keeps_boxes_in_network_pixels(renders, tmp_path):
    pp = Preprocess(height=48, width=48, resize="letterbox")
    store = detection_store(renders, 1.0, (), pp, tmp_path)
    frames = replicator.scan(renders)
    assert len(store) == len(frames) == 6
    names = store.meta["notes"]["class_names"]
    for i, frame in enumerate(frames):
        boxes, ids = store.ragged("boxes", i), store.ragged("box_classes", i)
        assert [names[c] for c in ids] == [b.class_name for b in frame.boxes]
        _, g = pp.prepare(frame.load_rgb())
        np.testing.assert_allclose(g.to_image(boxes), [[b.x_min, b.y_min, b.x_max, b.y_max] for b in frame.boxes],
                                   atol=1e-3)
    ram = store.load()
    np.testing.assert_array_equal(ram.ragged("boxes", 3), store.ragged("boxes", 3))


def test_detection_store_counts_duplicates_and_picks_the_wanted_of_joined_labels(tmp_path):
    """BasicWriter's parent/child duplicate is one target box; "cone,obstacle" trains as "obstacle" when asked."""
    import cv2

    root = tmp_path / "bw"
    root.mkdir()
    cv2.imwrite(str(root / "rgb_0000.png"), np.full((48, 64, 4), 128, np.uint8))
    rows = [(0, 4, 4, 19, 19, -1.0), (0, 4, 4, 19, 19, 0.0), (1, 30, 10, 63, 47, 0.0)]
    np.save(root / "bounding_box_2d_tight_0000.npy", np.array(rows, replicator.BBOX_DTYPE))
    (root / "bounding_box_2d_tight_labels_0000.json").write_text(
        json.dumps({"0": {"class": "cone,obstacle"}, "1": {"class": "wall"}}))
    pp = Preprocess(height=48, width=64)
    store = detection_store(root, 1.0, ("obstacle", "wall"), pp, tmp_path / "cache")
    assert store.meta["notes"]["duplicate_boxes"] == 1
    np.testing.assert_allclose(store.ragged("boxes", 0), [[4, 4, 20, 20], [30, 10, 64, 48]])  # corners
    assert store.ragged("box_classes", 0).tolist() == [0, 1]


def test_a_pickled_store_opens_its_own_file(bag, tmp_path):
    """What a spawned DataLoader worker or another DDP process receives: the description, not the descriptor."""
    import pickle

    store = bag_store(bag, BagSelection(), PP, tmp_path, progress=None)
    want = store.read([0, 29])
    copy = pickle.loads(pickle.dumps(store))
    assert copy._fds == {} and copy.path == store.path
    np.testing.assert_array_equal(copy.read([0, 29]), want)
    copy.close()
    np.testing.assert_array_equal(store.read([0, 29]), want)  # the original's descriptor is untouched


# --------------------------------------------------------------------------- Replicator caches (issue 22, defect 3)

def _replicator_store(kind: str, renders: Path, cache: Path) -> FrameStore:
    """The training run's source cache: object crops (classification) or whole frames with boxes (detection)."""
    if kind == "crops":
        return crop_store(renders, replicator.CropSpec(), (), PP, cache, progress=None)
    return detection_store(renders, 1.0, (), PP, cache, progress=None)


def _flip_byte(path: Path, offset: int) -> None:
    """Invert one byte (``offset`` < 0: from the end)."""
    with path.open("r+b") as f:
        offset = offset if offset >= 0 else f.seek(0, os.SEEK_END) + offset
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


REPLICATOR_DAMAGE = {
    "record bit flip": lambda p, kind: _flip_byte(p / "images.u8", 2 * PP.height * PP.width * 3 + 5),
    "labels bit flip": lambda p, kind: _flip_byte(p / ("class_ids.npy" if kind == "crops" else "boxes.raw"), -2),
    "data truncated": lambda p, kind: _damage_truncate(p),
    "header garbage": lambda p, kind: (p / "meta.json").write_bytes(b"\x00{not json"),
}


@pytest.mark.parametrize("kind", ["crops", "detection"])
@pytest.mark.parametrize("damage", list(REPLICATOR_DAMAGE))
def test_damaged_replicator_cache_is_rebuilt(renders, tmp_path, kind, damage, caplog):
    """A damaged Replicator source cache is never trusted: refused on open (or, for a flipped pixel, on
    the read of that record, which marks the store) and rebuilt the next time, equal to the first build.
    The former .npz cache read a damaged file back, or failed, but never rebuilt it."""
    store = _replicator_store(kind, renders, tmp_path)
    want = store.load()
    REPLICATOR_DAMAGE[damage](store.path, kind)
    if damage == "record bit flip":
        opened = _replicator_store(kind, renders, tmp_path)  # header and sizes intact: opened as it is
        with pytest.raises(FrameStoreDamaged, match=rf"{opened.path}: record 2: CRC mismatch"):
            opened.read(np.arange(len(opened)))
    with caplog.at_level(logging.WARNING):
        rebuilt = _replicator_store(kind, renders, tmp_path)
    assert "rebuilding the frame cache" in caplog.text and rebuilt.path == store.path
    got = rebuilt.load()
    np.testing.assert_array_equal(got.images, want.images)
    for name, column in want.columns.items():
        np.testing.assert_array_equal(got.columns[name], column)
    for name, rows in want.ragged_columns.items():
        for a, b in zip(got.ragged_columns[name], rows, strict=True):
            np.testing.assert_array_equal(a, b)
    FrameStore(rebuilt.path, verify=True)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary folder left"


def test_a_killed_replicator_build_leaves_no_temporary_folder(renders, tmp_path):
    """A build killed part way (SIGKILL: no cleanup can run) leaves only its hidden temporary folder,
    and the next build of that store deletes it: nothing is left to fill the disk."""
    script = textwrap.dedent(f"""
        import os, signal
        from dann_ros.data import frame_store
        from dann_ros.data.frame_cache import detection_store
        from dann_ros.data.preprocess import Preprocess
        append = frame_store.StoreWriter.append
        def dying(self, *args, **kwargs):
            if len(self) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            append(self, *args, **kwargs)
        frame_store.StoreWriter.append = dying
        detection_store({str(renders)!r}, 1.0, (), Preprocess(height=24, width=32), {str(tmp_path)!r}, progress=None)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == -9, run.stderr
    (left,) = tmp_path.glob(".detection-*.tmp")
    assert (left / "images.u8").exists() and not list(tmp_path.glob("*.frames"))
    store = _replicator_store("detection", renders, tmp_path)
    assert not left.exists() and not list(tmp_path.glob(".*.tmp")) and len(store) == 6


def test_a_replicator_build_that_fails_writing_leaves_nothing(renders, tmp_path):
    """A write that fails (here: the file-size limit, as a full disk) is a clear error, and neither a
    store nor a temporary file is left (the former .npz cache left its temporary file)."""
    run = _build_with_file_size_limit(
        6000, "", f"detection_store({str(renders)!r}, 1.0, (), PRE, {str(tmp_path / 'c')!r}, progress=None)")
    assert run.returncode == 3, run.stderr
    assert "ran out of disk space" in run.stdout and "Replicator frames" in run.stdout
    assert not list((tmp_path / "c").iterdir()), "no store and no temporary folder left"
