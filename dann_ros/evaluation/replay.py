"""``dann-ros replay``: the project's own bag player, with dann_node in the loop.

Plays a bag's camera topics into ROS 2 in real time (or ``--rate`` times faster), keeping
every message's original bytes and so its header stamp, records what the node publishes and
matches outputs to inputs by header stamp. Reports end-to-end latency (publish here ->
Classification received here, both on this process's monotonic clock), the frames the node
never answered (drops), and accuracy where a label file exists; writes ``replay_bag/`` (the
frames as published and the outputs as received, with wall-clock log times), report.json and
report.html.

With ``--model`` the node is started here as a subprocess (config/dann_ros.yaml, autostart,
an isolated DDS domain on loopback, the Fast DDS shared-memory profile) and stopped at the
end. Without it, an already running node is used (``--input-topic``/``--output-topic`` name
its topics; this process uses the caller's ROS environment).

Messages are published as their serialized bytes (rclpy's Publisher.publish accepts bytes),
so nothing is converted and the stamps are exactly the recorded ones.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import shutil
import signal
import struct
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dann_ros.data.bags import BagError, bag_info
from dann_ros.evaluation import html as H
from dann_ros.evaluation import plots
from dann_ros.evaluation.eval_bag import resolve_labels
from dann_ros.ros.env import ROS_ENV_KEYS
from dann_ros.evaluation.scores import classification_scores, labels_onto_classes

log = logging.getLogger(__name__)

FORMAT = "dann_ros.replay/1"
CLASSIFICATION = "vision_msgs/msg/Classification"
DETECTIONS = "vision_msgs/msg/Detection2DArray"


class ReplayError(RuntimeError):
    """Replay cannot run (node did not start, topics never matched ...); says what to check."""


@dataclass
class Camera:
    bag_topic: str
    msgtype: str
    input_topic: str  # where frames are published
    output_topic: str  # where the node's Classification (or Detection2DArray) arrives
    label_info_topic: str
    output_msgtype: str = CLASSIFICATION
    published: list[tuple[int, int, int, int]] = field(default_factory=list)  # (index, stamp_ns, mono_ns, wall_ns)
    received: list[tuple[int, int, bytes]] = field(default_factory=list)  # (mono_ns, wall_ns, raw)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def compressed(self) -> bool:
        return self.msgtype.endswith("CompressedImage")


@dataclass
class ReplayOptions:
    bag: Path
    topics: tuple[str, ...] = ()
    rate: float = 1.0
    model: Path | None = None
    backend: str = "auto"
    input_topics: tuple[str, ...] = ()
    output_topics: tuple[str, ...] = ()
    labels: Any = None  # path, None = <bag>.labels.json if present, False = none
    out: Path | None = None
    qos_reliability: str = "best_effort"
    start_timeout: float = 60.0
    grace: float = 2.0
    max_duration: float | None = None
    dds_profile: str = "auto"  # auto | none | a path
    record_bag: bool = True
    node_parameters: dict = field(default_factory=dict)
    task: str = "auto"  # classification | detection; auto: from --model's metadata, else classification


def header_stamp_ns(raw: bytes | memoryview) -> int:
    """Header stamp of a serialized sensor_msgs message (the header comes first in CDR)."""
    little = raw[1] & 1  # encapsulation 0x0001 / 0x0007: little endian
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


# --------------------------------------------------------------------------- environment and node
@contextmanager
def _process_env(values: dict[str, str], isolated: bool) -> Iterator[None]:
    """Set this process's ROS variables for the replay (rclpy.init reads them), restore afterwards.
    ``isolated``: the ROS variables not in ``values`` are removed (a group of our own)."""
    saved = {k: os.environ.get(k) for k in ROS_ENV_KEYS}
    try:
        for k in ROS_ENV_KEYS:
            if k in values:
                os.environ[k] = values[k]
            elif isolated:
                os.environ.pop(k, None)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class NodeProcess:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")
        env = dict(env, RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log_text(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


# --------------------------------------------------------------------------- rclpy side
class _Ros:
    """This process's rclpy node in its own context, spun by a background executor."""

    def __init__(self, cameras: list[Camera], reliability: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        try:
            from vision_msgs.msg import Classification, Detection2DArray, LabelInfo
        except ImportError as exc:
            raise ReplayError(f"vision_msgs is not importable here ({exc}); build it with scripts/build_vision_msgs.sh"
                              ) from None
        from diagnostic_msgs.msg import DiagnosticArray

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"dann_replay_{os.getpid()}", context=self.context)
        rel = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}[reliability]
        camera_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=rel,
                                durability=DurabilityPolicy.VOLATILE)
        result_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.VOLATILE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.label_info: dict[str, Any] = {}
        self.diagnostics: Any = None
        self.diagnostics_time = 0.0
        self.publishers, self.subscriptions = [], []
        for cam in cameras:
            self.publishers.append(self.node.create_publisher(CompressedImage if cam.compressed else Image,
                                                              cam.input_topic, camera_qos))
            output_type = Detection2DArray if cam.output_msgtype == DETECTIONS else Classification
            self.subscriptions.append(self.node.create_subscription(
                output_type, cam.output_topic, lambda raw, cam=cam: self._on_output(cam, raw), result_qos, raw=True))
            self.node.create_subscription(LabelInfo, cam.label_info_topic,
                                          lambda msg, cam=cam: self.label_info.__setitem__(cam.bag_topic, msg), latched)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name="replay_executor", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # the context was shut down
            pass

    @staticmethod
    def _on_output(cam: Camera, raw: bytes) -> None:
        mono, wall = time.monotonic_ns(), time.time_ns()
        with cam.lock:
            cam.received.append((mono, wall, raw))

    def _on_diagnostics(self, msg: Any) -> None:
        self.diagnostics, self.diagnostics_time = msg, time.monotonic()

    def wait_fresh_diagnostics(self, timeout: float = 2.5) -> None:
        """The node's counters as of the end of the replay (it publishes them every diagnostics_period)."""
        if self.diagnostics is None:
            return
        since = time.monotonic()
        while self.diagnostics_time < since and time.monotonic() - since < timeout:
            time.sleep(0.05)

    def matched(self) -> list[tuple[int, int]]:
        """Per camera: (node subscriptions on the input, node publishers on the output)."""
        return [(p.get_subscription_count(), s.get_publisher_count())
                for p, s in zip(self.publishers, self.subscriptions)]

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=2)
            self.node.destroy_node()
        finally:
            self.rclpy.try_shutdown(context=self.context)
            self._thread.join(timeout=5)


