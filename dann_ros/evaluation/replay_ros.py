"""replay's ROS side: this process's rclpy node (publishers of the bag's frames, raw subscribers of
the node's outputs), the dann_node subprocess replay starts, the ROS environment of both, and the
waits around a replay. Outputs are received serialized (raw=True) and decoded afterwards with the
task's message type, so a slow decode never drops an output."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dann_ros.ros import names
from dann_ros.ros.env import ROS_ENV_KEYS

if TYPE_CHECKING:
    from dann_ros.evaluation.replay_options import ReplayCamera, ReplayOptions


class ReplayError(RuntimeError):
    """Replay cannot run (node did not start, topics never matched ...); says what to check."""


def header_stamp_ns(raw: bytes | memoryview) -> int:
    """Header stamp of a serialized sensor_msgs message (the header comes first in CDR)."""
    little = raw[1] & 1  # encapsulation 0x0001 / 0x0007: little endian
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec * 1_000_000_000 + nanosec



# --------------------------------------------------------------------------- environment and node
@contextmanager
def process_env(values: dict[str, str], isolated: bool) -> Iterator[None]:
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
class RosSide:
    """This process's rclpy node in its own context, spun by a background executor."""

    def __init__(self, cameras: list[ReplayCamera], reliability: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        try:
            import vision_msgs.msg
            from vision_msgs.msg import LabelInfo
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
            output_type = getattr(vision_msgs.msg, cam.output_msgtype.rsplit("/", 1)[-1])  # the task's message
            self.subscriptions.append(self.node.create_subscription(
                output_type, cam.output_topic, lambda raw, cam=cam: self._on_output(cam, raw), result_qos, raw=True))
            self.node.create_subscription(LabelInfo, cam.label_info_topic,
                                          lambda msg, cam=cam: self.label_info.__setitem__(cam.bag_topic, msg), latched)
        self.node.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diagnostics, 10)
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
    def _on_output(cam: ReplayCamera, raw: bytes) -> None:
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


def environment(opts: ReplayOptions) -> tuple[dict[str, str], dict[str, str] | None, int | None]:
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


def start_node(opts: ReplayOptions, cameras: dict[str, ReplayCamera], env: dict[str, str],
               out: Path | None) -> NodeProcess:
    from dann_ros.ros.arguments import node_command

    cams = list(cameras.values())
    params = {"input_topics": [c.input_topic for c in cams], "compressed": cams[0].compressed,
              "qos_reliability": opts.qos_reliability, "autostart": True, "backend": opts.backend,
              "top_k": opts.output.top_k, "detection_threshold": opts.output.detection_threshold,
              **opts.node_parameters}
    log_path = (out if out is not None else Path(os.environ.get("TMPDIR", "/tmp"))) / \
        ("dann_node.log" if out is not None else f"dann_replay_node_{os.getpid()}.log")
    return NodeProcess(node_command(str(Path(opts.model).resolve()), parameters=params), env, log_path)


def wait_ready(opts: ReplayOptions, ros: RosSide, cameras: dict[str, ReplayCamera], node: NodeProcess | None) -> None:
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


def wait_outputs(opts: ReplayOptions, cameras: dict[str, ReplayCamera], node: NodeProcess | None) -> None:
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



def node_diagnostics(diag: Any, cameras: dict[str, ReplayCamera]) -> dict | None:
    if diag is None:
        return None
    out = {}
    for status in diag.status:
        for cam in cameras.values():
            name = cam.input_topic if cam.input_topic.startswith("/") else "/" + cam.input_topic
            if status.name.endswith(": " + name):
                out[cam.bag_topic] = {kv.key: kv.value for kv in status.values}
    return out or None

