"""Camera frames out of rosbag2 bags (sqlite3 .db3 or .mcap), the unlabelled target domain.

A bag is a rosbag2 directory (with metadata.yaml) whatever its name (``ros2 bag record -o run1.bag``
makes a folder called run1.bag), or a single .mcap/.db3 file; a ROS 1 .bag file is refused with
an error that says so. :func:`open_bag` and :func:`iter_messages` are the one reader every tool
uses (frames, eval-bag's result bag, replay), so they all stop at the same message. Frames that
cannot be deserialized or decoded are skipped and counted in :class:`DecodeStats`; a bag that
stops being readable part way (a corrupt chunk or row) keeps what was read before and records
the failure there too. :func:`load_frames` decodes a small bag into RAM; anything larger, and
every cache, goes through the frame store (data/frame_cache.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from dann_ros.data.bag_metadata import MetadataError, check_metadata
from dann_ros.data.images import FrameDecodeError, message_to_rgb8
from dann_ros.data.preprocess import Geometry

log = logging.getLogger(__name__)

IMAGE_MSGTYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
# Used to deserialize bags recorded without embedded message definitions (older sqlite3 bags).
ROS2_STORE = getattr(Stores, "ROS2_JAZZY", None) or [s for s in Stores if s.name.startswith("ROS2_")][-1]


class BagError(RuntimeError):
    """A bag that cannot be read or does not hold what was asked for; the message names the file."""


class TopicNotFoundError(BagError, LookupError):
    """A requested topic is not an image topic of the bag."""


@dataclass(frozen=True)
class BagSelection:
    """Which frames to take: topics (empty = every image topic), every stride-th message of
    each topic, and a window [start_s, end_s) of recording (log) time relative to the bag start."""

    topics: tuple[str, ...] = ()
    stride: int = 1
    start_s: float | None = None
    end_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.topics, str):
            raise TypeError(f"topics must be a tuple of topic names, got the string {self.topics!r}")
        object.__setattr__(self, "topics", tuple(self.topics))
        if int(self.stride) != self.stride or self.stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {self.stride}")
        if self.start_s is not None and self.start_s < 0:
            raise ValueError(f"start_s must be >= 0 seconds, got {self.start_s}")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be greater than start_s ({self.start_s})")
        if self.end_s is not None and self.end_s <= 0:
            raise ValueError(f"end_s must be > 0 seconds, got {self.end_s}")


@dataclass(frozen=True)
class Frame:
    index: int  # running index of this topic's messages in the bag, before stride and window
    topic: str
    stamp_ns: int  # header stamp
    log_time_ns: int  # recording time
    frame_id: str
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass
class TopicCounts:
    decoded: int = 0
    skipped: int = 0


@dataclass
class DecodeStats:
    """Per-topic decoded/skipped counts, a few example reasons, and bag-level read failures."""

    topics: dict[str, TopicCounts] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    read_errors: list[str] = field(default_factory=list)
    MAX_EXAMPLES: ClassVar[int] = 5

    def add_decoded(self, topic: str) -> None:
        self.topics.setdefault(topic, TopicCounts()).decoded += 1

    def add_skipped(self, topic: str, index: int, reason: str) -> None:
        self.topics.setdefault(topic, TopicCounts()).skipped += 1
        if len(self.examples) < self.MAX_EXAMPLES:
            self.examples.append(f"{topic}#{index}: {reason}")

    @property
    def decoded(self) -> int:
        return sum(c.decoded for c in self.topics.values())

    @property
    def skipped(self) -> int:
        return sum(c.skipped for c in self.topics.values())

    @property
    def ok(self) -> bool:
        return not self.skipped and not self.read_errors

    def summary(self) -> str:
        parts = [f"decoded {self.decoded}, skipped {self.skipped}"]
        if self.skipped:
            per_topic = ", ".join(f"{t}: {c.skipped}" for t, c in sorted(self.topics.items()) if c.skipped)
            parts.append(f"skipped per topic: {per_topic}; e.g. " + " | ".join(self.examples))
        parts += [f"read error: {e}" for e in self.read_errors]
        return "; ".join(parts)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DecodeStats:
        data = json.loads(text)
        topics = {k: TopicCounts(**v) for k, v in data["topics"].items()}
        return cls(topics, list(data["examples"]), list(data["read_errors"]))


@dataclass(frozen=True)
class BagInfo:
    path: Path
    start_ns: int | None  # first message's log time
    end_ns: int | None  # after the last one
    image_topics: dict[str, tuple[str, int]]  # topic -> (msgtype, message count)
    other_topics: dict[str, str]  # topic -> msgtype


class _ReaderSource:
    """The few reader operations FrameIterator needs, over rosbags' AnyReader."""

    def __init__(self, reader: AnyReader) -> None:
        self.reader = reader
        self.connections = list(reader.connections)
        self.start_time: int | None = reader.start_time
        self.end_time: int | None = reader.end_time
        self.notes: list[str] = []

    def messages(self, connections: list[Any], stop: int | None) -> Iterator[tuple[Any, int, bytes]]:
        return self.reader.messages(connections=connections, stop=stop)

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        return self.reader.deserialize(raw, msgtype)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> _ReaderSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _McapSalvage:
    """A truncated MCAP file (no footer/summary, e.g. the recorder was killed), read by scanning its
    records in file order with rosbags' own MCAP record reader; stops at the first damaged record."""

    def __init__(self, file: Path) -> None:
        from rosbags.rosbag2 import storage_mcap  # internals: only used on this fallback path

        storage = storage_mcap.McapReader(file)
        storage.bio = bio = file.open("rb")
        try:
            if bio.read(8) != b"\x89MCAP0\r\n" or bio.read(1) != b"\x01":
                raise BagError(f"{file} does not start like an MCAP file")
            storage_mcap.read_sized(bio)  # header record
            storage.data_start = bio.tell()
            storage.data_end = file.stat().st_size
            damage = ""
            try:
                storage.meta_scan()
            except Exception as err:
                damage = f"; damaged from there on: {type(err).__name__}: {err}"
            if not storage.connections:
                raise BagError(f"{file}: no channel records found{damage}")
        except BaseException:
            bio.close()
            raise
        self.storage = storage
        self.connections = list(storage.connections)
        stats = storage.statistics
        self.start_time = stats.start_time if stats and stats.message_count else None
        self.end_time = stats.end_time + 1 if stats and stats.message_count else None
        self.notes = [f"{file}: MCAP file without summary (truncated?), read by scanning its records{damage}"]
        self.typestore = get_typestore(ROS2_STORE)

    def messages(self, connections: list[Any], stop: int | None) -> Iterator[tuple[Any, int, bytes]]:
        return self.storage.messages_scan(connections, None, stop)

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        return self.typestore.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        if self.storage.bio is not None:
            self.storage.bio.close()

    def __enter__(self) -> _McapSalvage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mcap_file(bag_path: Path) -> Path | None:
    if bag_path.is_file():
        return bag_path if bag_path.suffix == ".mcap" else None
    files = list(bag_path.glob("*.mcap"))
    return files[0] if len(files) == 1 else None