# --------------------------------------------------------------------------- playback
_END = object()


class _Reader(threading.Thread):
    """Reads the bag ahead of the player (bounded), so disk and chunk decompression never delay
    a publish; stops at the first unreadable message like iter_frames."""

    def __init__(self, bag: Path, topics: set[str], out: queue.Queue, stop: threading.Event) -> None:
        super().__init__(name="replay_reader", daemon=True)
        self.bag, self.topics, self.out, self.stop = bag, topics, out, stop
        self.error: str | None = None
        self.notes: list[str] = []

    def run(self) -> None:
        from dann_ros.data.bags import _open_source  # iter_frames' reader, incl. truncated-MCAP salvage

        try:
            source = _open_source(self.bag)
        except Exception as exc:  # noqa: BLE001
            self.error = str(exc)
            self.out.put(_END)
            return
        self.notes = list(source.notes)
        try:
            conns = [c for c in source.connections if c.topic in self.topics]
            messages = source.messages(conns, None)
            index: dict[str, int] = {}
            while not self.stop.is_set():
                try:
                    conn, log_ns, raw = next(messages)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001
                    self.error = f"{self.bag}: reading stopped after {sum(index.values())} messages: " \
                                 f"{type(exc).__name__}: {exc}"
                    break
                i = index.get(conn.topic, 0)
                index[conn.topic] = i + 1
                raw = raw if isinstance(raw, bytes) else bytes(raw)
                while not self.stop.is_set():
                    try:
                        self.out.put((conn, int(log_ns), raw, i), timeout=0.1)
                        break
                    except queue.Full:
                        continue
        finally:
            source.close()
            self.out.put(_END)


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def _sleep_until(target_ns: int) -> None:
    while True:
        left = target_ns - time.monotonic_ns()
        if left <= 0:
            return
        time.sleep(min(left / 1e9, 0.05) if left > 2_000_000 else left / 2e9)


