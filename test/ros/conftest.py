"""Fixtures of the ROS tests (helpers in ros_helpers.py): one DDS domain and node process per module."""

from __future__ import annotations

import os
import re

import pytest

from dann_ros.ros.arguments import node_command
from dann_ros.ros.env import isolated_ros_env, release_domain_id
from ros_helpers import _ENV_KEYS, NodeProcess, Ros


@pytest.fixture(scope="module")
def ros_env():
    """Claim a domain id for the module and make this process use it (rclpy.init reads the env)."""
    env = isolated_ros_env(fastdds_profile=True)
    saved = {k: os.environ.get(k) for k in _ENV_KEYS}
    for k in _ENV_KEYS:
        if k in env:
            os.environ[k] = env[k]
        else:
            os.environ.pop(k, None)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    release_domain_id(int(env["ROS_DOMAIN_ID"]))


@pytest.fixture(scope="module")
def ros(ros_env, request):
    r = Ros(ros_env, "tester_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1]))
    yield r
    r.close()


@pytest.fixture(scope="module")
def start_node(ros_env, tmp_path_factory):
    """Factory: start_node(model, namespace=..., parameters=..., ...) -> NodeProcess (stopped at module end)."""
    started: list[NodeProcess] = []

    def start(*args, **kwargs) -> NodeProcess:
        log = tmp_path_factory.mktemp("node") / "dann_node.log"
        proc = NodeProcess(node_command(*args, **kwargs), ros_env, log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


