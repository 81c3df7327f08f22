"""The rclpy API differences between the ROS 2 distributions dann_node runs on, in one place.

Jetsons run Humble (JetPack 6) or Jazzy (JetPack 7), workstations Jazzy or Kilted. What
differs for this node, and the fallback used where the newer API is missing:
- QoS event callbacks: ``rclpy.event_handler`` (Iron and later) was ``rclpy.qos_event`` in Humble.
- ``SubscriptionEventCallbacks(incompatible_type=...)``: Iron and later; Humble has no such event,
  so the keyword is dropped there (see :func:`event_callbacks`).
- ``LifecycleNode.destroy_lifecycle_publisher``: missing in early Humble releases; the fallback
  drops the publisher from the managed entities and destroys it.
- ``Node.resolve_topic_name``: missing in early Humble releases; the fallback expands the name
  without remappings (only used for log lines and diagnostics names).
- ``rclpy.executors.ExternalShutdownException`` / ``rclpy.try_shutdown``: present from Humble
  on; kept behind fallbacks so a Galactic-era rclpy still starts and stops cleanly.
The fallbacks are exercised by test/ros/test_ros_compat.py with the newer names hidden.
"""

from __future__ import annotations

import inspect
from typing import Any

import rclpy

try:  # Iron, Jazzy, Kilted
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks  # type: ignore[no-redef]  # noqa: F401 (re-exported)

try:
    from rclpy.executors import ExternalShutdownException
except ImportError:  # older than Humble: rclpy.spin then ends with a plain RuntimeError
    class ExternalShutdownException(Exception):  # type: ignore[no-redef]
        """Stand-in that nothing raises."""


def event_callbacks(cls: type, **callbacks: Any) -> Any:
    """``cls(**callbacks)`` without the keywords this distro's ``cls`` does not know (e.g. Humble's
    SubscriptionEventCallbacks has no incompatible_type)."""
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        callbacks = {k: v for k, v in callbacks.items() if k in params}
    return cls(**callbacks)


def destroy_lifecycle_publisher(node: Any, publisher: Any) -> None:
    if hasattr(node, "destroy_lifecycle_publisher"):
        node.destroy_lifecycle_publisher(publisher)
        return
    getattr(node, "_managed_entities", set()).discard(publisher)
    node.destroy_publisher(publisher)


def resolve_topic_name(node: Any, topic: str) -> str:
    """The fully qualified name of ``topic`` as ``node`` uses it (remappings included where rclpy can)."""
    if hasattr(node, "resolve_topic_name"):
        return node.resolve_topic_name(topic)
    from rclpy.expand_topic_name import expand_topic_name

    return expand_topic_name(topic, node.get_name(), node.get_namespace())


def try_shutdown(context: Any = None) -> None:
    if hasattr(rclpy, "try_shutdown"):
        rclpy.try_shutdown(context=context)
        return
    try:
        rclpy.shutdown(context=context)
    except Exception:  # already shut down (e.g. by a signal)
        pass
