#!/usr/bin/env bash
# FP8 checkpoints on a GPU machine: bash tools/gpu/run_fp8.sh
#   1. the kernel checks (fp8.cuh's kernels and cuBLASLt FP8 GEMM among them);
#   2. random-weight 1B and 8B shapes (2 layers) in bf16 with FP8 copies (make_models.py --fp8 channel,tensor) and
#      the numerics check of each FP8 copy against transformers on the exactly dequantized model;
#   3. the full 8B shape with a per-channel FP8 copy, and decode tok/s (bench_cuda.py parts a-c) of the FP8 copy and
#      of the bf16 model in the same run (the bf16 model is the baseline; ratios in the summary).
# Carry: packages/trtllm/build/libtrtd_executor_cuda.so and trtd_cuda_kernel_check. Output in $OUT (default
# /tmp/trtd-fp8-out): kernel_check.log, numerics.json, bench-fp8.json, bench-bf16.json, run_fp8.log.
# Every step runs under timeout within TRTD_GPU_BUDGET seconds (default 540). TRTD_FP8_PARTS picks steps (default
# "kernels,numerics,bench": one run needs most of a 10-minute device call); TRTD_BENCH_BATCHES (default 1,32).
set -u -o pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
OUT="${OUT:-/tmp/trtd-fp8-out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run_fp8.log") 2>&1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
START=$(date +%s)
BUDGET="${TRTD_GPU_BUDGET:-540}"
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
cap() { local t=$(( $(left) - $2 )); (( t > $1 )) && t=$1; (( t < 10 )) && t=10; echo "$t"; }
PY="${PYTHON:-python3}"
"$PY" -c "import torch, transformers" 2>/dev/null || PY=/opt/torch/.venv/bin/python
# shellcheck source=tools/gpu/cublas-path.sh
source tools/gpu/cublas-path.sh && add_cublas_dirs "$PY"
LIB=packages/trtllm/build/libtrtd_executor_cuda.so
MODELS="${TRTD_MODELS_DIR:-/tmp/trtd-models}"
echo "=== trtd FP8 run $(date -u +%FT%TZ); $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null)"

PARTS=",${TRTD_FP8_PARTS:-kernels,numerics,bench},"
want() { [[ "$PARTS" == *",$1,"* ]]; }
# what the numerics steps leave for the bench: its reserve only when the bench runs
BENCH_RESERVE=0; want bench && BENCH_RESERVE=1

if want kernels; then
echo "=== kernel checks"
timeout 60 packages/trtllm/build/trtd_cuda_kernel_check > "$OUT/kernel_check.log" 2>&1; echo "rc=$?"
grep -E "FP8|kernel checks" "$OUT/kernel_check.log"
fi

if want numerics; then
echo "=== models (2 layers)"
timeout "$(cap 120 $((BENCH_RESERVE * 380)))" "$PY" tools/gpu/make_models.py "$MODELS" --shapes 1b-2l,8b-2l --dtype bfloat16 --fp8 channel,tensor
echo "=== numerics"
T=$(cap 150 $((BENCH_RESERVE * 300)))
timeout "$T" "$PY" tools/gpu/check_numerics.py --lib "$LIB" \
  --models "$MODELS/1b-2l-bf16-fp8,$MODELS/1b-2l-bf16-fp8t,$MODELS/8b-2l-bf16-fp8,$MODELS/8b-2l-bf16-fp8t" \
  --out "$OUT/numerics.json" --time-limit $((T - 5)) 2>&1 | tail -25
fi

if want bench; then
echo "=== 8B model and its FP8 copy"
timeout "$(cap 150 160)" "$PY" tools/gpu/make_models.py "$MODELS" --shapes 8b --dtype bfloat16 --fp8 channel
for m in 8b-bf16-fp8 8b-bf16; do
  T=$(cap 200 $([ "$m" = 8b-bf16-fp8 ] && echo 75 || echo 5))
  echo "=== bench $m (timeout ${T}s)"
  timeout "$T" "$PY" tools/gpu/bench_cuda.py --lib "$LIB" --models "$MODELS/$m" --parts a,b,c --batches "${TRTD_BENCH_BATCHES:-1,32}" \
    --out "$OUT/bench-${m}.json" --time-limit $((T - 5)) 2>&1 | tail -4
done
fi
echo "=== done in $(( $(date +%s) - START )) s"
