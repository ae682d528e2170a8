#!/usr/bin/env bash
# The GPU checks of one device session, in one go (see benchmarks/RESULTS.md for past results).
# Usage on a CUDA machine, from the repository root:  bash benchmarks/gpu_checks.sh OUTDIR
set -uo pipefail
out=${1:-gpu-results}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -m pytest -m gpu -q 2>&1 | tee "$out/pytest_gpu.log"
python benchmarks/clip_forward.py --gpu --json "$out/clip_forward_gpu.json" 2>&1 | tail -40
python benchmarks/blip_forward.py --gpu --json "$out/blip_forward_gpu.json" 2>&1 | tail -30
python benchmarks/train_throughput.py --gpu --json "$out/train_throughput_gpu.json" 2>&1 | tail -30
python benchmarks/search_backends.py --device cuda --pool 5600000 --queries 10000 --json "$out/search_gpu.json" 2>&1 | tail -30
