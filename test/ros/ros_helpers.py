"""Helpers of the ROS tests: an isolated DDS domain per test module, dann_node in its own process.

Each module that uses ``ros`` claims its own ROS_DOMAIN_ID (dann_ros.ros.env, flock-based, so
pytest-xdist workers and parallel runs never share one) with discovery limited to localhost,
and sets it in this process before rclpy.init. The node runs as ``python -m dann_ros.ros.node``
with node_arguments(...): exactly what launch/dann_ros.launch.py passes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dann_ros.ros.env import ROS_ENV_KEYS as _ENV_KEYS  # noqa: F401  (used by conftest.py)
import rclpy
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor

TIMEOUT = 60.0  # discovery and first frames on a loaded 2-core machine (a deadline, not a measurement)


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
    """This process's side: a node spun by a background executor, in the module's domain.

    Tests create and destroy subscriptions and clients from their own thread while the executor
    waits in another; ``_entities`` keeps the two apart, and the spin loop outlives an entity
    destroyed between its wait and its take (rclpy may raise there, and a silently dead spin
    thread used to starve every later test of messages).
    """

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.env = env
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._entities = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            with self._entities:
                try:
                    self.executor.spin_once(timeout_sec=0.05)
                except (ShutdownException, ExternalShutdownException):  # close()
                    return
                except Exception:  # keep serving the other subscriptions
                    pass

    def subscribe(self, msg_type, topic: str, qos=10) -> Collector:
        collector = Collector()
        with self._entities:
            collector.subscription = self.node.create_subscription(msg_type, topic, collector, qos)
        return collector

    def unsubscribe(self, collector: Collector) -> None:
        with self._entities:
            self.node.destroy_subscription(collector.subscription)

    def publisher(self, msg_type, topic: str, qos):
        with self._entities:
            return self.node.create_publisher(msg_type, topic, qos)

    def call(self, srv_type, name: str, request, timeout: float = TIMEOUT, resend_after: float | None = None):
        """``resend_after`` (idempotent requests only): send again when no response came within that many
        seconds. A client seen by the service before the service has matched the client's response reader
        loses the response (a DDS discovery race of a node that has just started)."""
        with self._entities:
            client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                pytest.fail(f"service {name} did not appear within {timeout:.0f} s")
            deadline = time.monotonic() + timeout
            while True:
                future = client.call_async(request)
                wait = timeout if resend_after is None else min(resend_after, deadline - time.monotonic())
                try:
                    wait_for(future.done, max(wait, 0.0), f"a response from {name}")
                    return future.result()
                except pytest.fail.Exception:
                    if resend_after is None or time.monotonic() >= deadline:
                        raise
                    client.remove_pending_request(future)
        finally:
            with self._entities:
                self.node.destroy_client(client)

    def now(self):
        return self.node.get_clock().now().to_msg()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)  # the spin loop's next spin_once raises ShutdownException
        self._thread.join(timeout=5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class NodeProcess:
    """dann_node (or ``ros2 launch``/``ros2 run`` starting it) in its own process group, output in a log file.

    stop() sends SIGINT to the whole group, as Ctrl-C in a terminal does, so a launch process and
    the node it started both get it; whatever is left after 10 s is killed.
    """

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        # PYTHONFAULTHANDLER: a hung node's SIGABRT (stop()) prints every thread's Python stack into the log
        env = dict(env, RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
                   PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=cwd or Path(__file__).resolve().parents[2], start_new_session=True)

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
            self._signal_group(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:  # shown with the failing test: where the node hung
                self._signal_group(signal.SIGABRT)  # the stacks of the Python processes still there, into the log
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                print(f"{self.log_path}: no exit within 10 s of SIGINT; aborted. Its log:\n{self.log()[-12000:]}")
                self._signal_group(signal.SIGKILL)
                self.proc.wait(5)
        self._signal_group(signal.SIGKILL)  # children the group leader left behind
        self._log.close()
        return self.proc.returncode

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


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


# ---------------------------------------------------------------- the real ros2 command
def find_ros2() -> Path | None:
    """The ``ros2`` command: this interpreter's venv (scripts/setup.sh installs it there), else PATH."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / "ros2"
    if beside.is_file():
        return beside
    found = shutil.which("ros2")
    return Path(found) if found else None


NO_ROS2 = ("the ros2 command is not installed: no ROS 2 is sourced and no shared/third_party lies beside "
           "the checkout (../shared, or DANN_ROS_THIRD_PARTY) for scripts/setup.sh to install it from")


class Ros2Cli:
    """Runs ``ros2 ...`` as a user would, in the test module's domain.

    The verbs that discover nodes through the ros2 daemon (param, lifecycle) start one for the
    domain on first use; close() stops it so no daemon outlives the tests.
    """

    def __init__(self, ros2: Path, env: dict[str, str]) -> None:
        self.ros2, self.env = ros2, dict(env, PYTHONUNBUFFERED="1")

    def run(self, *args: str, timeout: float = TIMEOUT, check: bool = True) -> str:
        proc = subprocess.run([str(self.ros2), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=Path(__file__).resolve().parents[2])
        out = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            pytest.fail(f"ros2 {' '.join(args)} exited with {proc.returncode}:\n{out}")
        return out

    def run_until(self, *args: str, expect: str, timeout: float = TIMEOUT) -> str:
        """Repeat ``ros2 args`` until its output matches ``expect`` (discovery takes a moment)."""
        outputs: list[str] = []

        def matched():
            outputs.append(self.run(*args, check=False))
            return re.search(expect, outputs[-1])

        try:
            wait_for(matched, timeout, f"'ros2 {' '.join(args)}' to print {expect!r}", interval=0.5)
        except pytest.fail.Exception:
            pytest.fail(f"'ros2 {' '.join(args)}' never printed {expect!r}; last output:\n"
                        f"{outputs[-1] if outputs else ''}")
        return outputs[-1]

    def start(self, *args: str, log_path: Path, cwd: Path | None = None) -> NodeProcess:
        return NodeProcess([str(self.ros2), *args], self.env, log_path, cwd=cwd)

    def close(self) -> None:
        try:
            self.run("daemon", "stop", check=False, timeout=20)
        except subprocess.TimeoutExpired:
            pass


def child_pid(launch_log: str, name: str = "dann_node") -> int:
    """The pid ``ros2 launch`` reports for the process it started ('[dann_node-1]: process started with pid [N]')."""
    match = re.search(rf"\[{re.escape(name)}-\d+\]: process started with pid \[(\d+)\]", launch_log)
    assert match, f"no 'process started' line for {name} in the launch output:\n{launch_log}"
    return int(match.group(1))


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")