ROS1_MAGIC = b"#ROSBAG V2.0"
MCAP_MAGIC = b"\x89MCAP0\r\n"

BagSource = _ReaderSource | _McapSalvage


def _check_format(bag_path: Path) -> None:
    """Refuse what is not a rosbag2 bag, saying what it is instead."""
    if bag_path.is_dir():
        if not (bag_path / "metadata.yaml").exists():
            raise BagError(f"{bag_path} is a directory without metadata.yaml, not a rosbag2 bag "
                           "(a recording that was killed has none: pass its .mcap/.db3 file instead)")
        try:
            check_metadata(bag_path / "metadata.yaml")
        except MetadataError as err:
            raise BagError(f"{err} (the bag's .mcap/.db3 file can be read without it: pass that instead)") from None
        return
    with bag_path.open("rb") as f:
        head = f.read(len(ROS1_MAGIC))
    if head == ROS1_MAGIC:
        raise BagError(f"{bag_path} is a ROS 1 bag; dann_ros reads rosbag2 bags (.db3/.mcap). Convert it with "
                       f"`rosbags-convert --src {bag_path} --dst {bag_path.with_suffix('')}_ros2` (pip install "
                       "rosbags)")
    if bag_path.suffix not in (".mcap", ".db3"):
        what = "an MCAP file" if head.startswith(MCAP_MAGIC) else "not a rosbag2 bag"
        raise BagError(f"{bag_path}: {what} named {bag_path.suffix or 'without a suffix'}; dann_ros reads a "
                       "rosbag2 folder (with metadata.yaml) or a .mcap/.db3 storage file")


