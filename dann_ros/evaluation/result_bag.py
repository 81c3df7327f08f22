"""Result bags: the camera messages of an evaluation, copied byte for byte, next to the model's
vision_msgs outputs, so Foxglove or RViz show each frame with what the model said about it.

Outputs go where dann_node publishes them (``/cam/image_raw`` -> ``/cam/classification`` and
``/cam/label_info``, see dann_ros.ros.topics) with the input's header and log time. The
rosbags typestore has no vision_msgs: its definitions are registered from this repository's
msg/vision_msgs/msg/*.msg files (the same files the node's interface package is built from).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import get_types_from_msg, get_typestore

from dann_ros.data.bags import ROS2_STORE
from dann_ros.ros import names
from dann_ros.ros.outputs import output_topic_name

CLASSIFICATION = "vision_msgs/msg/Classification"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class OutputExistsError(FileExistsError, ValueError):
    """An output that would overwrite an earlier one (a ValueError too, so the CLI reports it)."""


def vision_msgs_dir() -> Path:
    from dann_ros.paths import share_file

    return share_file("msg", "vision_msgs", "msg")


def vision_typestore(msg_dir: str | os.PathLike[str] | None = None):
    """A fresh ROS 2 typestore with every vision_msgs message registered from its .msg file."""
    folder = Path(msg_dir) if msg_dir is not None else vision_msgs_dir()
    files = sorted(folder.glob("*.msg"))
    if not files:
        raise FileNotFoundError(f"no vision_msgs .msg files in {folder} (needed to write vision_msgs into bags)")
    store = get_typestore(ROS2_STORE)
    types: dict[str, Any] = {}
    for file in files:
        types.update(get_types_from_msg(file.read_text(encoding="utf-8"), f"vision_msgs/msg/{file.stem}"))
    store.register(types)
    return store


def output_topics(inputs: Sequence[str], name: str, compressed: Sequence[bool] | None = None) -> dict[str, str]:
    """Input topic -> the topic dann_node publishes ``name`` on for it (cameras sharing a namespace,
    which the node refuses, get ``<input>/<name>`` instead so nothing collides)."""
    from dann_ros.ros.topics import camera_topics

    flags = list(compressed) if compressed is not None else [t.endswith("/compressed") for t in inputs]
    out: dict[str, str] = {}
    for topic, flag in zip(inputs, flags):
        (cam,) = camera_topics([topic], flag)
        out[topic] = cam.output(name)
    if len(set(out.values())) != len(out):
        out = {t: f"{t.rstrip('/')}/{name}" for t in inputs}
    return out


def _time(types: Any, ns: int) -> Any:
    return types["builtin_interfaces/msg/Time"](sec=int(ns) // 1_000_000_000, nanosec=int(ns) % 1_000_000_000)


class ResultBagWriter:
    """Writes copied input messages and vision_msgs results; always in log-time order of the input."""

    def __init__(self, path: str | os.PathLike[str], storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise OutputExistsError(f"result bag {self.path} exists already (use --overwrite or another --out)")
        self.store = vision_typestore()
        self.types = self.store.types
        try:
            self.writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        except WriterError:  # rosbags releases that only write version 8
            self.writer = Writer(self.path, version=8, storage_plugin=STORAGES[storage])
        self.writer.open()
        self._inputs: dict[tuple[str, str], Any] = {}
        self._outputs: dict[tuple[str, str], Any] = {}
        self.counts: dict[str, int] = {}

    # -- inputs ------------------------------------------------------------------------------
    def copy(self, connection: Any, log_ns: int, raw: bytes | memoryview) -> None:
        """Write a message of a reader's connection exactly as it was recorded."""
        key = (connection.topic, connection.msgtype)
        conn = self._inputs.get(key)
        if conn is None:
            conn = self._inputs[key] = self._input_connection(connection)
        self.writer.write(conn, int(log_ns), raw)
        self.counts[connection.topic] = self.counts.get(connection.topic, 0) + 1

    def _input_connection(self, c: Any) -> Any:
        msgdef = getattr(getattr(c, "msgdef", None), "data", "") or None
        digest = getattr(c, "digest", "") or None
        qos = list(getattr(getattr(c, "ext", None), "offered_qos_profiles", None) or ())
        if msgdef and digest and str(digest).startswith("RIHS01_"):
            try:
                return self.writer.add_connection(c.topic, c.msgtype, msgdef=msgdef, rihs01=digest,
                                                  offered_qos_profiles=qos)
            except Exception:  # a definition rosbags cannot re-emit: fall back to its own
                pass
        return self.writer.add_connection(c.topic, c.msgtype, typestore=self.store, offered_qos_profiles=qos)

    # -- outputs -----------------------------------------------------------------------------
    def _output(self, topic: str, msgtype: str) -> Any:
        conn = self._outputs.get((topic, msgtype))
        if conn is None:
            conn = self._outputs[(topic, msgtype)] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        return conn

    def write_raw_output(self, topic: str, msgtype: str, log_ns: int, raw: bytes) -> None:
        """An already serialized output (e.g. received from dann_node)."""
        self.writer.write(self._output(topic, msgtype), int(log_ns), raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        return self.types["std_msgs/msg/Header"](stamp=_time(self.types, stamp_ns), frame_id=frame_id)

    def classification(self, topic: str, log_ns: int, stamp_ns: int, frame_id: str, scores: np.ndarray,
                       top_k: int) -> None:
        """vision_msgs/Classification as dann_node builds it: top-k hypotheses, best first,
        class_id = class index as a string."""
        scores = np.asarray(scores, dtype=np.float64)
        k = len(scores) if top_k <= 0 else min(top_k, len(scores))
        order = np.argsort(-scores, kind="stable")[:k]
        hyp = self.types["vision_msgs/msg/ObjectHypothesis"]
        msg = self.types[CLASSIFICATION](header=self.header(stamp_ns, frame_id),
                                         results=[hyp(class_id=str(int(i)), score=float(scores[i])) for i in order])
        self.write_raw_output(topic, CLASSIFICATION, log_ns, bytes(self.store.serialize_cdr(msg, CLASSIFICATION)))

    def detections(self, topic: str, log_ns: int, stamp_ns: int, frame_id: str, boxes: np.ndarray,
                   class_ids: np.ndarray, scores: np.ndarray) -> None:
        """vision_msgs/Detection2DArray as dann_node builds it: boxes (x1, y1, x2, y2, image pixels) as
        centre + size, one hypothesis each, class_id = class index as a string."""
        t = self.types
        header = self.header(stamp_ns, frame_id)
        pose = t["geometry_msgs/msg/PoseWithCovariance"](
            pose=t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                             orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0,
                                                                                           w=1.0)),
            covariance=np.zeros(36, dtype=np.float64))
        dets = []
        for (x1, y1, x2, y2), c, sc in zip(np.asarray(boxes, float), class_ids, scores):
            bbox = t["vision_msgs/msg/BoundingBox2D"](
                center=t["vision_msgs/msg/Pose2D"](position=t["vision_msgs/msg/Point2D"](x=(x1 + x2) / 2,
                                                                                          y=(y1 + y2) / 2), theta=0.0),
                size_x=x2 - x1, size_y=y2 - y1)
            hyp = t["vision_msgs/msg/ObjectHypothesisWithPose"](
                hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=str(int(c)), score=float(sc)), pose=pose)
            dets.append(t["vision_msgs/msg/Detection2D"](header=header, results=[hyp], bbox=bbox, id=""))
        name = "vision_msgs/msg/Detection2DArray"
        msg = t[name](header=header, detections=dets)
        self.write_raw_output(topic, name, log_ns, bytes(self.store.serialize_cdr(msg, name)))

    def label_info(self, topic: str, log_ns: int, stamp_ns: int, frame_id: str, classes: Sequence[str]) -> None:
        vc = self.types["vision_msgs/msg/VisionClass"]
        msg = self.types[LABEL_INFO](header=self.header(stamp_ns, frame_id),
                                     class_map=[vc(class_id=i, class_name=n) for i, n in enumerate(classes)],
                                     threshold=0.0)
        self.write_raw_output(topic, LABEL_INFO, log_ns, bytes(self.store.serialize_cdr(msg, LABEL_INFO)))

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> ResultBagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_result_bag(path: Path, bag: Path, topics: list[str], frames: Any, task: Any, pred: dict,
                     compressed: dict[str, bool], storage: str = "mcap") -> dict:
    """eval-bag's result bag: the selected topics' messages (all of them, decodable or not) and the
    task's output for every evaluated frame, in the input's log-time order.

    Reads the bag a second time with the reader iter_frames uses (dann_ros.data.bags.open_bag and
    iter_messages), so a damaged bag stops at the same message."""
    import shutil

    from dann_ros.data.bags import iter_messages, open_bag

    rows = {(t, int(i)): r for r, (t, i) in enumerate(zip(frames.topics.tolist(), frames.indices.tolist()))}
    flags = [compressed[t] for t in topics]
    out_topics = output_topics(topics, output_topic_name(task.spec.name), flags)
    info_topics = output_topics(topics, names.LABEL_INFO, flags)
    announced: set[str] = set()
    written = outputs = 0
    errors: list[str] = []
    try:
        with open_bag(bag) as source, ResultBagWriter(path, storage) as writer:
            for m in iter_messages(source, topics, errors=errors, path=bag):
                topic = m.connection.topic
                row = rows.get((topic, m.index))
                if row is not None and topic not in announced:  # class map once per camera, like the node
                    announced.add(topic)
                    writer.label_info(info_topics[topic], m.log_time_ns, int(frames.stamps_ns[row]),
                                      frames.frame_ids[row], task.classes)
                writer.copy(m.connection, m.log_time_ns, m.raw)
                written += 1
                if row is not None:
                    task.codec.write(writer, out_topics[topic], row, m.log_time_ns, frames, pred)
                    outputs += 1
            counts = dict(writer.counts)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return {"path": str(path), "storage": storage, "input_messages": written, "outputs": outputs,
            "output_topics": out_topics, "label_info_topics": info_topics, "messages_per_topic": counts,
            "read_error": errors[0] if errors else None}
