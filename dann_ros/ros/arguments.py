"""How the tests and the benchmark start dann_node: ``python -m dann_ros.ros.node --ros-args ...``.

The same parameters file, overrides, namespace and remapping that launch/dann_ros.launch.py
gives the node through launch_ros; test/ros/test_ros_cli.py runs the launch file itself with
the real ``ros2 launch``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dann_ros.paths import share_file
from dann_ros.ros.env import fastdds_shm_profile

NODE_NAME = "dann_node"
EXECUTABLE = "dann_node"  # console script (setup.py) == python -m dann_ros.ros.node


def default_params_file() -> Path:
    return share_file("config", "dann_ros.yaml")


def default_dds_profile() -> Path:
    return fastdds_shm_profile()


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_value(v) for v in value) + "]"
    if isinstance(value, str):
        # YAML-quoted so a path like 0123 or 'true' stays a string
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def node_arguments(model_path: str | Path | None = None, namespace: str = "", image: str = "",
                   params_file: str | Path | None = None, node_name: str = NODE_NAME,
                   parameters: Mapping[str, Any] | None = None,
                   remappings: Mapping[str, str] | None = None) -> list[str]:
    """ROS arguments for dann_node: ``--ros-args --params-file ... -p model_path:=... -r ...``.

    ``image`` remaps the default input topic (``image:=<image>``); empty keeps it. ``params_file``
    defaults to config/dann_ros.yaml; ``parameters`` override single entries after the file.
    Empty ``model_path``/``namespace`` leave the file's value / the root namespace.
    """
    args = ["--ros-args", "-r", f"__node:={node_name}",
            "--params-file", str(params_file or default_params_file())]
    if model_path:
        args += ["-p", f"model_path:={_param_value(str(model_path))}"]
    for name, value in (parameters or {}).items():
        args += ["-p", f"{name}:={_param_value(value)}"]
    if namespace:
        args += ["-r", f"__ns:={namespace if namespace.startswith('/') else '/' + namespace}"]
    if image:
        args += ["-r", f"image:={image}"]
    for src, dst in (remappings or {}).items():
        args += ["-r", f"{src}:={dst}"]
    return args


def node_command(*args: Any, **kwargs: Any) -> list[str]:
    """The command line the tests and the benchmark run: this interpreter + node_arguments(...)."""
    return [sys.executable, "-m", "dann_ros.ros.node", *node_arguments(*args, **kwargs)]