def _any_reader(bag_path: Path) -> AnyReader:
    """rosbags' AnyReader for one rosbag2 bag. AnyReader takes every path ending in .bag for a ROS 1
    bag file; a rosbag2 folder named run1.bag is read as the rosbag2 folder it is."""
    reader = AnyReader([bag_path], default_typestore=get_typestore(ROS2_STORE))
    if not reader.is2:
        from rosbags.rosbag2 import Reader as Rosbag2Reader

        reader.is2 = True
        reader.readers = [Rosbag2Reader(bag_path)]
    return reader


def open_bag(bag_path: str | os.PathLike[str]) -> BagSource:
    """Open a rosbag2 bag for reading (a context manager); every failure becomes an error naming it.

    A truncated MCAP (no summary: the recorder was killed) is opened by scanning its records."""
    bag_path = Path(bag_path)
    if not bag_path.exists():
        raise FileNotFoundError(f"bag not found: {bag_path}")
    _check_format(bag_path)
    try:
        reader = _any_reader(bag_path)
        reader.open()
        return _ReaderSource(reader)
    except Exception as err:  # rosbags, ruamel, apsw and OSError all end up here
        error = BagError(f"cannot read bag {bag_path}: {type(err).__name__}: {err}")
        mcap = _mcap_file(bag_path)
        if mcap is None or "magic" not in str(err).lower():
            raise error from err
        try:
            return _McapSalvage(mcap)
        except Exception as salvage_err:
            raise BagError(f"{error} (scanning it as a truncated MCAP failed too: {salvage_err})") from err


@dataclass(frozen=True)
class RawMessage:
    connection: Any  # rosbags Connection (topic, msgtype, ...)
    log_time_ns: int
    index: int  # running index of this topic's messages in the bag
    raw: bytes | memoryview  # as the storage returns it (not copied)


def iter_messages(source: BagSource, topics: Iterable[str], stop_ns: int | None = None,
                  errors: list[str] | None = None, path: str | os.PathLike[str] = "") -> Iterator[RawMessage]:
    """The raw messages of ``topics`` in recording order, up to the first unreadable one.

    A corrupt chunk or row ends the iteration (what was read before is kept); the reason, naming
    the bag and how far it got, is appended to ``errors``."""
    wanted = set(topics)
    connections = [c for c in source.connections if c.topic in wanted]
    messages = source.messages(connections, stop_ns)
    index: dict[str, int] = defaultdict(int)
    while True:
        try:
            connection, log_ns, raw = next(messages)
        except StopIteration:
            return
        except Exception as err:  # a corrupt chunk/row: keep what was read so far
            if errors is not None:
                errors.append(f"{path}: reading stopped after {sum(index.values())} messages: "
                              f"{type(err).__name__}: {err}")
                log.warning("%s", errors[-1])
            return
        i = index[connection.topic]
        index[connection.topic] = i + 1
        yield RawMessage(connection, int(log_ns), i, raw)


