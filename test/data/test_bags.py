import os
import re
import sqlite3

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.typesys import get_typestore

from dann_ros.data.bags import (
    ROS2_STORE,
    BagError,
    BagSelection,
    DecodeStats,
    TopicNotFoundError,
    bag_info,
    iter_frames,
    load_frames,
)
from dann_ros.data.images import WRITABLE_ENCODINGS, encode_compressed, rgb8_to_image_fields
from dann_ros.data.make_bag import make_bag
from dann_ros.data.preprocess import Preprocess

STORAGES = ["mcap", "sqlite3"]
TS = get_typestore(ROS2_STORE)
T0 = 1_700_000_000_000_000_000
RGB = np.random.default_rng(3).integers(0, 256, (6, 8, 3), dtype=np.uint8)
SMOOTH = np.dstack([np.full((16, 16), 200), np.tile(np.arange(16) * 12, (16, 1)),
                    np.full((16, 16), 40)]).astype(np.uint8)
BAYER_RGGB = np.zeros((6, 8), np.uint8)  # a uniform (200, 120, 40) scene seen through an RGGB mosaic
BAYER_RGGB[0::2, 0::2], BAYER_RGGB[0::2, 1::2], BAYER_RGGB[1::2, 0::2], BAYER_RGGB[1::2, 1::2] = 200, 120, 120, 40


def header(stamp, frame_id="cam"):
    return TS.types["std_msgs/msg/Header"](
        stamp=TS.types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id)


def image_msg(stamp, encoding, height, width, step, data, frame_id="cam"):
    return TS.types["sensor_msgs/msg/Image"](header=header(stamp, frame_id), height=height, width=width,
                                             encoding=encoding, is_bigendian=0, step=step,
                                             data=np.frombuffer(bytes(data), np.uint8))


def compressed_msg(stamp, fmt, data):
    return TS.types["sensor_msgs/msg/CompressedImage"](header=header(stamp), format=fmt,
                                                       data=np.frombuffer(bytes(data), np.uint8))


