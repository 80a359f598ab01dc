#!/usr/bin/env bash
# Real-shape figures on one GPU, as one job (each phase bounded so one failure leaves the others' numbers):
#   build  Llama-3.1-8B-shaped PRM + Llama-3.2-1B-shaped policy, random bf16 weights, long MATH-500 training rows
#   infer  ttc-infer, both models on the card, 8 MATH-500 problems, every strategy at N = 16
#   lora   train_prm.py, configs/prm/llama31_8b_lora.yaml, a few LoRA steps of 8 x 2048 tokens
#   zero3  accelerate launch + DeepSpeed ZeRO-3 (bf16 master weights and Adam states: one card), full fine-tune steps
# Writes logs, real_shapes.jsonl and report.md (the tables for benchmarks/RESULTS.md) into $OUT.
#   OUT=/tmp/gpu MATH500=../shared/data/math500_test.jsonl bash scripts/gpu_real_shapes.sh
# A CPU rehearsal of the same code paths (small body, short rows): CPU_SMOKE=1 bash scripts/gpu_real_shapes.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_real_shapes}
SHAPES=${SHAPES:-/tmp/shapes}
MATH500=${MATH500:-../shared/data/math500_test.jsonl}
PYTHON=${PYTHON:-python3}
RESULTS=$OUT/real_shapes.jsonl
mkdir -p "$OUT"
# The device's python has the libraries but not ttc installed: import it from this checkout.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 TRL_EXPERIMENTAL_SILENCE=1 WANDB_MODE=disabled

phase() {  # phase NAME SECONDS COMMAND...: run bounded, log to $OUT/NAME.log, print the outcome
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name exit $? after $((SECONDS - start))s"
    grep -E '^\{"kind"|Error|error:' "$OUT/$name.log" | tail -4
}

BUILD_EXTRA=() INFER_EXTRA=() TRAIN_EXTRA=() LENGTH=2048
if [ "${CPU_SMOKE:-0}" = 1 ]; then
    LENGTH=256
    BUILD_EXTRA=(--device cpu --smoke --rows 32)
    INFER_EXTRA=(--policy.device cpu --prm.device cpu --policy.dtype float32 --prm.dtype float32 --benchmark.limit 2
                 --strategies.majority.max_tokens 32 --strategies.best_of_n.max_tokens 32
                 --strategies.weighted_best_of_n.max_tokens 32 --strategies.beam_search.max_iterations 2
                 --strategies.dvts.max_iterations 2 --strategies.particle_filtering.max_iterations 2
                 --strategies.mcts.max_iterations 2 --strategies.adaptive_majority.max_tokens 32)
    TRAIN_EXTRA=(--use_cpu true)
else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
phase build "${BUILD_LIMIT:-130}" "$PYTHON" benchmarks/real_shapes.py build --out "$SHAPES" --math500 "$MATH500" \
    --min_tokens "$LENGTH" "${BUILD_EXTRA[@]}"
phase infer "${INFER_LIMIT:-140}" "$PYTHON" benchmarks/real_shapes.py infer --results "$RESULTS" \
    --name "1B policy + 8B PRM, 8 problems" -- run --config configs/infer/math500_gpu_shapes.yaml \
    --benchmark.path "$MATH500" --policy.model_name_or_path "$SHAPES/policy-llama32-1b" \
    --prm.path "$SHAPES/prm-llama31-8b" --output_dir "$SHAPES/infer" "${INFER_EXTRA[@]}"
TRAIN=(--model_name_or_path "$SHAPES/prm-llama31-8b" --train_files "$SHAPES/train.jsonl" --report_to none
       --save_strategy no --logging_steps 1 --gradient_accumulation_steps 1 --max_length "$LENGTH" "${TRAIN_EXTRA[@]}")
phase lora "${LORA_LIMIT:-110}" "$PYTHON" benchmarks/real_shapes.py train --results "$RESULTS" \
    --name "LoRA r=16, llama31_8b_lora.yaml" -- --config configs/prm/llama31_8b_lora.yaml "${TRAIN[@]}" \
    --output_dir "$SHAPES/lora" --max_steps 6 --per_device_train_batch_size 8
phase zero3 "${ZERO3_LIMIT:-160}" "$PYTHON" -m accelerate.commands.launch \
    --config_file configs/accelerate/deepspeed_zero3_one_gpu.yaml benchmarks/real_shapes.py train \
    --results "$RESULTS" --name "full, ZeRO-3 bf16 states, llama31_8b_full.yaml" -- \
    --config configs/prm/llama31_8b_full.yaml "${TRAIN[@]}" --output_dir "$SHAPES/full" --max_steps 5 \
    --per_device_train_batch_size 4
[ -f "$RESULTS" ] && "$PYTHON" benchmarks/real_shapes.py report --results "$RESULTS" | tee "$OUT/report.md"