def _topic_table(source: BagSource) -> tuple[dict[str, tuple[str, int]], dict[str, str]]:
    images: dict[str, tuple[str, int]] = {}
    others: dict[str, str] = {}
    for c in source.connections:
        if c.msgtype in IMAGE_MSGTYPES:
            count = images.get(c.topic, (c.msgtype, 0))[1]
            images[c.topic] = (c.msgtype, count + c.msgcount)
        else:
            others[c.topic] = str(c.msgtype)
    return images, others


def bag_info(bag_path: str | os.PathLike[str]) -> BagInfo:
    """Topics and time range of a bag, without reading any message (counts are 0 for a truncated MCAP)."""
    path = Path(bag_path)
    source = open_bag(path)
    try:
        images, others = _topic_table(source)
        return BagInfo(path, source.start_time, source.end_time, images, others)
    finally:
        source.close()


class FrameIterator(Iterator[Frame]):
    """Iterates decoded frames of a bag; ``stats`` fills in as it goes.

    Opening the bag (and topic errors) happens on the first ``next()``, like a generator.
    """

    def __init__(self, bag_path: str | os.PathLike[str], selection: BagSelection = BagSelection(),
                 stats: DecodeStats | None = None) -> None:
        self.bag_path = Path(bag_path)
        self.selection = selection
        self.stats = stats if stats is not None else DecodeStats()
        self._gen: Iterator[Frame] | None = None

    def __iter__(self) -> FrameIterator:
        return self

    def __next__(self) -> Frame:
        if self._gen is None:
            self._gen = self._frames()
        return next(self._gen)

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()  # type: ignore[attr-defined]

    def __enter__(self) -> FrameIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _frames(self) -> Iterator[Frame]:
        path, sel, stats = self.bag_path, self.selection, self.stats
        source = open_bag(path)
        try:
            images, others = _topic_table(source)
            for topic in sel.topics:
                if topic not in images:
                    what = f"has type {others[topic]}, not an image type" if topic in others else "is not in the bag"
                    raise TopicNotFoundError(
                        f"topic {topic!r} {what} ({path}); image topics in the bag: {sorted(images) or 'none'}")
            if not images:
                raise BagError(f"bag {path} has no sensor_msgs Image or CompressedImage topic "
                               f"(topics: {sorted(others) or 'none'})")
            for note in source.notes:
                stats.read_errors.append(note)
                log.warning("%s", note)
            t0 = source.start_time  # None for a truncated MCAP: then the first message's time
            start_ns = stop_ns = None
            if t0 is not None:
                start_ns = None if sel.start_s is None else t0 + round(sel.start_s * 1e9)
                stop_ns = None if sel.end_s is None else t0 + round(sel.end_s * 1e9)
            # Read from the bag start even with a window, so `index` stays the index in the whole bag.
            in_window: dict[str, int] = defaultdict(int)
            seen: dict[str, int] = defaultdict(int)  # messages read per topic, before window and stride
            errors_before = len(stats.read_errors)
            for message in iter_messages(source, sel.topics or images, stop_ns, stats.read_errors, path):
                connection, log_ns, idx, raw = message.connection, message.log_time_ns, message.index, message.raw
                if t0 is None:
                    t0 = log_ns
                    start_ns = None if sel.start_s is None else t0 + round(sel.start_s * 1e9)
                    stop_ns = None if sel.end_s is None else t0 + round(sel.end_s * 1e9)
                topic = connection.topic
                seen[topic] = idx + 1
                if (start_ns is not None and log_ns < start_ns) or (stop_ns is not None and log_ns >= stop_ns):
                    continue
                position = in_window[topic]
                in_window[topic] += 1
                if position % sel.stride:
                    continue
                try:
                    msg: Any = source.deserialize(raw, connection.msgtype)
                except Exception as err:
                    stats.add_skipped(topic, idx, f"cannot deserialize {connection.msgtype}: {err}")
                    continue
                try:
                    image = message_to_rgb8(msg)
                except FrameDecodeError as err:
                    stats.add_skipped(topic, idx, err.reason)
                    continue
                stats.add_decoded(topic)
                stamp = msg.header.stamp
                yield Frame(idx, topic, int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec), int(log_ns),
                            str(msg.header.frame_id), image)
            if sel.end_s is None and len(stats.read_errors) == errors_before:
                _note_missing(stats, path, {t: (seen[t], images[t][1]) for t in sel.topics or images})
        finally:
            source.close()


