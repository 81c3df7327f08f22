#!/usr/bin/env bash
# One-shot, idempotent set-up of a checkout (what `make setup` runs):
#   1. .venv with python3 >= 3.10          4. vision_msgs interface package (built if missing)
#   2. requirements.txt into .venv          5. ROS 2 tools (ros2, launch) from shared/third_party
#   3. `pip install -e .` (dann_ros)        6. demo data: digits.png + vtest.avi from opencv-doc
#                                           7. Chromium (report render checks)
# Each step leaves a stamp keyed on a hash of its inputs, so a rerun with nothing changed
# only compares hashes (well under 2 s). Details of every step go to .cache/setup.log.
# Environment: PYTHON=/path/to/python3 picks the interpreter for a new .venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
CACHE="$ROOT/.cache"
STAMPS="$VENV/.setup-stamps"
LOG="$CACHE/setup.log"
DATA="$CACHE/data/opencv"
MIN_FREE_GB=10
START=$SECONDS

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

mkdir -p "$CACHE"

# --- 1. virtual environment ---------------------------------------------------------------
venv_ok() {
    [[ -x "$VENV/bin/python" ]] &&
        "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null
}

if venv_ok; then
    :
else
    PY="${PYTHON:-python3}"
    command -v "$PY" >/dev/null 2>&1 ||
        die "no '$PY' found. Install Python >= 3.10 (Debian/Ubuntu: apt-get install python3 python3-venv)," \
            "or run with PYTHON=/path/to/python3."
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        die "$("$PY" -V 2>&1) is too old: dann_ros needs Python >= 3.10 (3.11 matches the local torch wheels)." \
            "Run with PYTHON=/path/to/python3.11."
    if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        apt_install_or_die "python$pyver-venv (the venv module for $PY)" "python3-venv" "python$pyver-venv"
    fi
    check_free_space "$ROOT" "$MIN_FREE_GB" "the virtual environment (torch alone is about 5.5 GB)"
    [[ -e "$VENV" ]] && rm -rf "$VENV"
    step "creating .venv with $("$PY" -V 2>&1)"
    run_logged "$PY" -m venv "$VENV" ||
        die "'$PY -m venv .venv' failed (see above). On Debian/Ubuntu: apt-get install python3-venv."
fi
PYV="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$PYV" == "3.11" ]] ||
    warn ".venv uses Python $PYV; the torch 2.14.1 wheel on local disk is for 3.11, so pip may download it (several GB)."

# --- 2. requirements.txt --------------------------------------------------------------------
key_req="$(hash_files requirements.txt)-py$PYV"
if stamp_ok requirements "$key_req"; then
    :
else
    if [[ ! -d "$VENV/lib/python$PYV/site-packages/torch" ]]; then
        check_free_space "$ROOT" "$MIN_FREE_GB" "the virtual environment (torch alone is about 5.5 GB)"
    fi
    step "installing requirements.txt into .venv (torch from local disk: about 80 s the first time)"
    if ! run_logged "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt; then
        pip_failure_hint
        die "pip could not install requirements.txt (full log: .cache/setup.log)."
    fi
    stamp_set requirements "$key_req"
fi

# --- 3. dann_ros itself (editable) ----------------------------------------------------------
# plus what makes the venv a ROS prefix for it (share/dann_ros, lib/dann_ros/dann_node, the venv
# on AMENT_PREFIX_PATH): see scripts/install_ros_prefix.sh.
key_pkg="$(hash_files setup.py setup.cfg package.xml scripts/install_ros_prefix.sh)-$(ls launch config | sha256sum | cut -c1-16)-$key_req"
if stamp_ok package "$key_pkg" && [[ -x "$VENV/bin/dann-ros" && -x "$VENV/lib/dann_ros/dann_node" ]]; then
    :
else
    step "installing dann_ros (pip install -e .)"
    run_logged "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
        --no-deps --no-build-isolation -e . ||
        die "'pip install -e .' failed (full log: .cache/setup.log)."
    run_logged bash "$ROOT/scripts/install_ros_prefix.sh" "$VENV" || die "installing the ROS prefix files failed."
    stamp_set package "$key_pkg"
fi

# --- 4. vision_msgs -------------------------------------------------------------------------
# Rebuilt when the definitions, the build script or the installed ROS wheels change.
ros_wheels="$(cd "$VENV/lib/python$PYV/site-packages" && printf '%s\n' ros_*.dist-info | sha256sum | cut -c1-16)"
key_vm="$(hash_files msg/vision_msgs/package.xml msg/vision_msgs/CMakeLists.txt msg/vision_msgs/msg/*.msg \
    scripts/build_vision_msgs.sh)-$ros_wheels"
