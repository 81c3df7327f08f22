#!/usr/bin/env bash
# One prepared run of everything that needs a GPU (issue 13), for a GPU machine or a Jetson:
#   bash benchmarks/gpu_runtime_check.sh [out_dir]
# 1. what the machine offers (nvidia-smi, cuda-python's view, TensorRT, ONNX Runtime providers)
# 2. the GPU tests: cuda-python buffers/stream, TensorRT engines (build, parity, cache), skips say why
# 3. the inference benchmark with every backend it can open (ORT CUDA, TensorRT)
# Needs .venv (make setup) or any venv with dann_ros[runtime]; PY=... picks the interpreter.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PY:-.venv/bin/python}"
OUT="${1:-${OUT:-.cache/gpu_runtime_check}}"
mkdir -p "$OUT"
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "nvidia-smi: not available"
    "$PY" - <<'PY'
import onnxruntime as ort
from dann_ros import cuda
from dann_ros.runtime.tensorrt_backend import tensorrt_unavailable_reason
print("cuda-python:", cuda.why_no_gpu() or cuda.gpu_info())
print("tensorrt:", tensorrt_unavailable_reason() or __import__("tensorrt").__version__)
print("onnxruntime", ort.__version__, ort.get_available_providers())
PY
} 2>&1 | tee "$OUT/machine.txt"
"$PY" -m pytest -q -rs -p no:randomly test/runtime/test_cuda.py test/export/test_tensorrt.py \
    test/runtime/test_predictor.py 2>&1 | tee "$OUT/tests.txt"
tests=${PIPESTATUS[0]}
"$PY" benchmarks/inference.py --iters 200 --warmup 20 --json "$OUT/inference.json" 2>&1 | tee "$OUT/inference.txt"
bench=${PIPESTATUS[0]}
echo "tests rc=$tests benchmark rc=$bench; outputs in $OUT"
exit $(( tests != 0 || bench != 0 ))