def _play(opts: ReplayOptions, cameras: dict[str, Camera], ros: _Ros) -> dict:
    pubs = {cam.bag_topic: pub for cam, pub in zip(cameras.values(), ros.publishers)}
    q: queue.Queue = queue.Queue(maxsize=64)
    stop = threading.Event()
    reader = _Reader(opts.bag, set(cameras), q, stop)
    reader.start()
    start_mono = first_log = None
    lag_ns: list[int] = []
    connections: dict[str, Any] = {}
    record: list[tuple[str, int, bytes]] = []  # (bag topic, publish wall ns, raw) for the replay bag
    stopped_early = None
    try:
        while True:
            item = q.get()
            if item is _END:
                break
            conn, log_ns, raw, index = item
            if start_mono is None:
                start_mono, first_log = time.monotonic_ns(), log_ns
            target = start_mono + int((log_ns - first_log) / opts.rate)
            if opts.max_duration is not None and target - start_mono > opts.max_duration * 1e9:
                stopped_early = f"--max-duration {opts.max_duration:g} s reached"
                break
            _sleep_until(target)
            cam = cameras[conn.topic]
            stamp = header_stamp_ns(raw)
            mono, wall = time.monotonic_ns(), time.time_ns()
            pubs[conn.topic].publish(raw)
            lag_ns.append(mono - target)
            with cam.lock:
                cam.published.append((index, stamp, mono, wall))
            if opts.record_bag:
                if conn.topic not in connections:
                    connections[conn.topic] = conn._replace(topic=_absolute(cam.input_topic))
                record.append((conn.topic, wall, raw))
    finally:
        stop.set()
        reader.join(timeout=10)
    duration = (time.monotonic_ns() - start_mono) / 1e9 if start_mono is not None else 0.0
    return {"duration_s": duration, "lag_ms": np.asarray(lag_ns, float) / 1e6, "read_error": reader.error,
            "notes": reader.notes, "stopped_early": stopped_early, "connections": connections, "record": record}


# --------------------------------------------------------------------------- the replay
def _cameras(opts: ReplayOptions, image_topics: dict[str, tuple[str, int]], task: str) -> dict[str, Camera]:
    from dann_ros.evaluation.result_bag import output_topics

    chosen = list(opts.topics) or sorted(image_topics)
    for t in chosen:
        if t not in image_topics:
            raise BagError(f"topic {t!r} is not an image topic of {opts.bag}; image topics: {sorted(image_topics)}")
    for flag, given in (("--input-topic", opts.input_topics), ("--output-topic", opts.output_topics)):
        if given and len(given) != len(chosen):
            raise ValueError(f"{flag} given {len(given)} times for {len(chosen)} camera topics {chosen}; "
                             "give one per --topic, in the same order")
    inputs = list(opts.input_topics) or chosen
    compressed = [image_topics[t][0].endswith("CompressedImage") for t in chosen]
    kind, msgtype = ("detections", DETECTIONS) if task == "detection" else ("classification", CLASSIFICATION)
    outs = list(opts.output_topics) or list(output_topics(inputs, kind, compressed).values())
    infos = [o.rsplit("/", 1)[0] + "/label_info" if "/" in o.strip("/") else "label_info" for o in outs] \
        if opts.output_topics else list(output_topics(inputs, "label_info", compressed).values())
    return {t: Camera(t, image_topics[t][0], i, o, li, output_msgtype=msgtype)
            for t, i, o, li in zip(chosen, inputs, outs, infos)}


def _task(opts: ReplayOptions) -> str:
    """What the node will publish: from the model file's own metadata when replay starts the node."""
    if opts.task != "auto":
        return opts.task
    if opts.model is None or not Path(opts.model).exists():
        return "classification"
    suffix = Path(opts.model).suffix
    if suffix == ".onnx":
        from dann_ros.runtime.backends import onnx_info

        return onnx_info(Path(opts.model)).task
    if suffix == ".pt":
        from dann_ros.train.checkpoint import load

        return str(load(opts.model).get("task", "classification"))
    return "classification"


