#!/usr/bin/env bash
# The GPU checks of one device session, in one go (see benchmarks/RESULTS.md for past results).
#
#   bash benchmarks/gpu_checks.sh OUTDIR             # on a CUDA machine, from the repository root
#                                                    # (the lent machine: see benchmarks/gpu_wheels.sh)
#   DRY_RUN=1 bash benchmarks/gpu_checks.sh OUTDIR   # every step in its CPU dry-run mode (a check
#                                                    # of this script; steps without one are skipped)
#
# A device session allows 10 minutes per command and 15 minutes in all, machine start
# included, so the whole script aims at <= 9 minutes (TOTAL_S). Every step runs under
# `timeout` with its own budget (cut to what is left of TOTAL_S) and writes OUTDIR/<step>.log
# (and .json where the script supports it) as it finishes; OUTDIR/steps.tsv gets one line
# per step (exit status, seconds; 124 = hit its budget), so a step that runs out of time
# loses nothing of the others. numpy's baseline at 5.6M would take ~10 minutes: it runs on a
# 200K sub-pool, against uniir on the same sub-pool.
set -uo pipefail
out=${1:-gpu-results}
total_s=${TOTAL_S:-525}
dry=${DRY_RUN:-0}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
printf 'step\texit\tseconds\tnote\n' > "$out/steps.tsv"
started=$SECONDS

# supports SCRIPT FLAG: whether a benchmark script has FLAG (absent scripts have nothing)
supports() { [ -f "$1" ] && grep -q -- "\"$2\"" "$1"; }

# step NAME BUDGET_S COMMAND...: run under timeout, log to OUTDIR/NAME.log, record in steps.tsv
step() {
    local name=$1 budget=$2 left rc begin
    shift 2
    left=$(( total_s - (SECONDS - started) ))
    (( budget > left )) && budget=$left
    if (( budget < 10 )); then
        printf '%s\t-\t0\tskipped: the %ss total is spent\n' "$name" "$total_s" >> "$out/steps.tsv"
        return
    fi
    echo "== $name (budget ${budget}s): $*"
    begin=$SECONDS
    timeout --kill-after=10 "$budget" "$@" > "$out/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( SECONDS - begin ))" "$([ $rc = 124 ] && echo "timed out after ${budget}s")" >> "$out/steps.tsv"
    tail -n 15 "$out/$name.log"
}

# bench NAME BUDGET_S SCRIPT ARGS...: a benchmark script in GPU mode (--gpu or --device cuda
# among ARGS); with DRY_RUN=1, in its --dry-run mode, or skipped when it has none.
bench() {
    local name=$1 budget=$2 script=$3
    shift 3
    local args=("$@")
    if [ ! -f "$script" ]; then
        printf '%s\t-\t0\tskipped: %s does not exist\n' "$name" "$script" >> "$out/steps.tsv"
        return
    fi
    if supports "$script" --json; then args+=(--json "$out/$name.json"); fi
    if [ "$dry" = 1 ]; then
        if ! supports "$script" --dry-run; then
            printf '%s\t-\t0\tskipped: %s has no --dry-run\n' "$name" "$script" >> "$out/steps.tsv"
            return
        fi
        args+=(--dry-run)
    fi
    step "$name" "$budget" python "$script" "${args[@]}"
}

if [ "$dry" = 1 ]; then
    echo "dry run: no GPU" > "$out/gpu.txt"
else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
fi
# Budgets in seconds (sum 525); the order puts the issue #4 measurements early. The MLLM
# steps build, save and reload random 4B and 8B models (~8 and ~16 GB), LLaVA-Phi-3-mini first.
step pytest_gpu 45 python -m pytest -m gpu -q tests/gpu  # skipped tests on a CPU-only machine
bench search_gpu 100 benchmarks/search_backends.py --device cuda --pool 5600000 --queries 10000 \
    --precisions no,fp16,bf16 --numpy-pool 200000
bench embed_pipeline_gpu 55 benchmarks/embed_pipeline.py --gpu
bench clip_forward_gpu 45 benchmarks/clip_forward.py --gpu --min-seconds 1
bench blip_forward_gpu 45 benchmarks/blip_forward.py --gpu --min-seconds 1
bench train_throughput_gpu 45 benchmarks/train_throughput.py --gpu --steps 5
bench mllm_embedding_gpu 100 benchmarks/mllm_embedding.py --gpu
bench mllm_lora_train_gpu 90 benchmarks/mllm_lora_train.py --gpu
echo "== done in $(( SECONDS - started ))s; per step: $out/steps.tsv"
cat "$out/steps.tsv"
