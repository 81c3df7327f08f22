"""dann_node: a lifecycle node that runs a dann_ros model on camera topics.

configure  loads the model (engine, ONNX or checkpoint through Predictor.load), checks the
           parameters and creates the output publishers; a missing or unusable model fails
           the transition with the reason logged.
activate   checks the model file is still the one configure loaded (else it fails, see
           model_file.py), enables the publishers, subscribes to the cameras and publishes
           label_info. A failed activate leaves the node inactive, the reason in the log and
           in /diagnostics.
deactivate unsubscribes and stops the worker; cleanup drops the publishers and the model.
With ``autostart`` (default) the node configures and activates itself at start.

Outputs are lifecycle publishers (create_lifecycle_publisher): they exist from configure on, so
subscribers match before activation, and publish only while active. /diagnostics is a plain
publisher on purpose: it reports the node's state, "inactive" included.
Distribution differences (Humble, Jazzy, Kilted) are handled in compat.py.

Threading: subscription callbacks only put the message into a one-slot-per-camera buffer
(newest frame wins, overwritten frames count as drops) and wake a worker thread, which
decodes, runs the model on all pending cameras as one batch and publishes. The executor is
never blocked by inference, and nothing queues up beyond one frame per camera. An inference
call that raises is counted per camera and the worker goes on; one that does not return
within ``inference_timeout`` is reported by the diagnostics timer (which runs on the
executor, not the worker) while the frames arriving meanwhile are dropped.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from dann_ros.data.images import FrameDecodeError, message_to_rgb8
from dann_ros.ros import qos
from dann_ros.ros.compat import (ExternalShutdownException, PublisherEventCallbacks, SubscriptionEventCallbacks,
                                 destroy_lifecycle_publisher, event_callbacks, resolve_topic_name, try_shutdown)
from dann_ros.ros.arguments import NODE_NAME
from dann_ros.ros.cdr import CdrError, view
from dann_ros.ros.diagnostics import (ERROR, OK, CameraMonitor, CameraStats, camera_status, monitor_kind,
                                      to_status)
from dann_ros.ros.frames import Frame, LatestFrames
from dann_ros.ros.model_file import ModelFile
from dann_ros.ros.names import DIAGNOSTICS, LABEL_INFO, OVERLAY
from dann_ros.ros.overlay import image_message
from dann_ros.ros.params import NodeParams, ParameterError, declare_parameters, read_parameters
from dann_ros.ros.topics import CameraTopics, camera_topics

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


class ThrottledWarning:
    """Log a problem the first time, on each new kind of reason, then at most every ``period_s``."""

    def __init__(self, logger, what: str, period_s: float = 30.0) -> None:
        self._logger, self._what, self._period = logger, what, period_s
        self._kinds: set[str] = set()
        self._last = -float("inf")
        self._suppressed = 0
        self._lock = threading.Lock()

    def __call__(self, reason: str) -> None:
        kind = re.sub(r"\b[0-9a-f]{4,}\b|\d+", "N", reason)  # sizes, offsets, hex dumps: one kind
        now = time.monotonic()
        with self._lock:
            new_kind = kind not in self._kinds and len(self._kinds) < 32
            if not new_kind and now - self._last < self._period:
                self._suppressed += 1
                return
            self._kinds.add(kind)
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        more = f" ({suppressed} more since the last message)" if suppressed else ""
        self._logger.warning(f"{self._what}: {reason}{more}")


@dataclass
class Camera:
    topics: CameraTopics
    name: str  # the resolved input topic, for logs and diagnostics
    stats: CameraStats = field(default_factory=CameraStats)
    monitor: CameraMonitor | None = None
    skip_log: Any = None
    sub: Any = None
    result_pub: Any = None
    overlay_pub: Any = None
    label_pub: Any = None


class DannNode(LifecycleNode):
    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self.params: NodeParams | None = None
        self.predictor = None
        self.handler = None
        self.cameras: list[Camera] = []
        self.active = False
        self._frames: LatestFrames | None = None
        self._worker: threading.Thread | None = None
        self._diag_pub = None
        self._diag_timer = None
        self._diag_last = time.monotonic()
        self._output_qos_events = 0
        self._worker_error = ThrottledWarning(self.get_logger(), "inference worker")
        self._model_file: ModelFile | None = None
        self._active_since = time.monotonic()
        self._infer_started: float | None = None  # time.monotonic() of the running inference call
        self._stall_reported: float | None = None  # _infer_started of the call last reported stuck
        self._stalls = 0
        self._transition_error = ""  # why the last activate failed, for /diagnostics

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return self._configure()
        except Exception:  # rclpy would turn it into a silent ERROR transition
            self.get_logger().error(f"configure failed:\n{traceback.format_exc()}")
            self._release()
            return FAILURE

    def _configure(self) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            params = read_parameters(self)
            topics = camera_topics(params.input_topics, params.compressed)
        except (ParameterError, ValueError) as exc:
            log.error(f"configure failed: {exc}")
            return FAILURE
        try:
            names = [resolve_topic_name(self, t.input) for t in topics]
        except RuntimeError as exc:  # rclpy's RCLError
            log.error(f"configure failed: parameter 'input_topics': {exc}")
            return FAILURE
        try:
            from dann_ros.runtime.predictor import Predictor

            predictor = Predictor.load(params.model_path, params.backend, params.device or None)
            model_file = ModelFile.of(params.model_path)
        except Exception as exc:  # ModelLoadError, MetadataError, backend import errors ...
            log.error(f"configure failed: cannot load model {params.model_path!r} "
                      f"(backend {params.backend}): {exc}")
            return FAILURE
        try:
            from dann_ros.ros.outputs import handler_for

            handler = handler_for(predictor.info, params.top_k, params.detection_threshold)
        except (ValueError, ImportError) as exc:
            log.error(f"configure failed: {params.model_path}: {exc}")
            return FAILURE
        self.params, self.predictor, self.handler = params, predictor, handler
        self._model_file, self._transition_error = model_file, ""
        self.cameras = [Camera(t, n, monitor=CameraMonitor.for_model(predictor.info, params.domain_shift_window,
                                                                     params.domain_shift_reference),
                               skip_log=ThrottledWarning(log, f"input {n!r}: skipped a frame"))
                        for t, n in zip(topics, names)]
        self._create_publishers()
        self._diag_pub = self.create_publisher(_msgs().DiagnosticArray, DIAGNOSTICS, qos.DIAGNOSTICS_QOS)
        self._diag_last = time.monotonic()
        self._diag_timer = self.create_timer(params.diagnostics_period, self._publish_diagnostics)
        info = predictor.info
        log.info(f"configured: {params.model_path} ({predictor.backend.name}, {info.task}, "
                 f"{len(info.classes)} classes, input {info.preprocess.input_shape}, domain monitor "
                 f"{monitor_kind(info) or 'no monitor'}); cameras: {', '.join(names)}")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        changed = self._model_file.changed() if self._model_file is not None else None
        if changed:
            self._transition_error = f"activate failed: {changed}"
            self.get_logger().error(f"activate failed: {changed} ({self._model_file.path}); the node stays "
                                    f"inactive with the model it loaded: cleanup and configure to load the file "
                                    f"now there, or restore it and activate again")
            return FAILURE
        if super().on_activate(state) != SUCCESS:  # enables the lifecycle publishers
            return FAILURE
        try:
            self._start()
        except Exception as exc:
            self._transition_error = f"activate failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(f"activate failed:\n{traceback.format_exc()}")
            self._stop()
            super().on_deactivate(state)
            return FAILURE
        self.active, self._transition_error, self._active_since = True, "", time.monotonic()
        self.get_logger().info(
            "active: " + "; ".join(f"{c.name} -> {resolve_topic_name(self, c.topics.output(self.handler.topic))}"
                                   for c in self.cameras))
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self._stop()
        self.get_logger().info("inactive: unsubscribed, worker stopped")
        return super().on_deactivate(state)  # disables the lifecycle publishers

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._release()
        self.get_logger().info("cleaned up: model released")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self._stop()
        self._release()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self._stop()
        self._release()
        return SUCCESS  # back to unconfigured

    def autostart(self) -> bool:
        """Configure + activate, as a user without a lifecycle manager expects; False if either fails."""
        if self.trigger_configure() != SUCCESS:
            self.get_logger().error("autostart: configure failed (see above); the node stays unconfigured, "
                                    "fix the parameters and trigger configure through the lifecycle services")
            return False
        if self.trigger_activate() != SUCCESS:
            self.get_logger().error("autostart: activate failed (see above)")
            return False
        return True

    # ---------------------------------------------------------------- publishers
    def _create_publishers(self) -> None:
        p, handler, msgs = self.params, self.handler, _msgs()
        pub_events = event_callbacks(PublisherEventCallbacks, incompatible_qos=self._on_output_incompatible_qos)
        for cam in self.cameras:
            out = cam.topics.output
            cam.result_pub = self.create_lifecycle_publisher(handler.msg_type, out(handler.topic), qos.RESULT_QOS,
                                                             event_callbacks=pub_events)
            if p.publish_overlay:
                cam.overlay_pub = self.create_lifecycle_publisher(msgs.Image, out(OVERLAY), qos.OVERLAY_QOS,
                                                                  event_callbacks=pub_events)
            cam.label_pub = self.create_lifecycle_publisher(msgs.LabelInfo, out(LABEL_INFO), qos.LABEL_INFO_QOS)

    def _destroy_publishers(self) -> None:
        for cam in self.cameras:
            for attr in ("result_pub", "overlay_pub", "label_pub"):
                pub = getattr(cam, attr)
                if pub is not None:
                    destroy_lifecycle_publisher(self, pub)
                    setattr(cam, attr, None)

    # ---------------------------------------------------------------- activation
    def _start(self) -> None:
        from dann_ros.ros.outputs import label_info_message

        p = self.params
        msgs = _msgs()
        in_type = msgs.CompressedImage if p.compressed else msgs.Image
        in_qos = qos.input_qos(p.qos_reliability, p.qos_depth)
        label_info = label_info_message(self.predictor.info.classes, self.get_clock().now().to_msg())
        for cam in self.cameras:
            cam.label_pub.publish(label_info)
        self._frames = LatestFrames(len(self.cameras))
        self._worker = threading.Thread(target=self._work, args=(self._frames,), name="dann_node_inference",
                                        daemon=True)
        self._worker.start()
        for cam in self.cameras:  # last: the worker and publishers are ready when frames arrive
            events = event_callbacks(
                SubscriptionEventCallbacks,
                incompatible_qos=lambda info, cam=cam: self._on_input_incompatible_qos(cam, info),
                incompatible_type=lambda info, cam=cam: self._on_input_incompatible_type(cam, info))
            # raw=True: the callback gets the serialized bytes; the worker reads them without
            # building a Python message around the pixels (see cdr.py)
            cam.sub = self.create_subscription(in_type, cam.topics.input,
                                               lambda data, i=cam.topics.index: self._on_frame(i, data),
                                               in_qos, event_callbacks=events, raw=True)

    def _stop(self) -> None:
        for cam in self.cameras:
            if cam.sub is not None:
                self.destroy_subscription(cam.sub)
                cam.sub = None
        if self._frames is not None:
            self._frames.close()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            if self._worker.is_alive():  # e.g. an inference call that never returns
                self.get_logger().error("the inference worker did not stop within 30 s; leaving it behind")
        self._frames = self._worker = None

    def _release(self) -> None:
        self._destroy_publishers()
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self.predictor = self.handler = self.params = self._model_file = None
        self.cameras = []

    # ---------------------------------------------------------------- per frame
    def _on_frame(self, index: int, data: bytes) -> None:
        frames = self._frames
        if frames is None:
            return
        self.cameras[index].stats.received(frames.put(index, data))

    def _message(self, data: bytes) -> Any:
        """Serialized input -> an object with the message's fields (pixels not copied)."""
        compressed = self.params.compressed
        try:
            return view(data, compressed)
        except CdrError:
            from rclpy.serialization import deserialize_message

            msgs = _msgs()
            return deserialize_message(data, msgs.CompressedImage if compressed else msgs.Image)

    def _work(self, frames: LatestFrames) -> None:
        while True:
            batch = frames.take(timeout=0.5)
            if batch is None:
                return
            if batch:
                try:
                    self._process(batch)
                except Exception as exc:  # never let one frame end the worker
                    self._worker_error(f"{type(exc).__name__}: {exc}")

    def _process(self, batch: list[Frame]) -> None:
        predictor, handler = self.predictor, self.handler
        prepared, kept = [], []
        for frame in batch:
            cam = self.cameras[frame.camera]
            try:
                frame.msg = self._message(frame.msg)
                image = message_to_rgb8(frame.msg, self.params.max_input_pixels)
                chw, geometry = predictor.prepare(image)
            except FrameDecodeError as exc:
                self._skip(cam, exc.reason)
                continue
            except Exception as exc:  # a message so odd that decoding itself breaks
                self._skip(cam, f"{type(exc).__name__}: {exc}")
                continue
            prepared.append(chw)
            kept.append((frame, cam, image, geometry))
        if not kept:
            return
        batch_array = prepared[0][None] if len(prepared) == 1 else np.stack(prepared)
        self._infer_started = started = time.monotonic()
        try:
            results = handler.infer(predictor, batch_array, [k[3] for k in kept],
                                    [k[2].shape[:2] for k in kept])
        except Exception as exc:
            reason = f"inference failed: {type(exc).__name__}: {exc}"
            for _, cam, _, _ in kept:
                cam.stats.inference_error(reason)
            self._worker_error(reason)
            return
        finally:
            if self._infer_started == started:
                self._infer_started = None
            if self._stall_reported == started:
                self.get_logger().warning(f"inference returned after {time.monotonic() - started:.1f} s; frames "
                                          f"that arrived meanwhile were dropped, the newest of each camera is "
                                          f"processed next")
        for (frame, cam, image, geometry), result in zip(kept, results):
            header = frame.msg.header
            cam.result_pub.publish(handler.to_message(result, header))
            done_ns = time.monotonic_ns()
            stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            age_ms = (self.get_clock().now().nanoseconds - stamp_ns) / 1e6 if stamp_ns else None
            cam.stats.published((done_ns - frame.received_ns) / 1e6, age_ms)
            if cam.monitor is not None:
                cam.monitor.add(result.domain_score, result.shift_score)
            overlay = cam.overlay_pub
            if overlay is not None and overlay.get_subscription_count() > 0:
                overlay.publish(image_message(handler.draw(image, result, geometry), header))
                cam.stats.overlay()

    def _skip(self, cam: Camera, reason: str) -> None:
        cam.stats.decode_error(reason)
        cam.skip_log(reason)

    # ---------------------------------------------------------------- QoS events
    def _on_input_incompatible_qos(self, cam: Camera, info: Any) -> None:
        cam.stats.qos_incompatible(max(1, info.total_count_change))
        policy = qos.policy_name(info.last_policy_kind)
        self.get_logger().warning(
            f"input {cam.name!r}: incompatible QoS with a publisher ({policy}): "
            f"{qos.input_hint(policy, self.params.qos_reliability if self.params else '?')}; "
            f"no frames arrive from it (events: {info.total_count})")

    def _on_input_incompatible_type(self, cam: Camera, info: Any) -> None:
        cam.stats.qos_incompatible(max(1, info.total_count_change))
        want = "sensor_msgs/CompressedImage" if self.params and self.params.compressed else "sensor_msgs/Image"
        self.get_logger().warning(f"input {cam.name!r}: a publisher of another message type is on the topic; "
                                  f"this node expects {want} (set compressed accordingly)")

    def _on_output_incompatible_qos(self, info: Any) -> None:
        self._output_qos_events += max(1, info.total_count_change)
        self.get_logger().warning(f"an output subscriber requests QoS this node does not offer "
                                  f"({qos.policy_name(info.last_policy_kind)}); it receives nothing")

    # ---------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None or self.params is None:
            return
        now = time.monotonic()
        period, self._diag_last = max(now - self._diag_last, 1e-3), now
        p, name = self.params, self.get_fully_qualified_name()
        msgs = _msgs()
        info = self.predictor.info
        model = self._model_file
        level, message = OK, "active" if self.active else "inactive"
        started = self._infer_started
        running_s = now - started if started is not None else None
        if running_s is not None and running_s >= p.inference_timeout:
            level = ERROR
            message = (f"inference has not returned for {running_s:.1f} s (inference_timeout "
                       f"{p.inference_timeout:g} s): the worker is stuck, frames are dropped")
            if self._stall_reported != started:
                self._stall_reported, self._stalls = started, self._stalls + 1
                self.get_logger().error(message + " until it returns")
        elif self._transition_error and not self.active:
            level, message = ERROR, f"inactive: {self._transition_error}"
        node_values = [("state", "active" if self.active else "inactive"),
                       ("model", model.name if model else "?"), ("model sha256", model.sha256 if model else "?"),
                       ("backend", self.predictor.backend.name), ("task", info.task),
                       ("classes", str(len(info.classes))),
                       ("input shape", "x".join(map(str, info.preprocess.input_shape))),
                       ("domain monitor", monitor_kind(info) or "no monitor"),
                       ("input qos", f"{p.qos_reliability}, depth {p.qos_depth}"),
                       ("output qos incompatible events", str(self._output_qos_events)),
                       ("inference running (s)", "idle" if running_s is None else f"{running_s:.1f}"),
                       ("inference stalls", str(self._stalls)),
                       ("last transition error", self._transition_error or "none")]
        statuses = [to_status(f"{name}: model", name, level, message, node_values)]
        for cam in self.cameras:
            last = cam.stats.last_received()
            silent_s = now - max(last, self._active_since) if last is not None else now - self._active_since
            cam_level, cam_message, values = camera_status(cam.stats.snapshot(), period, cam.monitor,
                                                           p.domain_shift_warn, p.domain_shift_error,
                                                           silent_s if self.active else None, p.input_timeout)
            if not self.active:
                cam_message = "inactive"
            elif level == ERROR and running_s is not None:
                cam_level, cam_message = ERROR, f"inference stuck for {running_s:.1f} s; {cam_message}"
            statuses.append(to_status(f"{name}: {cam.name}", name, cam_level, cam_message, values))
        array = msgs.DiagnosticArray(status=statuses)
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)


