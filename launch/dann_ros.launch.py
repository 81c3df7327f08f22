"""Start dann_node with config/dann_ros.yaml and the Fast DDS shared-memory profile.

    ros2 launch dann_ros dann_ros.launch.py model_path:=/models/model.onnx \\
        namespace:=front image:=/camera/image_raw [params_file:=my.yaml] [dds_profile:='']

The node's command line comes from dann_ros.ros.arguments.node_arguments, the same function
the tests use to start the node, so the tests check what this file runs. Launch arguments:
  model_path   model file (.engine/.onnx/.pt); empty keeps params_file's value
  namespace    node namespace; outputs go to <namespace>/classification, label_info, overlay
  image        remap the input topic 'image' (e.g. /camera/image_raw); empty = <namespace>/image
  params_file  parameters file (default: the package's config/dann_ros.yaml)
  dds_profile  Fast DDS XML profile for FASTDDS_DEFAULT_PROFILES_FILE (default: the package's
               config/fastdds_shm.xml, 16 MB SHM segment for raw frames); '' = leave unset.
               Processes that exchange raw frames with the node should use it too.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from dann_ros.ros.arguments import EXECUTABLE, default_dds_profile, default_params_file, node_arguments


def _node(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    # evaluated here rather than with launch conditions, which differ between ROS distros
    profile = arg("dds_profile")
    env = [SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile)] if profile else []
    return env + [Node(package="dann_ros", executable=EXECUTABLE, output="screen", emulate_tty=True,
                       arguments=node_arguments(model_path=arg("model_path"), namespace=arg("namespace"),
                                                image=arg("image"), params_file=arg("params_file")))]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("model_path", default_value="", description="model file (.engine/.onnx/.pt)"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("image", default_value="", description="remap the input topic 'image' to this"),
        DeclareLaunchArgument("params_file", default_value=str(default_params_file()),
                              description="parameters file"),
        DeclareLaunchArgument("dds_profile", default_value=str(default_dds_profile()),
                              description="Fast DDS XML profile ('' = leave FASTDDS_DEFAULT_PROFILES_FILE unset)"),
        OpaqueFunction(function=_node),
    ])
