"""dann_ros built the ROS way: a real `colcon build` of a workspace holding the package, then
`ros2 launch` and `ros2 run` from the sourced install (what a robot's workspace does)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification

from dann_ros.paths import PACKAGE_ROOT
from ros_helpers import NO_ROS2, NodeProcess, child_pid, find_ros2, image_msg, rgb_frame, stream_until


def _colcon() -> Path | None:
    beside = Path(sys.executable).parent / "colcon"
    found = beside if beside.is_file() else shutil.which("colcon")
    return Path(found) if found else None


ROS2, COLCON = find_ros2(), _colcon()
pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.skipif(ROS2 is None, reason=NO_ROS2),
              pytest.mark.skipif(COLCON is None, reason="colcon is not installed (pip install "
                                                        "colcon-common-extensions; scripts/setup.sh does)")]

# what the package is made of (msg/vision_msgs/package.xml stays out: vision_msgs is installed already)
SOURCES = ["setup.py", "setup.cfg", "package.xml", "resource", "launch", "config", "dann_ros", "msg/vision_msgs/msg"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, ros_env):
    ws = tmp_path_factory.mktemp("colcon_ws")
    pkg = ws / "src" / "dann_ros"
    extra = [p.name for p in PACKAGE_ROOT.glob("requirements*.txt")]  # setup.py reads them
    for name in SOURCES + extra:
        src, dst = PACKAGE_ROOT / name, pkg / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    proc = subprocess.run([str(COLCON), "build", "--event-handlers", "console_cohesion+"], cwd=ws, env=ros_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"colcon build failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
    assert "Finished <<< dann_ros" in proc.stdout
    return ws


def sourced(ws: Path, command: str) -> list[str]:
    return ["bash", "-c", f"source '{ws}/install/setup.bash' && exec {command}"]


def test_install_layout_and_sourced_python_use_the_workspace(workspace, ros_env):
    install = workspace / "install" / "dann_ros"
    assert (install / "lib" / "dann_ros" / "dann_node").is_file()  # where `ros2 run` looks
    assert (install / "share" / "dann_ros" / "launch" / "dann_ros.launch.py").is_file()
    assert (install / "share" / "dann_ros" / "config" / "dann_ros.yaml").is_file()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "dann_ros").is_file()
    where = subprocess.run(sourced(workspace, f"'{sys.executable}' -c 'import dann_ros; print(dann_ros.__file__)'"),
                           env=ros_env, capture_output=True, text=True, timeout=60, cwd=workspace)
    assert where.stdout.strip().startswith(str(install)), where.stdout + where.stderr
    prefix = subprocess.run(sourced(workspace, f"'{ROS2}' pkg prefix dann_ros"), env=ros_env, capture_output=True,
                            text=True, timeout=60)
    assert prefix.stdout.strip() == str(install), prefix.stdout + prefix.stderr


@pytest.mark.parametrize("how", ["launch", "run"])
def test_launch_and_run_from_the_workspace(workspace, ros, ros_env, tiny_onnx, tmp_path, how):
    ns = f"ws_{how}"
    command = (f"'{ROS2}' launch dann_ros dann_ros.launch.py model_path:={tiny_onnx} namespace:={ns} "
               f"image:=/{ns}_cam" if how == "launch" else
               f"'{ROS2}' run dann_ros dann_node --ros-args -r __ns:=/{ns} -r image:=/{ns}_cam "
               f"-p model_path:={tiny_onnx}")
    proc = NodeProcess(sourced(workspace, command), ros_env, tmp_path / f"{how}.log", cwd=workspace)
    try:
        proc.wait_log(rf"\[{ns}\.dann_node\]: active: /{ns}_cam -> /{ns}/classification")
        if how == "launch":
            pid = child_pid(proc.log())
        else:  # ros2 run starts the executable as its child
            pid = int(Path(f"/proc/{proc.proc.pid}/task/{proc.proc.pid}/children").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        assert any(arg.startswith(str(workspace / "install")) for arg in cmdline), cmdline  # the built executable
        pub = ros.publisher(Image, f"/{ns}_cam", qos_profile_sensor_data)
        out = ros.subscribe(Classification, f"/{ns}/classification")
        stream_until(pub, lambda i: image_msg(rgb_frame(i), ros.now(), ns),
                     lambda: out.find(lambda m: m.header.frame_id == ns))
    finally:
        assert proc.stop() == 0, proc.log()
