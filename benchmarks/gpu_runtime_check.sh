#!/usr/bin/env bash
# Everything that needs a GPU, in one prepared run (issues 13, 22): for a fresh GPU machine without
# network, or a Jetson. See benchmarks/gpu_runtime_check.py for the rows.
#
#   bash benchmarks/gpu_runtime_check.sh [--cpu-dry-run] [--no-pytest] [--wheels DIR] [out_dir]
#
# Interpreter: $PY if set, else this checkout's .venv (make setup) if it has one, else python3 with what
# the machine has installed (torch with CUDA, onnx, onnxruntime, ...). dann_ros always comes from this
# checkout (PYTHONPATH): nothing is installed. --wheels DIR (a folder of wheels fetched elsewhere with
# `pip download -d DIR <packages>` for this Python) makes .cache/gpu_check_venv on top of the system's
# packages and installs the wheels into it offline (--no-index). The preflight row fails, naming what is
# missing, instead of skipping anything; the exit status is 0 only if every row this machine must pass
# passed. --cpu-dry-run: the rows that need no GPU, to check this script on a machine without one.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
OUT="$ROOT/.cache/gpu_runtime_check"
WHEELS=""
ARGS=()
while (($#)); do
    case "$1" in
        --cpu-dry-run|--no-pytest) ARGS+=("$1") ;;
        --wheels) WHEELS="${2:?--wheels needs a folder}"; shift ;;
        -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) OUT="$1" ;;
    esac
    shift
done
if [[ -z "${PY:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [[ -n "$WHEELS" ]]; then
    VENV="$ROOT/.cache/gpu_check_venv"
    [[ -x "$VENV/bin/python" ]] || "$PY" -m venv --system-site-packages "$VENV" || exit 1
    "$VENV/bin/python" -m pip install --no-index --find-links "$WHEELS" "$WHEELS"/*.whl || exit 1
    PY="$VENV/bin/python"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
{
    date -u
    echo "interpreter: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1))"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    else
        echo "nvidia-smi: not on PATH"
    fi
} | tee "$OUT/machine.txt"
"$PY" benchmarks/gpu_runtime_check.py --out "$OUT" "${ARGS[@]}" 2>&1 | tee "$OUT/check.txt"
exit "${PIPESTATUS[0]}"
