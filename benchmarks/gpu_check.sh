#!/usr/bin/env bash
# All GPU checks in one run, for a CUDA machine (the project's own machines have none):
#   1. training throughput on CUDA, DANN vs source-only (bf16 autocast as the trainer uses it)
#   2. the demo end to end on CUDA, seeds 0 1 2 in parallel: source-only / DANN / train-on-target,
#      ONNX export with parity check, evaluation of the ONNX files through the Predictor
#   3. inference latency: PyTorch CUDA vs ONNX Runtime (CPU, CUDA if present) vs TensorRT if present
# Missing pure-Python packages (rosbags...) can be given as wheels in .whl/; digits.png must be in
# .cache/data/opencv/. Writes small logs and JSON into ${OUT:-gpu_check_out}.
set -uo pipefail
out=${OUT:-gpu_check_out}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

echo "== 1. training throughput (CUDA)"
python3 benchmarks/train_throughput.py --device cuda --backbone small_cnn --discriminator-hidden 1024 \
  --steps 200 --warmup 20 --repeats 2 2>&1 | tee "$out/train_throughput.txt"

echo "== 2. demo on CUDA, 3 seeds"
python3 -c "
from pathlib import Path
from dann_ros.demo import DemoPaths, prepare_data
prepare_data(DemoPaths(Path('.cache/demo'), Path('runs')), Path('.cache/data/opencv/digits.png'), 20000, 12)"
for seed in 0 1 2; do
  ( /usr/bin/time -f "seed $seed wall %e s" python3 -m dann_ros.cli demo --seeds $seed --out runs/gpu_seed$seed \
      > "$out/demo_seed$seed.txt" 2>&1 ) &
done
wait
for seed in 0 1 2; do grep -v "it/s" "$out/demo_seed$seed.txt" | tail -8; cp runs/gpu_seed$seed/summary.json "$out/summary_seed$seed.json"; done

echo "== 3. inference latency"
python3 benchmarks/inference.py --model runs/gpu_seed0/dann/model.pt --iters 300 2>&1 | tee "$out/inference.txt"