def write_bag(path, storage, messages):
    """messages: list of (topic, log_time_ns, msg); written in that order, one connection per topic."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, log_ns, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=TS)
            writer.write(conns[topic], log_ns, TS.serialize_cdr(msg, msg.__msgtype__))
    return path


@pytest.fixture(params=STORAGES)
def storage(request):
    return request.param


def test_every_encoding_round_trips_through_a_bag(tmp_path, storage):
    messages, expected = [], {}
    for k, enc in enumerate(WRITABLE_ENCODINGS):
        fields = rgb8_to_image_fields(RGB, enc)
        messages.append((f"/cam/{enc}", T0 + k, image_msg(T0 + 1000 + k, enc, *fields[:2], fields[3], fields[4])))
        grey = enc in ("mono8", "8UC1", "mono16", "16UC1")
        expected[f"/cam/{enc}"] = np.repeat(
            np.dot(RGB, [0.299, 0.587, 0.114]).round().astype(np.uint8)[:, :, None], 3, 2) if grey else RGB
    messages.append(("/cam/bayer", T0 + 50, image_msg(T0 + 50, "bayer_rggb8", 6, 8, 8, BAYER_RGGB.tobytes())))
    for k, fmt in enumerate(("jpeg", "png")):
        messages.append((f"/cam/{fmt}", T0 + 60 + k, compressed_msg(T0 + 60 + k, fmt, encode_compressed(SMOOTH, fmt))))
    bag = write_bag(tmp_path / "bag", storage, messages)

    it = iter_frames(bag)
    frames = {f.topic: f for f in it}
    assert it.stats.ok and it.stats.decoded == len(messages) == len(frames)
    for topic, want in expected.items():
        diff = np.abs(frames[topic].image.astype(int) - want).max()
        assert diff <= 1, (topic, diff)  # grey: OpenCV's fixed-point RGB2GRAY rounds differently by <= 1
    assert np.abs(frames["/cam/bayer"].image[2:4, 2:4].astype(int) - [200, 120, 40]).max() <= 2
    np.testing.assert_array_equal(frames["/cam/png"].image, SMOOTH)
    assert np.abs(frames["/cam/jpeg"].image.astype(int) - SMOOTH).max() <= 12
    f = frames["/cam/rgb16"]
    assert (f.index, f.stamp_ns, f.frame_id) == (0, T0 + 1000 + WRITABLE_ENCODINGS.index("rgb16"), "cam")
    assert f.log_time_ns == T0 + WRITABLE_ENCODINGS.index("rgb16")


def test_corrupt_frames_are_skipped_and_counted(tmp_path, storage):
    fields = rgb8_to_image_fields(RGB, "rgb8")
    good = image_msg(T0, "rgb8", 6, 8, fields[3], fields[4])
    short = image_msg(T0 + 1, "rgb8", 6, 8, fields[3], fields[4][:-10])
    bad_jpeg = compressed_msg(T0 + 2, "jpeg", b"\xff\xd8\xff\xe0 definitely not a jpeg")
    bag = write_bag(tmp_path / "bag", storage, [("/a", T0, good), ("/a", T0 + 1, short), ("/b", T0 + 2, bad_jpeg),
                                                ("/a", T0 + 3, good)])
    stats = DecodeStats()
    frames = list(iter_frames(bag, stats=stats))
    assert [(f.topic, f.index) for f in frames] == [("/a", 0), ("/a", 2)]
    assert (stats.decoded, stats.skipped) == (2, 2)
    assert (stats.topics["/a"].skipped, stats.topics["/b"].skipped, stats.topics["/b"].decoded) == (1, 1, 0)
    assert any("/a#1: data has 134 bytes, expected 144" in e for e in stats.examples)
    assert any(e.startswith("/b#0: cannot decode compressed image") for e in stats.examples)
    assert "skipped 2" in stats.summary()


def test_stride_and_time_window(tmp_path):
    bag = tmp_path / "bag"
    make_bag(bag, [np.full((4, 4, 3), i, np.uint8) for i in range(20)], fps=10.0)  # frames 0.1 s apart
    indices = lambda sel: [f.index for f in iter_frames(bag, sel)]  # noqa: E731
    assert indices(BagSelection(stride=3)) == [0, 3, 6, 9, 12, 15, 18]
    assert indices(BagSelection(start_s=0.5, end_s=1.25)) == [5, 6, 7, 8, 9, 10, 11, 12]
    assert indices(BagSelection(start_s=0.5, end_s=1.25, stride=2)) == [5, 7, 9, 11]
    assert indices(BagSelection(start_s=1.75)) == [18, 19]
    frame = next(iter(iter_frames(bag, BagSelection(start_s=0.5))))
    assert frame.image[0, 0, 0] == 5 and frame.stamp_ns == frame.log_time_ns


@pytest.mark.parametrize("kwargs,message", [
    (dict(stride=0), "stride"), (dict(stride=1.5), "stride"), (dict(start_s=2.0, end_s=1.0), "greater than"),
    (dict(start_s=-1.0), "start_s"), (dict(topics="/cam"), "tuple"),
])
def test_selection_validation(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        BagSelection(**kwargs)


def test_missing_or_non_image_topic_names_the_topics(tmp_path):
    bag = tmp_path / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=TS)
        fields = rgb8_to_image_fields(RGB)
        msg = image_msg(T0, "rgb8", 6, 8, fields[3], fields[4])
        writer.write(conn, T0, TS.serialize_cdr(msg, msg.__msgtype__))
        text = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=TS)
        writer.write(text, T0, TS.serialize_cdr(TS.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    with pytest.raises(TopicNotFoundError,
                       match=r"'/cam/other' is not in the bag .*image topics in the bag: \['/cam/image'\]"):
        list(iter_frames(bag, BagSelection(topics=("/cam/other",))))
    with pytest.raises(TopicNotFoundError, match="'/chatter' has type std_msgs/msg/String"):
        list(iter_frames(bag, BagSelection(topics=("/chatter",))))
    assert [f.topic for f in iter_frames(bag)] == ["/cam/image"]  # default: image topics only
    info = bag_info(bag)
    assert info.image_topics == {"/cam/image": ("sensor_msgs/msg/Image", 1)}
    assert info.other_topics == {"/chatter": "std_msgs/msg/String"}


def test_storage_file_inside_the_bag_is_accepted(tmp_path, storage):
    bag = tmp_path / "bag"
    make_bag(bag, [RGB] * 3, storage=storage)
    (file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    assert [f.index for f in iter_frames(file)] == [0, 1, 2]


def test_unreadable_bags_give_errors_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list(iter_frames(tmp_path / "nowhere"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(BagError, match="plain is a directory without metadata.yaml"):
        list(iter_frames(tmp_path / "plain"))
    junk = tmp_path / "junk.db3"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BagError, match="cannot read bag .*junk.db3"):
        list(iter_frames(junk))
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 10)
    with pytest.raises(BagError, match="bad.mcap"):
        list(iter_frames(bad))


def test_corrupt_db3_row_is_skipped(tmp_path):
    bag = tmp_path / "bag"
    make_bag(bag, [RGB] * 4, storage="sqlite3")
    with sqlite3.connect(next(bag.glob("*.db3"))) as db:
        db.execute("UPDATE messages SET data = ? "
                   "WHERE id = (SELECT id FROM messages ORDER BY timestamp LIMIT 1 OFFSET 1)",
                   (b"\x00\x01\x00\x00garbage",))
    it = iter_frames(bag)
    assert [f.index for f in it] == [0, 2, 3]
    assert it.stats.skipped == 1 and "/camera/image_raw#1: cannot deserialize" in it.stats.examples[0]


def big_frames(n):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(n)]  # ~6 frames per MCAP chunk


def test_truncated_mcap_yields_what_it_can(tmp_path):
    bag = tmp_path / "bag"
    make_bag(bag, big_frames(12))
    mcap = next(bag.glob("*.mcap"))
    os.truncate(mcap, int(mcap.stat().st_size * 0.6))  # the recorder was killed in the second chunk
    it = iter_frames(bag)
    assert [f.index for f in it] == list(range(6))
    assert it.stats.decoded == 6 and not it.stats.ok
    assert any("without summary" in e for e in it.stats.read_errors)
    assert any("reading stopped after 6 messages" in e for e in it.stats.read_errors)


def test_corrupt_mcap_chunk_keeps_earlier_frames(tmp_path):
    bag = tmp_path / "bag"
    make_bag(bag, big_frames(12))
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    reader = McapReader(mcap)
    reader.open()
    second_chunk = reader.chunks[1].chunk_start_offset
    reader.close()
    data[second_chunk + 50: second_chunk + 58] = b"\xff" * 8  # first message record length inside it
    mcap.write_bytes(data)
    it = iter_frames(bag)
    assert [f.index for f in it] == list(range(6))
    assert "reading stopped after 6 messages" in it.stats.read_errors[0]


class CountingPrepare:
    def __init__(self):
        self.preprocess, self.calls = Preprocess(height=8, width=8), 0

    def __call__(self, image):
        self.calls += 1
        return self.preprocess.prepare(image)


def test_load_frames_decodes_and_prepares_a_small_bag(tmp_path):
    """The in-RAM loader for small bags (caching is the frame store's job: data/frame_cache.py)."""
    bag = tmp_path / "bag"
    stamps = make_bag(bag, [np.full((10, 12, 3), i * 10, np.uint8) for i in range(6)])
    prepare = CountingPrepare()
    first = load_frames(bag, BagSelection(stride=2), prepare)
    assert prepare.calls == 3
    assert first.images.shape == (3, 3, 8, 8) and first.images.dtype == np.uint8
    assert first.stamps_ns.tolist() == stamps[::2] and first.indices.tolist() == [0, 2, 4]
    assert first.topics.tolist() == ["/camera/image_raw"] * 3 and first.image_sizes.tolist() == [[10, 12]] * 3
    assert first.geometry(0).scale_x == pytest.approx(8 / 12) and first.stats.decoded == 3


def test_load_frames_without_frames_is_an_error(tmp_path):
    bag = tmp_path / "bag"
    make_bag(bag, [RGB] * 2, fps=10.0)
    with pytest.raises(BagError, match="no frames decoded"):
        load_frames(bag, BagSelection(start_s=5.0), Preprocess(height=8, width=8).prepare)


# --------------------------------------------------------------------------- bags as users name them
@pytest.mark.parametrize("storage", STORAGES)
def test_rosbag2_folder_named_like_a_ros1_bag_opens(tmp_path, storage):
    """`ros2 bag record -o run1.bag` makes a rosbag2 folder called run1.bag (rosbags' AnyReader alone
    takes it for a ROS 1 file and fails with 'Is a directory')."""
    bag = tmp_path / "run1.bag"
    stamps = make_bag(bag, [RGB] * 3, storage=storage)
    assert bag.is_dir() and (bag / "metadata.yaml").exists()
    frames = list(iter_frames(bag))
    assert [f.stamp_ns for f in frames] == stamps and np.array_equal(frames[0].image, RGB)
    assert bag_info(bag).image_topics == {"/camera/image_raw": ("sensor_msgs/msg/Image", 3)}


@pytest.mark.parametrize("storage", STORAGES)
def test_bare_storage_file_without_metadata_opens(tmp_path, storage):
    """MCAP (and db3) files are shared on their own, without the folder's metadata.yaml."""
    bag = tmp_path / "bag"
    stamps = make_bag(bag, [RGB] * 4, storage=storage)
    (file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    bare = tmp_path / f"shared{file.suffix}"
    file.rename(bare)
    assert [f.stamp_ns for f in iter_frames(bare)] == stamps


def test_ros1_bag_is_refused_with_a_clear_error(tmp_path):
    from rosbags.rosbag1 import Writer as Writer1
    from rosbags.typesys import Stores

    ts1 = get_typestore(Stores.ROS1_NOETIC)
    path = tmp_path / "old.bag"
    with Writer1(path) as writer:
        conn = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts1)
        msg = ts1.types["sensor_msgs/msg/Image"](
            header=ts1.types["std_msgs/msg/Header"](
                seq=0, stamp=ts1.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="cam"),
            height=6, width=8, encoding="rgb8", is_bigendian=0, step=24, data=RGB.reshape(-1))
        writer.write(conn, T0, ts1.serialize_ros1(msg, msg.__msgtype__))
    for read in (lambda p: list(iter_frames(p)), bag_info):
        with pytest.raises(BagError, match=r"old\.bag is a ROS 1 bag; dann_ros reads rosbag2 bags.*rosbags-convert"):
            read(path)


def test_file_that_is_no_bag_names_itself(tmp_path):
    text = tmp_path / "notes.bag"
    text.write_text("not a bag")
    with pytest.raises(BagError, match=r"notes\.bag: not a rosbag2 bag"):
        bag_info(text)


def test_open_bag_and_iter_messages_stop_at_the_first_unreadable_message(tmp_path):
    from dann_ros.data.bags import iter_messages, open_bag

    bag = tmp_path / "bag"
    make_bag(bag, big_frames(12))
    with open_bag(bag) as source:
        whole = [(m.connection.topic, m.index, m.log_time_ns) for m in iter_messages(source, ["/camera/image_raw"])]
    assert [i for _, i, _ in whole] == list(range(12)) and len({t for t, _, _ in whole}) == 1
    mcap = next(bag.glob("*.mcap"))
    os.truncate(mcap, int(mcap.stat().st_size * 0.6))
    errors: list[str] = []
    with open_bag(bag) as source:
        assert source.notes and "without summary" in source.notes[0]
        kept = [m.index for m in iter_messages(source, ["/camera/image_raw"], errors=errors, path=bag)]
    assert kept == list(range(6))
    assert len(errors) == 1 and errors[0].startswith(f"{bag}: reading stopped after 6 messages")


# --------------------------------------------------------------------------- metadata.yaml of the wrong shape
def _set(tree, dotted, value):
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    for k in keys[:-1]:
        tree = tree[k]
    tree[keys[-1]] = value


@pytest.mark.parametrize("field,value", [
    ("message_count", "3"), ("message_count", -1), ("message_count", True),
    ("topics_with_message_count.0.message_count", "3"), ("topics_with_message_count.0.message_count", None),
    ("topics_with_message_count.0.topic_metadata.name", [1]), ("topics_with_message_count.0.topic_metadata", "x"),
    ("topics_with_message_count", {"a": 1}), ("duration", 5), ("duration.nanoseconds", "5"),
    ("starting_time.nanoseconds_since_epoch", 1.5), ("storage_identifier", 7), ("relative_file_paths", "b.mcap"),
    ("relative_file_paths.0", 3), ("files", "abc"), ("files.0.message_count", "3"), ("compression_mode", None),
    ("version", "9"),
])
@pytest.mark.parametrize("storage", STORAGES)
def test_metadata_of_the_wrong_type_names_the_file_and_the_field(tmp_path, storage, field, value):
    """A hand-edited or foreign metadata.yaml: a BagError naming it and the field, not TypeError/AttributeError."""
    from ruamel.yaml import YAML

    bag = tmp_path / "bag"
    make_bag(bag, [RGB] * 2, storage=storage)
    yaml, meta_file = YAML(typ="safe"), bag / "metadata.yaml"
    meta = yaml.load(meta_file.read_text())
    _set(meta["rosbag2_bagfile_information"], field, value)
    with meta_file.open("w") as f:
        yaml.dump(meta, f)
    where = re.sub(r"\.(\d+)", r"[\1]", field)  # topics_with_message_count[0].message_count
    for read in (bag_info, lambda p: list(iter_frames(p)),
                 lambda p: load_frames(p, BagSelection(), Preprocess(height=8, width=8).prepare)):
        with pytest.raises(BagError) as err:
            read(bag)
        assert f"{meta_file}: field rosbag2_bagfile_information.{where} " in str(err.value), err.value


@pytest.mark.parametrize("text,what", [("[1, 2]", "mapping"), ("other: 1", "rosbag2_bagfile_information"),
                                       ("rosbag2_bagfile_information: [", "YAML")])
def test_metadata_that_is_no_rosbag2_metadata_names_the_file(tmp_path, text, what):
    bag = tmp_path / "bag"
    make_bag(bag, [RGB] * 2)
    (bag / "metadata.yaml").write_text(text)
    with pytest.raises(BagError, match=what) as err:
        bag_info(bag)
    assert str(bag / "metadata.yaml") in str(err.value)


@pytest.mark.parametrize("storage", STORAGES)
def test_fewer_messages_than_the_metadata_declares_is_a_read_error(tmp_path, storage):
    """A storage that ends early without an error, or a metadata.yaml naming a topic the storage does not
    hold, loses frames: the stats say so instead of the bag looking whole."""
    from ruamel.yaml import YAML

    bag = tmp_path / "bag"
    make_bag(bag, [RGB] * 3, storage=storage)
    yaml, meta_file = YAML(typ="safe"), bag / "metadata.yaml"
    meta = yaml.load(meta_file.read_text())
    meta["rosbag2_bagfile_information"]["topics_with_message_count"][0]["message_count"] = 10
    with meta_file.open("w") as f:
        yaml.dump(meta, f)
    it = iter_frames(bag)
    assert len(list(it)) == 3 and not it.stats.ok
    assert it.stats.read_errors == [f"{bag}: topic /camera/image_raw: read 3 of the 10 messages its metadata declares"]
    windowed = iter_frames(bag, BagSelection(end_s=5.0))  # a window ends early on purpose: no note
    assert len(list(windowed)) == 3 and windowed.stats.ok