class _Msgs:
    """Message modules, imported once the node starts (vision_msgs may be missing in tools that
    only import this module for its docs)."""

    def __init__(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CompressedImage, Image
        from vision_msgs.msg import LabelInfo

        self.DiagnosticArray, self.CompressedImage, self.Image, self.LabelInfo = (
            DiagnosticArray, CompressedImage, Image, LabelInfo)


_MSGS: _Msgs | None = None


def _msgs() -> _Msgs:
    global _MSGS
    if _MSGS is None:
        _MSGS = _Msgs()
    return _MSGS


SPIN_WAIT_S = 0.5  # the longest the node waits before it looks at its context again


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=sys.argv if argv is None else argv)
    node = None
    try:
        try:
            node = DannNode()
        except Exception as exc:  # e.g. a parameter of the wrong type in the YAML file
            print(f"dann_node: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if node.get_parameter("autostart").value:
            node.autostart()
        # bounded waits, not executor.spin(): a SIGINT could leave spin() in wait_set.wait for good (CI caught
        # its stack there after a lifecycle cleanup, the context already shut down); a shut-down context ends
        # this loop within SPIN_WAIT_S
        while rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_WAIT_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # a signal that shuts the context down while the executor builds its wait set surfaces as rclpy's
        # RCLError ("the given context is not valid") instead of ExternalShutdownException: a clean stop
        # too (ros2 run's Ctrl-C exited 1 with a traceback now and then). Anything else is a real error.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.active = False
            try:
                node._stop()
                node.destroy_node()
            except Exception as exc:  # the context may already be gone after a signal
                print(f"dann_node: shutdown: {type(exc).__name__}: {exc}", file=sys.stderr)
        try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
