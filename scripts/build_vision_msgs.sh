#!/usr/bin/env bash
# Build the interface package msg/vision_msgs with the rosidl wheels of a venv and install it
# into that venv's prefix, then check that a message round-trips through rclpy serialization.
# Usage: scripts/build_vision_msgs.sh VENV BUILD_DIR   (scripts/setup.sh calls it when needed)
# Needs cmake >= 3.16, a C/C++ compiler and the Python headers of the venv's interpreter.
set -euo pipefail

VENV="$(realpath "$1")"
BUILD="$2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$VENV/bin/python"

PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NP_INC="$("$PY" -c 'import numpy; print(numpy.get_include())')"

# The exported CMake targets in the ROS wheels hard-code the wheel builder's interpreter
# (/opt/python/cpXY-cpXY/...): point them at this venv's Python and numpy headers.
# (grep finds nothing once done: that is not an error.)
{ grep -rlZ -E '/opt/python/cp3[0-9]+-cp3[0-9]+/(include|lib)/' --include='*.cmake' "$VENV/share" || true; } |
    xargs -0 -r sed -i -E \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${PY_INC}#g" \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${NP_INC}#g"

export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"

rm -rf "$BUILD"
cmake -S "$ROOT/msg/vision_msgs" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$PY" \
    -DBUILD_TESTING=OFF
cmake --build "$BUILD" -j "$(nproc)"
cmake --install "$BUILD"

cd "$BUILD"
"$PY" -c '
from rclpy.serialization import deserialize_message, serialize_message
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

hyp = ObjectHypothesisWithPose()
hyp.hypothesis.class_id, hyp.hypothesis.score = "7", 0.9
det = Detection2D(id="track-1", results=[hyp])
det.bbox.center.position.x, det.bbox.size_x = 12.5, 4.0
msg = Detection2DArray(detections=[det])
msg.header.frame_id = "camera"
data = serialize_message(msg)
assert deserialize_message(data, Detection2DArray) == msg
print("vision_msgs OK:", len(data), "bytes for a Detection2DArray with one detection")
'