def replay(opts: ReplayOptions) -> dict:
    """Play, record, match; returns the report (also written to ``opts.out`` when set)."""
    if opts.rate <= 0:
        raise ValueError(f"--rate must be positive, got {opts.rate}")
    meta = bag_info(opts.bag)
    if not meta.image_topics:
        raise BagError(f"bag {opts.bag} has no sensor_msgs Image or CompressedImage topic")
    task = _task(opts)
    cameras = _cameras(opts, meta.image_topics, task)
    if task == "detection":  # latency and drops only: detection accuracy (mAP) is eval-bag's / eval's job
        label_set, label_note = None, "detection model: replay reports latency and drops; use `dann-ros eval` for mAP"
    else:
        label_set, label_note = resolve_labels(opts.bag, opts.labels, "classification", list(cameras))
    if opts.model is not None:
        if len({c.compressed for c in cameras.values()}) > 1:
            raise ValueError("dann_node takes either raw or compressed images; replay raw and compressed topics "
                             "in two runs (--topic)")
        if not Path(opts.model).exists():
            raise FileNotFoundError(f"model file not found: {opts.model}")
        from dann_ros.ros.topics import camera_topics

        cams = list(cameras.values())
        camera_topics([c.input_topic for c in cams], cams[0].compressed)  # the node's own check, before it starts
    out = Path(opts.out) if opts.out is not None else None
    if out is not None and opts.record_bag and (out / "replay_bag").exists():
        from dann_ros.evaluation.result_bag import OutputExistsError

        raise OutputExistsError(f"{out / 'replay_bag'} exists already; remove it or choose another --out")

    env_values, node_env, domain_id = _environment(opts)
    node = None
    t_start = time.monotonic()
    try:
        with _process_env(env_values, isolated=opts.model is not None):
            try:
                ros = _Ros(list(cameras.values()), opts.qos_reliability)
            except ImportError as exc:
                raise ReplayError(f"rclpy is not importable here ({exc})") from None
            try:
                if opts.model is not None:
                    node = _start_node(opts, cameras, node_env, out)
                _wait_ready(opts, ros, cameras, node)
                played = _play(opts, cameras, ros)
                _wait_outputs(opts, cameras, node)
                if node is not None and not node.alive():
                    played["node_exit"] = (f"dann_node exited with {node.proc.returncode} during the replay "
                                           f"(log: {node.log_path})")
                ros.wait_fresh_diagnostics()
                diagnostics = ros.diagnostics
                label_info = dict(ros.label_info)
            finally:
                if node is not None:
                    node.stop()
                ros.close()
    finally:
        if domain_id is not None:
            from dann_ros.ros.env import release_domain_id

            release_domain_id(domain_id)
    report = _analyse(opts, meta, cameras, played, label_info, diagnostics, label_set, label_note, node,
                      time.monotonic() - t_start)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if opts.record_bag:
            report["replay_bag"] = _write_record(out / "replay_bag", cameras, played)
        figures = _figures(report, cameras, played)
        report["figures"] = {k: v["json"] for k, v in figures.items()}
        H.write_json(out / "report.json", report)
        _page(report, figures).write(out / "report.html")
    return report


