#!/usr/bin/env bash
# Per-kernel GPU times of a steady batch-1 decode step under Nsight Compute (see profile_decode.py).
#   bash tools/gpu/profile_decode.sh [MODEL_DIR]   (default: makes the 1B shape in /tmp/trtd-models)
# Writes $OUT/plain.txt (step time without the profiler, TRTD_CUDA_STEP_TIMING=1) and $OUT/ncu.csv.
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
OUT="${OUT:-/tmp/trtd-gpu-out}"
mkdir -p "$OUT"
PY=python3; $PY -c "import torch, transformers" 2>/dev/null || PY=/opt/torch/.venv/bin/python
# shellcheck source=tools/gpu/cublas-path.sh
source tools/gpu/cublas-path.sh && add_cublas_dirs "$PY"
LIB="${TRTD_LIB:-packages/trtllm/build/libtrtd_executor_cuda.so}"
M="${1:-/tmp/trtd-models/1b-bf16}"
[ -f "$M/config.json" ] || timeout 120 $PY tools/gpu/make_models.py "$(dirname "$M")" --shapes 1b --dtype bfloat16 > "$OUT/make.log" 2>&1
TRTD_CUDA_STEP_TIMING=1 timeout 60 $PY tools/gpu/profile_decode.py --lib "$LIB" --model "$M" > "$OUT/plain.txt" 2>&1
tail -3 "$OUT/plain.txt"
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
timeout 300 "$NCU" --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size --csv --launch-skip 3000 \
  --launch-count 300 $PY tools/gpu/profile_decode.py --lib "$LIB" --model "$M" > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
echo "ncu rc $?"