external_vision_msgs() { # prints where vision_msgs comes from when it is not ours in .venv
    local where
    where="$("$VENV/bin/python" -c 'import vision_msgs.msg, os; print(os.path.realpath(vision_msgs.__file__))' \
        2>/dev/null)" || return 1
    [[ "$where" != "$(realpath "$VENV")"/* ]] && echo "$where"
}
if stamp_ok vision_msgs "$key_vm"; then
    :
elif stamp_ok vision_msgs "$key_vm-external" && external_vision_msgs >/dev/null; then
    : # still provided by a sourced ROS installation
else
    if where="$(external_vision_msgs)"; then
        step "vision_msgs: using the installed one ($where)"
        key_vm="$key_vm-external"
    else
        command -v cmake >/dev/null 2>&1 || apt_install_or_die "cmake (to build vision_msgs)" cmake
        command -v c++ >/dev/null 2>&1 && command -v cc >/dev/null 2>&1 ||
            apt_install_or_die "a C/C++ compiler (to build vision_msgs)" gcc g++
        py_inc="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
        [[ -f "$py_inc/Python.h" ]] ||
            apt_install_or_die "the Python $PYV headers ($py_inc/Python.h, to build vision_msgs)" "python$PYV-dev"
        step "building vision_msgs interface package into .venv (about 1-2 min)"
        t0=$SECONDS
        run_logged bash "$ROOT/scripts/build_vision_msgs.sh" "$VENV" "$CACHE/build/vision_msgs" ||
            die "building vision_msgs failed (full log: .cache/setup.log)."
        step "vision_msgs built and verified in $((SECONDS - t0)) s"
    fi
    stamp_set vision_msgs "$key_vm"
fi

# --- 5. ROS 2 command-line and launch tools (for the tests) -------------------------------
# `ros2`, launch and launch_ros have no wheels: where no ROS installation provides them they
# come from their upstream sources in shared/third_party (beside the checkout: ../shared, or
# DANN_ROS_THIRD_PARTY). Without either, the tests that run them skip and say why.
THIRD_PARTY="${DANN_ROS_THIRD_PARTY:-$ROOT/../shared/third_party}"
if [[ -f "$THIRD_PARTY/ros2-ros2cli.tar.gz" ]]; then
    key_tools="$(cat "$THIRD_PARTY"/*.tar.gz scripts/install_ros_tools.sh | sha256sum | cut -c1-16)-$ros_wheels"
    if stamp_ok ros_tools "$key_tools" && [[ -x "$VENV/bin/ros2" ]]; then
        :
    else
        step "installing the ROS 2 tools (ros2, launch, launch_ros) from $THIRD_PARTY (about 1 min)"
        run_logged bash "$ROOT/scripts/install_ros_tools.sh" "$VENV" "$THIRD_PARTY" "$CACHE/build/ros_tools" ||
            die "installing the ROS 2 tools failed (full log: .cache/setup.log)."
        stamp_set ros_tools "$key_tools"
    fi
elif ! "$VENV/bin/python" -c 'import launch_ros, ros2cli' 2>/dev/null; then
    [[ -f "$STAMPS/ros_tools-skipped" ]] ||
        warn "no ROS 2 tools: neither a sourced ROS nor $THIRD_PARTY; the tests that run 'ros2' will skip."
    mkdir -p "$STAMPS" && : >"$STAMPS/ros_tools-skipped"
fi

# --- 6. demo data ---------------------------------------------------------------------------
if [[ -s "$DATA/digits.png" && -s "$DATA/vtest.avi" ]]; then
    :
else
    step "fetching demo data (digits.png, vtest.avi) from Debian package opencv-doc"
    run_logged bash "$ROOT/scripts/fetch_demo_data.sh" "$DATA" || {
        rc=$?
        [[ $rc == 3 ]] && die "apt-get/dpkg-deb not found: the demo data comes from the Debian package opencv-doc." \
            "On another system copy digits.png and vtest.avi (OpenCV samples/data) into .cache/data/opencv/."
        die "could not download opencv-doc with apt-get (full log: .cache/setup.log). Check that the Debian" \
            "archive is reachable ('apt-get update' as root), then rerun 'make setup'."
    }
fi

# --- 7. Chromium for the report render checks (issue 10) -----------------------------------
# test/evaluation renders every HTML report in headless Chromium (scripts/check_report.sh); without
# a browser those checks are reported as skipped. Installed as root; otherwise a warning says how.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 &&
    ! command -v google-chrome >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt_install_or_die "Chromium (headless report checks)" chromium
    else
        warn "Chromium is not installed: the report render checks will be skipped." \
            "Install it with: sudo apt-get install chromium"
    fi
fi

if [[ -n "${DID_SOMETHING:-}" ]]; then
    step "ready in $((SECONDS - START)) s"
else
    step "up to date"
fi
