"""What users type, with the real ROS 2 tools: ros2 launch (namespace, remap, params_file, dds_profile,
included from a bring-up launch file), ros2 run, ros2 lifecycle get/set, ros2 param get/set and
ros2 topic echo --once, on this checkout's set-up (.venv, see scripts/setup.sh)."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification

from ros_helpers import NO_ROS2, Ros2Cli, child_pid, find_ros2, image_msg, process_env, rgb_frame, stream_until

ROS2 = find_ros2()
pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.skipif(ROS2 is None, reason=NO_ROS2)]

NS = "/cli"
NODE = f"{NS}/dann_node"
CAMERA = "/cli_cam/image_raw"


@pytest.fixture(scope="module")
def cli(ros_env):
    runner = Ros2Cli(ROS2, ros_env)
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("params") / "front_camera.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"top_k": 3, "publish_overlay": False}}}))
    return path


@pytest.fixture(scope="module")
def dds_profile(tmp_path_factory):
    from dann_ros.ros.env import fastdds_shm_profile

    path = tmp_path_factory.mktemp("dds") / "robot_fastdds.xml"
    path.write_text(fastdds_shm_profile().read_text())
    return path


def launch(cli, model, params_file, dds_profile, log_dir, namespace: str, camera: str):
    proc = cli.start("launch", "dann_ros", "dann_ros.launch.py", f"model_path:={model}", f"namespace:={namespace}",
                     f"image:={camera}", f"params_file:={params_file}", f"dds_profile:={dds_profile}",
                     log_path=log_dir / "launch.log")
    proc.wait_log(rf"\[{namespace}\.dann_node\]: active: {camera} -> /{namespace}/classification")
    return proc


@pytest.fixture(scope="module")
def launched(cli, tiny_onnx, params_file, dds_profile, tmp_path_factory):
    """A launched node the tests only read from: none may change its parameters or state."""
    proc = launch(cli, tiny_onnx, params_file, dds_profile, tmp_path_factory.mktemp("launch"), "cli", CAMERA)
    yield proc
    assert proc.stop() == 0, proc.log()  # Ctrl-C: launch and node shut down cleanly


def frames(ros, publisher, out, frame_id: str):
    return stream_until(publisher, lambda i: image_msg(rgb_frame(i), ros.now(), frame_id),
                        lambda: out.find(lambda m: m.header.frame_id == frame_id), what=f"an output for {frame_id}")


def test_launch_applies_namespace_remap_params_file_and_dds_profile(ros, launched, dds_profile):
    env = process_env(child_pid(launched.log()))
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(dds_profile)
    pub = ros.publisher(Image, CAMERA, qos_profile_sensor_data)
    out = ros.subscribe(Classification, f"{NS}/classification")
    msg = frames(ros, pub, out, "launched")
    assert len(msg.results) == 3  # top_k from params_file (the package default is 5)


def test_param_get_and_topic_echo_once(ros, cli, launched, tiny_onnx):
    assert "Integer value is: 3" in cli.run_until("param", "get", NODE, "top_k", expect="Integer value is")
    got = cli.run_until("param", "get", NODE, "model_path", expect="String value is")
    assert f"String value is: {tiny_onnx}" in got
    pub = ros.publisher(Image, CAMERA, qos_profile_sensor_data)
    echo = cli.start("topic", "echo", "--once", f"{NS}/classification", "vision_msgs/msg/Classification",
                     log_path=launched.log_path.with_name("echo.log"))
    stream_until(pub, lambda i: image_msg(rgb_frame(i), ros.now(), "echoed"), lambda: echo.proc.poll() is not None,
                 what="ros2 topic echo --once to print a message and exit")
    text = echo.log()
    assert echo.stop() == 0, text
    assert "frame_id: echoed" in text and "class_id:" in text and "score:" in text


def test_lifecycle_get_set_and_param_set_take_effect_at_configure(ros, cli, tiny_onnx, params_file, dds_profile,
                                                                   tmp_path):
    """On a node of its own: it sets top_k and cycles the lifecycle, which the shared node must not see."""
    ns, camera = "cli_lc", "/cli_lc_cam/image_raw"
    node, output = f"/{ns}/dann_node", f"/{ns}/classification"
    proc = launch(cli, tiny_onnx, params_file, dds_profile, tmp_path, ns, camera)
    try:
        assert cli.run_until("lifecycle", "get", node, expect=r"active \[3\]").strip().endswith("active [3]")
        assert "Set parameter successful" in cli.run_until("param", "set", node, "top_k", "2", expect="Set parameter")
        pub = ros.publisher(Image, camera, qos_profile_sensor_data)
        out = ros.subscribe(Classification, output)
        # lifecycle publishers: they exist while inactive (subscribers stay matched) and go at cleanup
        publishers = {"inactive [2]": "Publisher count: 1", "unconfigured [1]": "Publisher count: 0"}
        for transition, state in (("deactivate", "inactive [2]"), ("cleanup", "unconfigured [1]"),
                                  ("configure", "inactive [2]"), ("activate", "active [3]")):
            assert "Transitioning successful" in cli.run_until("lifecycle", "set", node, transition,
                                                               expect="Transitioning")
            assert cli.run_until("lifecycle", "get", node, expect=re.escape(state)).strip() == state
            if transition in ("deactivate", "cleanup"):
                cli.run_until("topic", "info", output, expect=publishers[state])
        assert len(frames(ros, pub, out, "reconfigured").results) == 2  # the new top_k
    finally:
        assert proc.stop() == 0, proc.log()


def test_ros2_run(ros, cli, tiny_onnx, tmp_path):
    proc = cli.start("run", "dann_ros", "dann_node", "--ros-args", "-r", "__ns:=/run", "-r", "image:=/run_cam",
                     "-p", f"model_path:={tiny_onnx}", log_path=tmp_path / "run.log")
    try:
        proc.wait_log(r"\[run\.dann_node\]: active: /run_cam -> /run/classification")
        pub = ros.publisher(Image, "/run_cam", qos_profile_sensor_data)
        out = ros.subscribe(Classification, "/run/classification")
        assert len(frames(ros, pub, out, "run").results) == 5  # the package's config default
    finally:
        assert proc.stop() == 0, proc.log()


def test_included_from_a_bringup_launch_file(ros, cli, tiny_onnx, tmp_path):
    """A robot's bring-up includes the launch file under its own namespace and overrides the
    arguments; model_path comes from its params_file (the launch argument left empty)."""
    params = tmp_path / "robot.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"model_path": str(tiny_onnx), "top_k": 1}}}))
    bringup = tmp_path / "robot_bringup.launch.py"
    bringup.write_text(textwrap.dedent(f"""
        from launch import LaunchDescription
        from launch.actions import GroupAction, IncludeLaunchDescription
        from launch.launch_description_sources import PythonLaunchDescriptionSource
        from launch.substitutions import PathJoinSubstitution
        from launch_ros.actions import PushRosNamespace
        from launch_ros.substitutions import FindPackageShare


        def generate_launch_description():
            return LaunchDescription([GroupAction([
                PushRosNamespace('robot'),
                IncludeLaunchDescription(
                    PythonLaunchDescriptionSource(PathJoinSubstitution(
                        [FindPackageShare('dann_ros'), 'launch', 'dann_ros.launch.py'])),
                    launch_arguments={{'namespace': 'front', 'image': '/robot/front_camera/image_raw',
                                      'params_file': {str(params)!r}, 'dds_profile': 'none'}}.items()),
            ])])
    """))
    proc = cli.start("launch", str(bringup), log_path=tmp_path / "bringup.log")
    try:
        proc.wait_log(r"\[robot\.front\.dann_node\]: active: /robot/front_camera/image_raw -> "
                      r"/robot/front/classification")
        env = process_env(child_pid(proc.log()))
        assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == cli.env["FASTDDS_DEFAULT_PROFILES_FILE"]  # 'none': inherited
        pub = ros.publisher(Image, "/robot/front_camera/image_raw", qos_profile_sensor_data)
        out = ros.subscribe(Classification, "/robot/front/classification")
        assert len(frames(ros, pub, out, "bringup").results) == 1
    finally:
        assert proc.stop() == 0, proc.log()
