"""dann_node's main on a signal that lands while the executor builds its wait set (a race that made
`ros2 run`'s Ctrl-C exit 1 with a traceback now and then): the stop is clean, a real error is not hidden."""

from __future__ import annotations

import subprocess
import sys

import pytest

# one process per case: main() calls rclpy.init on the default context, which the test process's own
# rclpy may hold. The race made deterministic: spin_once() shuts the context down, then fails as rclpy's
# executor does when it builds a wait set on that context.
SCRIPT = """
import sys
import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import SingleThreadedExecutor
from dann_ros.ros import node

def spin_once(self, timeout_sec=None):
    if sys.argv[1] == "shutdown":
        rclpy.shutdown()
    raise RCLError("failed to initialize wait set: the given context is not valid")

SingleThreadedExecutor.spin_once = spin_once
sys.exit(node.main(["dann_node", "--ros-args", "-r", "__ns:=/shutdown_race", "-p", "model_path:=" + sys.argv[2]]))
"""


@pytest.mark.parametrize("case", ["shutdown", "error"])
def test_a_signal_during_spin_is_a_clean_stop_and_a_real_error_is_not(ros_env, tiny_onnx, case):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, case, str(tiny_onnx)], env=ros_env, capture_output=True,
                          text=True, timeout=120)
    if case == "shutdown":
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
    else:  # the context still up: the error is the node's, and it must show
        assert proc.returncode == 1 and "RCLError" in proc.stderr and "context is not valid" in proc.stderr
