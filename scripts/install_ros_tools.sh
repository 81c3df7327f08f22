#!/usr/bin/env bash
# Install ROS 2's own command-line and launch tools (`ros2`, `ros2 launch|run|topic|param|
# lifecycle|node|pkg|service`, launch, launch_ros, rosidl_runtime_py) into a venv that has the
# ROS 2 wheels, from the unmodified upstream sources in shared/third_party (README there).
# They have no wheels; on a robot they come with ROS. The tests use them to run what users type.
#
# Usage: scripts/install_ros_tools.sh VENV THIRD_PARTY_DIR BUILD_DIR
#   (scripts/setup.sh calls it for .venv, scripts/setup_jazzy.sh for the Jazzy venv)
# composition_interfaces (launch_ros imports it) is built with the venv's rosidl wheels, like
# msg/vision_msgs; the cmake fix-ups of the wheels were done by scripts/build_vision_msgs.sh.
set -euo pipefail

VENV="$(realpath "$1")"
TP="$(realpath "$2")"
BUILD="$3"
PY="$VENV/bin/python"

rm -rf "$BUILD"
mkdir -p "$BUILD/src"
for tarball in ros2-launch ros2-launch_ros ros2-ros2cli ros2-rosidl_runtime_py \
    ros2-rcl_interfaces-composition_interfaces; do
    mkdir -p "$BUILD/src/$tarball"
    tar -xzf "$TP/$tarball.tar.gz" -C "$BUILD/src/$tarball"
done

# the tools' PyPI dependencies (pure Python), and colcon to build a workspace in the tests
"$PY" -m pip install --disable-pip-version-check -q osrf-pycommon lark argcomplete psutil colcon-common-extensions

# order: each after what it imports at install time
pkgs=(
    ros2-rosidl_runtime_py
    ros2-launch/launch ros2-launch/launch_xml ros2-launch/launch_yaml
    ros2-ros2cli/ros2cli ros2-ros2cli/ros2pkg ros2-ros2cli/ros2run ros2-ros2cli/ros2node
    ros2-ros2cli/ros2topic ros2-ros2cli/ros2service ros2-ros2cli/ros2param ros2-ros2cli/ros2lifecycle
    ros2-launch_ros/launch_ros ros2-launch_ros/ros2launch
)
args=()
for p in "${pkgs[@]}"; do args+=("$BUILD/src/$p"); done
# --no-deps: their install_requires name ROS packages that the wheels provide under other names
"$PY" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation "${args[@]}"

# composition_interfaces (.srv) with rosidl, installed into the venv prefix
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
cmake -S "$BUILD/src/ros2-rcl_interfaces-composition_interfaces/composition_interfaces" \
    -B "$BUILD/composition_interfaces" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF
cmake --build "$BUILD/composition_interfaces" -j "$(nproc)"
cmake --install "$BUILD/composition_interfaces"

# the check: the command lists its verbs and launch_ros imports
cd "$BUILD"
"$PY" -c 'import composition_interfaces.srv, launch_ros.actions, rosidl_runtime_py; print("launch_ros OK")'
"$VENV/bin/colcon" --log-base /dev/null build --help >/dev/null
"$VENV/bin/ros2" --help | grep -E '^  (launch|lifecycle|param|run|topic) ' | wc -l | grep -qx 5 ||
    { echo "ros2 --help does not list launch, lifecycle, param, run and topic"; exit 1; }
echo "ros2 tools OK"
