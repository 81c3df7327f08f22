"""Helpers of the ROS tests: an isolated DDS domain per test module, dann_node in its own process.

Each module that uses ``ros`` claims its own ROS_DOMAIN_ID (dann_ros.ros.env, flock-based, so
pytest-xdist workers and parallel runs never share one) with discovery limited to localhost,
and sets it in this process before rclpy.init. The node runs as ``python -m dann_ros.ros.node``
with node_arguments(...): exactly what launch/dann_ros.launch.py passes.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from dann_ros.ros.env import ROS_ENV_KEYS as _ENV_KEYS  # noqa: F401  (used by conftest.py)
import rclpy
from rclpy.executors import SingleThreadedExecutor

TIMEOUT = 30.0  # discovery and first frames on a loaded 2-core machine


def wait_for(condition: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition",
             every: Callable[[], None] | None = None, interval: float = 0.02) -> Any:
    """Poll ``condition`` until truthy (returned), calling ``every`` between polls; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        if every is not None:
            every()
        time.sleep(interval)


class Collector:
    """Messages of one subscription, thread-safe."""

    def __init__(self) -> None:
        self.messages: list = []
        self._lock = threading.Lock()

    def __call__(self, msg) -> None:
        with self._lock:
            self.messages.append(msg)

    def snapshot(self) -> list:
        with self._lock:
            return list(self.messages)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def find(self, predicate: Callable[[Any], bool]):
        for msg in reversed(self.snapshot()):
            if predicate(msg):
                return msg
        return None


class Ros:
    """This process's side: a node spun by a background executor, in the module's domain."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.env = env
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # context shut down
            pass

    def subscribe(self, msg_type, topic: str, qos=10) -> Collector:
        collector = Collector()
        collector.subscription = self.node.create_subscription(msg_type, topic, collector, qos)
        return collector

    def unsubscribe(self, collector: Collector) -> None:
        self.node.destroy_subscription(collector.subscription)

    def publisher(self, msg_type, topic: str, qos):
        return self.node.create_publisher(msg_type, topic, qos)

    def call(self, srv_type, name: str, request, timeout: float = TIMEOUT):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                pytest.fail(f"service {name} did not appear within {timeout:.0f} s")
            future = client.call_async(request)
            wait_for(future.done, timeout, f"a response from {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def now(self):
        return self.node.get_clock().now().to_msg()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5)


class NodeProcess:
    """dann_node in its own process, output captured in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(env, RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=Path(__file__).resolve().parents[2])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        def found():
            if self.proc.poll() is not None:
                pytest.fail(f"dann_node exited with {self.proc.returncode}:\n{self.log()}")
            return re.search(pattern, self.log())
        return wait_for(found, timeout, f"node log line matching {pattern!r}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def rgb_frame(seed: int = 0, width: int = 64, height: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def image_msg(image: np.ndarray, stamp, frame_id: str, encoding: str = "rgb8"):
    from sensor_msgs.msg import Image

    from dann_ros.data.images import rgb8_to_image_fields

    height, width, enc, step, data = rgb8_to_image_fields(image, encoding)
    msg = Image(height=height, width=width, encoding=enc, step=step, data=data)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    return msg


def stream_until(publisher, make_msg: Callable[[int], Any], condition: Callable[[], Any], rate_hz: float = 20.0,
                 timeout: float = TIMEOUT, what: str = "an output"):
    """Publish make_msg(i) at rate_hz until condition() holds (best-effort inputs may drop the first)."""
    counter = iter(range(10**9))
    return wait_for(condition, timeout, what, every=lambda: publisher.publish(make_msg(next(counter))),
                    interval=1.0 / rate_hz)


def diagnostic_values(array, status_name: str) -> dict[str, str] | None:
    for status in array.status:
        if status.name == status_name:
            values = {kv.key: kv.value for kv in status.values}
            values["_level"] = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
            values["_message"] = status.message
            return values
    return None
