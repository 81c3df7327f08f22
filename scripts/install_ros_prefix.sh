#!/usr/bin/env bash
# Make a venv holding dann_ros (editable) a ROS 2 prefix for it, as a colcon install would be:
# - share/dann_ros (package.xml, launch/, config/) as real folders of links to each file: edits
#   show at once, and `ros2 launch` finds the launch file (it walks share/dann_ros with os.walk,
#   which does not enter a linked folder); an editable install skips setup.py's data_files;
# - the ament index entry, and lib/dann_ros/dann_node, where `ros2 run dann_ros dann_node` looks;
# - a .pth file that puts the venv on AMENT_PREFIX_PATH in every Python process of the venv
#   (what sourcing a ROS workspace does), so ament_index, `ros2 launch` and `ros2 run` find it.
# Usage: scripts/install_ros_prefix.sh VENV   (scripts/setup.sh and scripts/setup_jazzy.sh call it)
set -euo pipefail

VENV="$(realpath "$1")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
share="$VENV/share/dann_ros"
index="$VENV/share/ament_index/resource_index/packages"

rm -rf "$share" "$VENV/lib/dann_ros"
mkdir -p "$share/launch" "$share/config" "$index" "$VENV/lib/dann_ros"
ln -sfn "$ROOT/resource/dann_ros" "$index/dann_ros"
ln -sfn "$ROOT/package.xml" "$share/package.xml"
for f in launch/*.py config/*; do
    if [[ -f $f ]]; then ln -sfn "$ROOT/$f" "$share/$f"; fi
done
ln -sfn "$VENV/bin/dann_node" "$VENV/lib/dann_ros/dann_node"
sp="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat >"$sp/dann_ros_ament_prefix.pth" <<'PTH'
import os, sys; _p = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]; sys.prefix in _p or os.environ.__setitem__('AMENT_PREFIX_PATH', os.pathsep.join([sys.prefix] + _p))
PTH
