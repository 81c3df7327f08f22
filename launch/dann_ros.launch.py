"""Start dann_node with a parameters file, a namespace, the input remapped and a Fast DDS profile.

    ros2 launch dann_ros dann_ros.launch.py model_path:=/models/model.onnx \\
        namespace:=front image:=/camera/image_raw [params_file:=my.yaml] [dds_profile:=none]

Launch arguments (all can be overridden by a robot's bring-up that includes this file):
  model_path    model file (.engine/.onnx/.pt); empty (default) keeps params_file's model_path
  namespace     node namespace; outputs go to <namespace>/classification, label_info, overlay
  image         what the input topic 'image' is remapped to (e.g. /camera/image_raw)
  params_file   parameters file (default: the package's config/dann_ros.yaml)
  use_sim_time  use /clock (bag replay with --clock)
  dds_profile   Fast DDS XML profile for the node's FASTDDS_DEFAULT_PROFILES_FILE (default: the
                package's config/fastdds_shm.xml, a 16 MB shared-memory segment for raw frames);
                none = leave FASTDDS_DEFAULT_PROFILES_FILE as it is. Processes that exchange raw
                frames with the node should use the same profile. Set for the node only (scoped).

Included from a bring-up launch file:

    IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution(
            [FindPackageShare('dann_ros'), 'launch', 'dann_ros.launch.py'])),
        launch_arguments={'model_path': '/models/model.onnx', 'namespace': 'front',
                          'image': '/front_camera/image_raw'}.items())

Runs on Humble, Jazzy and Kilted: EqualsSubstitution (Iron and later) falls back to Humble's
LaunchConfigurationEquals conditions.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

try:  # Iron, Jazzy, Kilted
    from launch.conditions import IfCondition, UnlessCondition
    from launch.substitutions import EqualsSubstitution

    def _equals(name: str, value: str, equal: bool = True):
        equals = EqualsSubstitution(LaunchConfiguration(name), value)
        return IfCondition(equals) if equal else UnlessCondition(equals)
except ImportError:  # Humble
    from launch.conditions import LaunchConfigurationEquals, LaunchConfigurationNotEquals

    def _equals(name: str, value: str, equal: bool = True):
        return (LaunchConfigurationEquals if equal else LaunchConfigurationNotEquals)(name, value)


def _dann_node(overrides: dict, condition) -> Node:
    return Node(
        package="dann_ros",
        executable="dann_node",
        name="dann_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"),
                    {"use_sim_time": LaunchConfiguration("use_sim_time"), **overrides}],
        remappings=[("image", LaunchConfiguration("image"))],
        output="screen",
        emulate_tty=True,
        condition=condition,
    )


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare("dann_ros"), "config"])
    return LaunchDescription([
        DeclareLaunchArgument("model_path", default_value="",
                              description="model file (.engine/.onnx/.pt); empty keeps params_file's value"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("image", default_value="image",
                              description="topic the node's input 'image' is remapped to"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([config, "dann_ros.yaml"]),
                              description="parameters file"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument("dds_profile", default_value=PathJoinSubstitution([config, "fastdds_shm.xml"]),
                              description="Fast DDS XML profile for the node (none = leave the environment)"),
        GroupAction(scoped=True, actions=[  # scoped: the profile is set for this node only
            SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile"),
                                   condition=_equals("dds_profile", "none", equal=False)),
            # one node: the model_path override applies only when the argument is given
            _dann_node({"model_path": LaunchConfiguration("model_path")}, _equals("model_path", "", equal=False)),
            _dann_node({}, _equals("model_path", "")),
        ]),
    ])
