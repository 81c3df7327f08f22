#!/usr/bin/env bash
# Set-up of the Jazzy test leg (`make test-jazzy`): a second venv, .cache/venv-jazzy, with the
# ROS 2 Jazzy wheels (ros-jazzy-*: rclpy 7.1.x, as on a JetPack 7 robot), the robot-side runtime
# without torch (requirements-jazzy.txt), dann_ros (editable, same checkout) as a ROS prefix,
# vision_msgs and composition_interfaces built with Jazzy's rosidl, and the ROS 2 tools from
# shared/third_party. Idempotent and stamp-keyed like scripts/setup.sh; log: .cache/setup-jazzy.log.
# Environment: JAZZY_VENV (default .cache/venv-jazzy), PYTHON (interpreter for a new venv, 3.11:
# the Jazzy rclpy wheels are cp311), DANN_ROS_THIRD_PARTY (default ../shared/third_party).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${JAZZY_VENV:-$ROOT/.cache/venv-jazzy}"
CACHE="$ROOT/.cache"
STAMPS="$VENV/.setup-stamps"
LOG="$CACHE/setup-jazzy.log"
THIRD_PARTY="${DANN_ROS_THIRD_PARTY:-$ROOT/../shared/third_party}"
START=$SECONDS

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
mkdir -p "$CACHE"

# --- 1. venv -------------------------------------------------------------------------------
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    PY="${PYTHON:-python3}"
    "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
        die "the Jazzy leg needs Python 3.11 (the ros-jazzy rclpy wheels are cp311); run with PYTHON=/path/to/python3.11."
    rm -rf "$VENV"
    step "jazzy: creating $VENV"
    run_logged "$PY" -m venv "$VENV" || die "could not create $VENV (see .cache/setup-jazzy.log)."
fi
PYV=3.11

# --- 2. requirements-jazzy.txt ---------------------------------------------------------------
key_req="$(hash_files requirements-jazzy.txt requirements-runtime.txt)"
if ! stamp_ok requirements "$key_req"; then
    step "jazzy: installing requirements-jazzy.txt (ROS 2 Jazzy wheels, runtime without torch; about 1 min)"
    if ! run_logged "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements-jazzy.txt; then
        pip_failure_hint
        die "pip could not install requirements-jazzy.txt (full log: .cache/setup-jazzy.log)."
    fi
    "$VENV/bin/python" -c 'import rclpy.lifecycle, importlib.metadata as m, sys
v = m.version("ros-rclpy"); sys.exit(0 if v.startswith("7.1.") else "ros-rclpy %s is not Jazzy (7.1.x)" % v)' ||
        die "the Jazzy venv did not get Jazzy's rclpy (see above)."
    stamp_set requirements "$key_req"
fi
ros_wheels="$(cd "$VENV/lib/python$PYV/site-packages" && printf '%s\n' ros_*.dist-info | sha256sum | cut -c1-16)"

# --- 3. dann_ros (editable) as a ROS prefix --------------------------------------------------
key_pkg="$(hash_files setup.py setup.cfg package.xml scripts/install_ros_prefix.sh)-$(ls launch config | sha256sum | cut -c1-16)-$key_req"
if ! stamp_ok package "$key_pkg" || [[ ! -x "$VENV/lib/dann_ros/dann_node" ]]; then
    step "jazzy: installing dann_ros (pip install -e .)"
    run_logged "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . ||
        die "'pip install -e .' into the Jazzy venv failed (full log: .cache/setup-jazzy.log)."
    run_logged bash "$ROOT/scripts/install_ros_prefix.sh" "$VENV" || die "installing the ROS prefix files failed."
    stamp_set package "$key_pkg"
fi

# --- 4. vision_msgs, built with Jazzy's rosidl -----------------------------------------------
key_vm="$(hash_files msg/vision_msgs/package.xml msg/vision_msgs/CMakeLists.txt msg/vision_msgs/msg/*.msg \
    scripts/build_vision_msgs.sh)-$ros_wheels"
if ! stamp_ok vision_msgs "$key_vm"; then
    step "jazzy: building vision_msgs (about 30 s)"
    run_logged bash "$ROOT/scripts/build_vision_msgs.sh" "$VENV" "$CACHE/build/vision_msgs-jazzy" ||
        die "building vision_msgs for Jazzy failed (full log: .cache/setup-jazzy.log)."
    stamp_set vision_msgs "$key_vm"
fi

# --- 5. the ROS 2 tools ----------------------------------------------------------------------
if [[ -f "$THIRD_PARTY/ros2-ros2cli.tar.gz" ]]; then
    key_tools="$(cat "$THIRD_PARTY"/*.tar.gz scripts/install_ros_tools.sh | sha256sum | cut -c1-16)-$ros_wheels"
    if ! stamp_ok ros_tools "$key_tools" || [[ ! -x "$VENV/bin/ros2" ]]; then
        step "jazzy: installing the ROS 2 tools from $THIRD_PARTY (about 1 min)"
        run_logged bash "$ROOT/scripts/install_ros_tools.sh" "$VENV" "$THIRD_PARTY" "$CACHE/build/ros_tools-jazzy" ||
            die "installing the ROS 2 tools into the Jazzy venv failed (full log: .cache/setup-jazzy.log)."
        stamp_set ros_tools "$key_tools"
    fi
else
    warn "jazzy: no $THIRD_PARTY: the tests that run 'ros2' will skip in the Jazzy leg."
fi

if [[ -n "${DID_SOMETHING:-}" ]]; then step "jazzy: ready in $((SECONDS - START)) s"; fi
