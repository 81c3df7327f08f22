"""Humble fallbacks of dann_ros.ros.compat and the launch file, exercised by hiding the newer rclpy/launch
names (Humble itself cannot be installed here: its rclpy is built for Python 3.10 on Ubuntu 22.04)."""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import sys
from types import SimpleNamespace

import pytest

from dann_ros.paths import PACKAGE_ROOT
from dann_ros.ros import names

pytestmark = pytest.mark.ros


def _import_hiding(monkeypatch, module: str, hidden: dict[str, tuple[str, ...]]):
    """Import ``module`` afresh while ``from X import name`` fails for the given (module -> names)."""
    real_import = builtins.__import__

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
        if name in hidden and not hidden[name]:
            raise ImportError(f"No module named {name!r} (hidden: older distro)")
        if name in hidden and fromlist and set(fromlist) & set(hidden[name]):
            raise ImportError(f"cannot import {sorted(set(fromlist) & set(hidden[name]))} from {name!r} (hidden)")
        return real_import(name, globals, locals, fromlist, level)

    # a private copy of the module: the real one (in sys.modules and its package) stays as it is
    spec = importlib.util.spec_from_file_location(module + "_as_older_distro",
                                                  importlib.util.find_spec(module).origin)
    copy = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    try:
        spec.loader.exec_module(copy)
    finally:
        monkeypatch.setattr(builtins, "__import__", real_import)
    return copy


def test_humble_event_callbacks_come_from_rclpy_qos_event(monkeypatch):
    humble_like = SimpleNamespace(PublisherEventCallbacks=object, SubscriptionEventCallbacks=object)
    monkeypatch.setitem(sys.modules, "rclpy.qos_event", humble_like)
    compat = _import_hiding(monkeypatch, "dann_ros.ros.compat", {"rclpy.event_handler": ()})
    assert compat.PublisherEventCallbacks is object and compat.SubscriptionEventCallbacks is object


def test_new_distros_use_rclpy_event_handler():
    from rclpy.event_handler import SubscriptionEventCallbacks

    from dann_ros.ros import compat

    assert compat.SubscriptionEventCallbacks is SubscriptionEventCallbacks


def test_missing_external_shutdown_exception_gets_a_stand_in(monkeypatch):
    compat = _import_hiding(monkeypatch, "dann_ros.ros.compat", {"rclpy.executors": ("ExternalShutdownException",)})
    assert issubclass(compat.ExternalShutdownException, Exception)
    import rclpy.executors

    assert compat.ExternalShutdownException is not rclpy.executors.ExternalShutdownException


def test_event_callbacks_drop_keywords_the_distro_does_not_know():
    from dann_ros.ros.compat import event_callbacks

    class HumbleSubscriptionEventCallbacks:  # Humble's signature: no incompatible_type
        def __init__(self, *, deadline=None, incompatible_qos=None, liveliness=None, message_lost=None,
                     use_default_callbacks=True):
            self.incompatible_qos = incompatible_qos

    def on_qos(info):
        return info

    made = event_callbacks(HumbleSubscriptionEventCallbacks, incompatible_qos=on_qos, incompatible_type=on_qos)
    assert made.incompatible_qos is on_qos
    from rclpy.event_handler import SubscriptionEventCallbacks

    kilted = event_callbacks(SubscriptionEventCallbacks, incompatible_qos=on_qos, incompatible_type=on_qos)
    assert kilted.incompatible_type is on_qos  # kept where the distro has it


def test_lifecycle_publisher_and_topic_name_fallbacks():
    from dann_ros.ros.compat import destroy_lifecycle_publisher, resolve_topic_name

    class OldNode:  # an rclpy node without destroy_lifecycle_publisher / resolve_topic_name
        def __init__(self):
            self._managed_entities = {"pub", "other"}
            self.destroyed = []

        def destroy_publisher(self, pub):
            self.destroyed.append(pub)

        def get_name(self):
            return "dann_node"

        def get_namespace(self):
            return "/front"

    node = OldNode()
    destroy_lifecycle_publisher(node, "pub")
    assert node.destroyed == ["pub"] and node._managed_entities == {"other"}
    assert resolve_topic_name(node, "image") == "/front/image"
    assert resolve_topic_name(node, f"~/{names.OVERLAY}") == f"/front/dann_node/{names.OVERLAY}"


def test_lifecycle_publisher_fallback_on_a_real_node():
    import rclpy
    from rclpy.lifecycle import LifecycleNode
    from std_msgs.msg import String

    from dann_ros.ros.compat import destroy_lifecycle_publisher, try_shutdown

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=_domain())
    try:
        node = LifecycleNode("compat_check", context=context)
        pub = node.create_lifecycle_publisher(String, "t", 1)
        assert pub in node._managed_entities
        destroy_lifecycle_publisher(node, pub)
        assert pub not in node._managed_entities and pub not in node.publishers
        node.destroy_node()
    finally:
        try_shutdown(context)
    assert not context.ok()


def _domain() -> int:
    from dann_ros.ros.env import claim_domain_id

    return claim_domain_id()


@pytest.mark.filterwarnings("ignore:The 'LaunchConfigurationEquals':UserWarning")
def test_launch_file_uses_humble_conditions_without_equals_substitution(monkeypatch):
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (no ROS sourced, no shared/third_party)")
    path = PACKAGE_ROOT / "launch" / "dann_ros.launch.py"
    spec = importlib.util.spec_from_file_location("dann_ros_launch_humble", path)
    module = importlib.util.module_from_spec(spec)
    real_import = builtins.__import__

    def no_equals(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "launch.substitutions" and fromlist and "EqualsSubstitution" in fromlist:
            raise ImportError("cannot import name 'EqualsSubstitution' (Humble)")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_equals)
    spec.loader.exec_module(module)
    monkeypatch.setattr(builtins, "__import__", real_import)
    from launch.conditions import LaunchConfigurationEquals, LaunchConfigurationNotEquals

    assert isinstance(module._equals("model_path", ""), LaunchConfigurationEquals)
    assert isinstance(module._equals("dds_profile", "none", equal=False), LaunchConfigurationNotEquals)
    assert module.generate_launch_description().entities  # builds with the Humble conditions