def _note_missing(stats: DecodeStats, path: Path, counts: dict[str, tuple[int, int]]) -> None:
    """A storage that ends early without an error (or a metadata.yaml naming a topic the storage does not
    hold) still loses frames: record it when fewer messages were read than the bag's index declares."""
    for topic, (read, declared) in sorted(counts.items()):
        if read < declared:
            stats.read_errors.append(f"{path}: topic {topic}: read {read} of the {declared} messages its "
                                     "metadata declares")
            log.warning("%s", stats.read_errors[-1])


def iter_frames(bag_path: str | os.PathLike[str], selection: BagSelection = BagSelection(),
                stats: DecodeStats | None = None) -> FrameIterator:
    """Decoded RGB frames in recording order; skipped frames are counted in ``.stats``."""
    return FrameIterator(bag_path, selection, stats)


@dataclass
class FrameSet:
    """Prepared frames of a bag, ready for the network."""

    images: np.ndarray  # (N, C, h, w) uint8, as returned by `prepare`
    stamps_ns: np.ndarray  # (N,) int64 header stamps
    log_times_ns: np.ndarray  # (N,) int64
    indices: np.ndarray  # (N,) int64, Frame.index
    topics: np.ndarray  # (N,) str
    image_sizes: np.ndarray  # (N, 2) int64 input height, width
    geometries: np.ndarray  # (N, 4) float64 scale_x, scale_y, offset_x, offset_y
    stats: DecodeStats
    bag_path: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def geometry(self, i: int) -> Geometry:
        return Geometry(*(float(v) for v in self.geometries[i]))


PrepareFn = Callable[[np.ndarray], tuple[np.ndarray, Any]]


def load_frames(bag_path: str | os.PathLike[str], selection: BagSelection, prepare: PrepareFn) -> FrameSet:
    """A bag's frames decoded and prepared into RAM: for small bags (tests, label tools). Training and
    evaluation stream theirs through the frame store (data/frame_cache.py), the one frame cache."""
    return _decode(Path(bag_path), selection, prepare)


def _decode(path: Path, selection: BagSelection, prepare: PrepareFn) -> FrameSet:
    stats = DecodeStats()
    images, stamps, logs, indices, topics, sizes, geoms = [], [], [], [], [], [], []
    for frame in iter_frames(path, selection, stats):
        chw, geometry = prepare(frame.image)
        if images and chw.shape != images[0].shape:
            raise ValueError(f"prepare returned shape {chw.shape} for {frame.topic}#{frame.index} of {path}, "
                             f"earlier frames had {images[0].shape}")
        images.append(chw)
        stamps.append(frame.stamp_ns)
        logs.append(frame.log_time_ns)
        indices.append(frame.index)
        topics.append(frame.topic)
        sizes.append(frame.image.shape[:2])
        geoms.append([geometry.scale_x, geometry.scale_y, geometry.offset_x, geometry.offset_y]
                     if geometry is not None else [np.nan] * 4)
    if not stats.ok:
        log.warning("bag %s: %s", path, stats.summary())
    if not images:
        raise BagError(f"no frames decoded from bag {path} for {selection}: {stats.summary()}")
    return FrameSet(
        images=np.stack(images).astype(np.uint8, copy=False),
        stamps_ns=np.asarray(stamps, np.int64),
        log_times_ns=np.asarray(logs, np.int64),
        indices=np.asarray(indices, np.int64),
        topics=np.asarray(topics, dtype=str),
        image_sizes=np.asarray(sizes, np.int64).reshape(-1, 2),
        geometries=np.asarray(geoms, np.float64).reshape(-1, 4),
        stats=stats,
        bag_path=str(path),
    )