def _environment(opts: ReplayOptions) -> tuple[dict[str, str], dict[str, str] | None, int | None]:
    """ROS variables for this process, the node's environment, and the claimed domain id."""
    from dann_ros.ros.env import fastdds_shm_profile, isolated_ros_env

    profile: Any
    if opts.dds_profile == "none":
        profile = False
    elif opts.dds_profile == "auto":
        profile = True if opts.model is not None or not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") else \
            os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]
    else:
        profile = Path(opts.dds_profile)
        if not profile.exists():
            raise FileNotFoundError(f"Fast DDS profile not found: {profile}")
    if opts.model is None:  # talk to a running node: keep the caller's domain and discovery settings
        values = {}
        if profile:
            values["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_shm_profile() if profile is True else profile)
        return values, None, None
    env = isolated_ros_env(fastdds_profile=profile)
    return {k: env[k] for k in ROS_ENV_KEYS if k in env}, env, int(env["ROS_DOMAIN_ID"])


def _start_node(opts: ReplayOptions, cameras: dict[str, Camera], env: dict[str, str], out: Path | None) -> NodeProcess:
    from dann_ros.ros.arguments import node_command

    cams = list(cameras.values())
    params = {"input_topics": [c.input_topic for c in cams], "compressed": cams[0].compressed,
              "qos_reliability": opts.qos_reliability, "autostart": True, "backend": opts.backend,
              **opts.node_parameters}
    log_path = (out if out is not None else Path(os.environ.get("TMPDIR", "/tmp"))) / \
        ("dann_node.log" if out is not None else f"dann_replay_node_{os.getpid()}.log")
    return NodeProcess(node_command(str(Path(opts.model).resolve()), parameters=params), env, log_path)


def _wait_ready(opts: ReplayOptions, ros: _Ros, cameras: dict[str, Camera], node: NodeProcess | None) -> None:
    deadline = time.monotonic() + opts.start_timeout
    while True:
        counts = ros.matched()
        if all(s > 0 and p > 0 for s, p in counts):
            break
        if node is not None and not node.alive():
            raise ReplayError(f"dann_node exited with {node.proc.returncode} before it was ready:\n{node.log_text()}")
        if time.monotonic() > deadline:
            missing = [f"{c.input_topic} (node subscribed: {s > 0}) -> {c.output_topic} (node publishing: {p > 0})"
                       for c, (s, p) in zip(cameras.values(), counts) if not (s and p)]
            hint = f"\nnode log:\n{node.log_text()}" if node is not None else \
                " (is dann_node running and active in this ROS_DOMAIN_ID, on these topics?)"
            raise ReplayError(f"no node on {'; '.join(missing)} after {opts.start_timeout:g} s{hint}")
        time.sleep(0.05)
    time.sleep(0.5)  # both ends of each match are discovered a moment apart; let the node's side settle
    if cameras:
        wait = time.monotonic() + 2.0
        while len(ros.label_info) < len(cameras) and time.monotonic() < wait:
            time.sleep(0.05)


def _wait_outputs(opts: ReplayOptions, cameras: dict[str, Camera], node: NodeProcess | None) -> None:
    """Until every frame is answered, or nothing new arrived for ``grace`` seconds."""
    def received() -> int:
        return sum(len(c.received) for c in cameras.values())

    published = sum(len(c.published) for c in cameras.values())
    last, last_change = received(), time.monotonic()
    while received() < published:
        time.sleep(0.02)
        now = received()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > opts.grace:
            break


# --------------------------------------------------------------------------- analysis
def _percentiles(values: np.ndarray) -> dict:
    from dann_ros.evaluation.eval_bag import _percentiles as p

    return p(values)


def _analyse(opts, meta, cameras, played, label_info, diagnostics, label_set, label_note, node, wall_s) -> dict:
    from dann_ros.evaluation.result_bag import vision_typestore

    store = vision_typestore()
    per_cam: dict[str, Any] = {}
    all_lat: list[float] = []
    rows_topic, rows_stamp, rows_index, rows_pred = [], [], [], []
    unmatched_outputs = 0
    classes: tuple[str, ...] | None = None
    for cam in cameras.values():
        info = label_info.get(cam.bag_topic)
        if info is not None and classes is None:
            classes = tuple(c.class_name for c in sorted(info.class_map, key=lambda c: c.class_id))
        pending: dict[int, list[int]] = {}
        for i, (_, stamp, _, _) in enumerate(cam.published):
            pending.setdefault(stamp, []).append(i)
        answered = np.full(len(cam.published), -1, np.int64)  # predicted class id, -1 = no output
        latency = np.full(len(cam.published), np.nan)
        for mono, _, raw in cam.received:
            msg = store.deserialize_cdr(raw, CLASSIFICATION)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            slots = pending.get(stamp)
            if not slots:
                unmatched_outputs += 1
                continue
            i = slots.pop(0)
            latency[i] = (mono - cam.published[i][2]) / 1e6
            answered[i] = int(msg.results[0].class_id) if msg.results else -1
        ok = ~np.isnan(latency)
        all_lat += latency[ok].tolist()
        t0 = cam.published[0][2] if cam.published else 0
        per_cam[cam.bag_topic] = {
            "input_topic": cam.input_topic, "output_topic": cam.output_topic, "msgtype": cam.msgtype,
            "published": len(cam.published), "answered": int(ok.sum()), "dropped": int((~ok).sum()),
            "drop_rate": float((~ok).mean()) if len(ok) else None, "latency_ms": _percentiles(latency[ok]),
            "series": {"t_s": [(p[2] - t0) / 1e9 for p in cam.published], "latency_ms": latency.tolist()},
        }
        for (index, stamp, _, _), pred in zip(cam.published, answered):
            rows_topic.append(cam.bag_topic)
            rows_stamp.append(stamp)
            rows_index.append(index)
            rows_pred.append(pred)
    published = sum(c["published"] for c in per_cam.values())
    answered_n = sum(c["answered"] for c in per_cam.values())
    lag = played["lag_ms"]
    report: dict[str, Any] = {
        "format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bag": str(opts.bag), "rate": opts.rate, "model": str(opts.model) if opts.model else None,
        "node": "started by replay" if node is not None else "already running",
        "qos_reliability": opts.qos_reliability, "domain_id": os.environ.get("ROS_DOMAIN_ID"),
        "duration_s": played["duration_s"], "wall_s": wall_s,
        "frames": {"published": published, "answered": answered_n, "dropped": published - answered_n,
                   "drop_rate": (published - answered_n) / published if published else None,
                   "unmatched_outputs": unmatched_outputs},
        "latency_ms": _percentiles(np.asarray(all_lat)),
        "latency_definition": "publish here -> the node's output received here (monotonic clock of this process)",
        "publish_lag_ms": _percentiles(lag),
        "cameras": per_cam, "read_error": played["read_error"], "read_notes": played["notes"],
        "stopped_early": played["stopped_early"], "node_exit": played.get("node_exit"),
        "classes": list(classes) if classes else None,
        "labels": None, "accuracy": None, "scores": None, "label_note": label_note,
        "node_diagnostics": _node_diagnostics(diagnostics, cameras),
    }
    if label_set is not None and published:
        if classes is None:
            report["label_note"] = "no label_info received from the node: class ids cannot be named, no accuracy"
        else:
            table = _Table(np.asarray(rows_topic, dtype=str), np.asarray(rows_index, np.int64),
                           np.asarray(rows_stamp, np.int64))
            match = label_set.file.match(table)
            ids = labels_onto_classes(label_set.file, match.class_ids, classes)
            pred = np.asarray(rows_pred, np.int64)
            got = pred >= 0
            scores = classification_scores(pred[got], ids[got], classes)
            report["labels"] = {"path": str(label_set.path), "topic": label_set.file.topic,
                                "matched": int(match.matched.sum()),
                                "labelled_and_dropped": int((~got & (ids >= 0)).sum())}
            report["accuracy"] = scores.accuracy if scores.n else None
            report["scores"] = scores.to_json()
    return report


@dataclass
class _Table:
    topics: np.ndarray
    indices: np.ndarray
    stamps_ns: np.ndarray


def _node_diagnostics(diag: Any, cameras: dict[str, Camera]) -> dict | None:
    if diag is None:
        return None
    out = {}
    for status in diag.status:
        for cam in cameras.values():
            name = cam.input_topic if cam.input_topic.startswith("/") else "/" + cam.input_topic
            if status.name.endswith(": " + name):
                out[cam.bag_topic] = {kv.key: kv.value for kv in status.values}
    return out or None


def _write_record(path: Path, cameras: dict[str, Camera], played: dict) -> dict:
    """Frames as published and outputs as received, merged in wall-clock order."""
    from dann_ros.evaluation.result_bag import ResultBagWriter

    events: list[tuple[int, int, Any]] = [(wall, 0, (topic, raw)) for topic, wall, raw in played["record"]]
    msgtypes = {cam.output_topic: cam.output_msgtype for cam in cameras.values()}
    for cam in cameras.values():
        events += [(wall, 1, (cam.output_topic, raw)) for _, wall, raw in cam.received]
    events.sort(key=lambda e: (e[0], e[1]))
    try:
        with ResultBagWriter(path) as writer:
            for wall, kind, (topic, raw) in events:
                if kind == 0:
                    writer.copy(played["connections"][topic], wall, raw)  # under the topic it was published on
                else:
                    writer.write_raw_output(_absolute(topic), msgtypes[topic], wall, raw)
            counts = dict(writer.counts)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return {"path": str(path), "messages_per_topic": counts}


def _figures(report: dict, cameras: dict[str, Camera], played: dict) -> dict[str, dict]:
    figs: dict[str, dict] = {}
    lat = {t: np.asarray(c["series"]["latency_ms"], float) for t, c in report["cameras"].items()}
    values = np.concatenate([v[~np.isnan(v)] for v in lat.values()]) if lat else np.empty(0)
    if values.size:
        top = max(float(np.percentile(values, 99.5)), 1e-3)
        edges = np.linspace(0, top, 41)
        figs["latency"] = {
            "png": plots.histogram({t: np.minimum(v[~np.isnan(v)], top) for t, v in lat.items()}, edges,
                                   "End-to-end latency", "milliseconds (publish -> output received)"),
            "caption": report["latency_definition"] + "; values above p99.5 are counted in the last bin",
            "json": {"title": "End-to-end latency", "bin_edges_ms": edges.tolist(),
                     **{t: np.histogram(np.minimum(v[~np.isnan(v)], top), edges)[0].tolist() for t, v in lat.items()}}}
    if report["cameras"]:
        fig, ax = plots.figure()
        multi = len(report["cameras"]) > 1
        for t, c in report["cameras"].items():
            x, y = np.asarray(c["series"]["t_s"], float), lat[t]
            ok = ~np.isnan(y)
            ax.plot(x[ok], y[ok], ".-", markersize=4, linewidth=1, label=f"latency {t}" if multi else "latency")
            if (~ok).any():
                ax.plot(x[~ok], np.zeros((~ok).sum()), "x", color="tab:red", markersize=6,
                        label=f"dropped {t}" if multi else "dropped (no output)")
        ax.legend()
        plots._style(ax, "Latency and drops over the replay", "time since the first publish (s)", "milliseconds")
        figs["latency_over_time"] = {
            "png": plots.to_png(fig), "caption": "Each frame's end-to-end latency; red crosses are frames the node "
                                                 "never answered",
            "json": {"title": "Latency over the replay",
                     "cameras": {t: {"t_s": c["series"]["t_s"], "latency_ms": c["series"]["latency_ms"],
                                     "dropped": [bool(np.isnan(v)) for v in lat[t]]}
                                 for t, c in report["cameras"].items()}}}
    if report["scores"]:
        s = report["scores"]
        figs["confusion_matrix"] = {
            "png": plots.confusion_matrix(np.asarray(s["confusion_matrix"]), s["classes"],
                                          f"Confusion matrix, answered frames (accuracy {100 * s['accuracy']:.2f}%)")
            if s["n"] else plots.bars([], {}, "no labelled answered frames", "", ""),
            "caption": "The node's top hypothesis vs the label, on labelled frames it answered",
            "json": {"title": "Confusion matrix", "classes": s["classes"], "matrix": s["confusion_matrix"]}}
    return figs


def _page(report: dict, figures: dict[str, dict]) -> H.Page:
    f, lat = report["frames"], report["latency_ms"]
    page = H.Page(f"replay: {Path(report['bag']).name} at {report['rate']:g}x")
    page.keyvalues([
        ("bag", report["bag"]), ("node", f"{report['node']}" + (f" ({report['model']})" if report["model"] else "")),
        ("rate", f"{report['rate']:g}x real time, input QoS {report['qos_reliability']}"),
        ("replay duration", f"{report['duration_s']:.2f} s"),
        ("frames published", f["published"]), ("frames answered", f["answered"]),
        ("frames dropped", f"{f['dropped']} ({H.pct(f['drop_rate'])})"),
        ("latency p50 / p90 / p99", f"{H.fmt(lat['p50'])} / {H.fmt(lat['p90'])} / {H.fmt(lat['p99'])} ms"),
        ("accuracy (answered, labelled frames)", H.pct(report["accuracy"]) if report["accuracy"] is not None
         else "no labels"),
        ("created", report["created"]),
    ])
    for key in ("node_exit", "read_error", "stopped_early", "label_note"):
        if report.get(key):
            page.note(str(report[key]), "error" if key == "node_exit" else "warn")
    page.heading("Per camera")
    page.table(("bag topic", "published to", "output topic", "published", "answered", "dropped", "p50 ms", "p99 ms"),
               [(t, c["input_topic"], c["output_topic"], c["published"], c["answered"], c["dropped"],
                 c["latency_ms"]["p50"], c["latency_ms"]["p99"]) for t, c in report["cameras"].items()], left=3)
    page.paragraph(f"Latency: {report['latency_definition']}. A drop is a published frame without an output "
                   f"(dann_node keeps only the newest frame per camera). Publish lag behind the bag's schedule: "
                   f"p50 {H.fmt(report['publish_lag_ms']['p50'])} ms, max {H.fmt(report['publish_lag_ms']['max'])} ms.")
    for name in ("latency", "latency_over_time", "confusion_matrix"):
        if name in figures:
            page.figure(figures[name]["png"], figures[name]["caption"])
    if report["node_diagnostics"]:
        page.heading("The node's own diagnostics (last /diagnostics message)")
        for t, values in report["node_diagnostics"].items():
            page.heading(t, 3)
            page.table(("key", "value"), sorted(values.items()), left=2)
    return page


# --------------------------------------------------------------------------- CLI
def add_replay_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("replay", help="play a bag into ROS 2 with dann_node in the loop: latency, drops, "
                                             "accuracy", description=__doc__.splitlines()[0])
    p.add_argument("--bag", required=True)
    p.add_argument("--model", help="start dann_node with this model (isolated domain); without: use a running node")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"])
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0 = real time)")
    p.add_argument("--topic", action="append", help="bag camera topic to play (repeatable; default: all)")
    p.add_argument("--input-topic", action="append", help="publish the matching --topic here instead (a running "
                                                          "node's input)")
    p.add_argument("--output-topic", action="append",
                   help="the node's Classification (or Detection2DArray) topic for the matching --topic")
    p.add_argument("--task", choices=["auto", "classification", "detection"], default="auto",
                   help="what the node publishes (auto: from --model, else classification)")
    lab = p.add_mutually_exclusive_group()
    lab.add_argument("--labels", help="label file (default: <bag>.labels.json when it exists)")
    lab.add_argument("--no-labels", action="store_true")
    p.add_argument("--out", help="report folder (default: <bag>.replay next to the bag)")
    p.add_argument("--qos", default="best_effort", choices=["best_effort", "reliable"],
                   help="reliability of the camera publishers (and of the node's input with --model)")
    p.add_argument("--start-timeout", type=float, default=60.0, help="seconds to wait for the node (default 60)")
    p.add_argument("--grace", type=float, default=2.0, help="seconds to wait for late outputs after the last frame")
    p.add_argument("--max-duration", type=float, help="stop playing after this many seconds")
    p.add_argument("--dds-profile", default="auto",
                   help="Fast DDS profile: auto (config/fastdds_shm.xml), none, or a file")
    p.add_argument("--no-record", action="store_true", help="do not write replay_bag/")
    p.set_defaults(func=_run_replay)
    return p


def _run_replay(args: argparse.Namespace) -> int:
    from dann_ros.evaluation.eval_bag import default_out_dir

    out = Path(args.out) if args.out else default_out_dir(args.bag).with_suffix(".replay")
    opts = ReplayOptions(
        bag=Path(args.bag), topics=tuple(args.topic or ()), rate=args.rate,
        model=Path(args.model) if args.model else None, backend=args.backend,
        input_topics=tuple(args.input_topic or ()), output_topics=tuple(args.output_topic or ()),
        labels=False if args.no_labels else (args.labels or None), out=out, qos_reliability=args.qos,
        start_timeout=args.start_timeout, grace=args.grace, max_duration=args.max_duration,
        dds_profile=args.dds_profile, record_bag=not args.no_record, task=args.task)
    print(summary(replay(opts), opts))
    return 0


def summary(r: dict, opts: ReplayOptions) -> str:
    """The replay result in a few lines, for the CLI and the demo."""
    f, lat = r["frames"], r["latency_ms"]
    lines = [f"replayed {f['published']} frames of {opts.bag} at {opts.rate:g}x in {r['duration_s']:.2f} s: "
             f"{f['answered']} answered, {f['dropped']} dropped"]
    if lat["n"]:
        lines.append(f"latency ms: p50 {lat['p50']:.2f}, p90 {lat['p90']:.2f}, p99 {lat['p99']:.2f}, "
                     f"max {lat['max']:.2f}")
    if r["accuracy"] is not None:
        lines.append(f"accuracy {100 * r['accuracy']:.2f}% on {r['scores']['n']} labelled answered frames")
    if r.get("label_note"):
        lines.append(r["label_note"])
    lines += [f"WARNING: {r[key]}" for key in ("node_exit", "read_error", "stopped_early") if r.get(key)]
    if opts.out is not None:
        lines.append(f"wrote {opts.out / 'report.html'}, {opts.out / 'report.json'}")
    return "\n".join(lines)
