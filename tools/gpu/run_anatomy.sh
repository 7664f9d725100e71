#!/usr/bin/env bash
# Where the batch-1 decode step goes, on a GPU machine: bash tools/gpu/run_anatomy.sh
#   1. trtd_cuda_gemv_bench: the read ceiling, each small-batch GEMM shape of the 1B and 8B layers alone (L2-cold) at
#      several grid caps, and the GEMMs chained as in a decode step in one graph, with PDL and without;
#   2. the 1B and 8B shapes (random weights, made here) decoded at batch 1 by the executor with its step timing on
#      (TRTD_CUDA_STEP_TIMING=1: GPU time per graph replay and the host gap), once per TRTD_ANATOMY_VARIANTS entry
#      (space-separated VAR=VALUE[,VAR=VALUE] sets of environment; "-" for the defaults);
#   3. with TRTD_ANATOMY_BENCH=1,32 (batches): bench_cuda.py's decode tok/s against the roofline (parts a-c), defaults.
# The kernel checks run first (a wrong kernel makes every timing moot). Output in $OUT (default
# /tmp/trtd-anatomy-out): kernel_check.log, gemv_bench.log (both passes), decode.txt (every variant), bench.json and
# bench.log, run_anatomy.log: few files, since a device call returns only so many.
# Carry: packages/trtllm/build/{libtrtd_executor_cuda.so,trtd_cuda_kernel_check,trtd_cuda_gemv_bench}.
set -u -o pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
OUT="${OUT:-/tmp/trtd-anatomy-out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run_anatomy.log") 2>&1
export PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1
PY="${PYTHON:-python3}"
"$PY" -c "import torch, transformers" 2>/dev/null || PY=/opt/torch/.venv/bin/python
# shellcheck source=tools/gpu/cublas-path.sh
source tools/gpu/cublas-path.sh && add_cublas_dirs "$PY"
B=packages/trtllm/build
MODELS="${TRTD_MODELS_DIR:-/tmp/trtd-models}"
echo "=== trtd anatomy run $(date -u +%FT%TZ); $(nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null)"

echo "=== kernel checks"
timeout 90 "$B/trtd_cuda_kernel_check" > "$OUT/kernel_check.log" 2>&1; echo "rc=$?"
grep -E "FAIL|FP8|kernel checks" "$OUT/kernel_check.log" | tail -12

echo "=== gemv bench"
timeout 150 "$B/trtd_cuda_gemv_bench" --caps "${TRTD_GEMV_CAPS:-8,4,2}" > "$OUT/gemv_bench.log" 2>&1; echo "rc=$?"
grep -v '^{' "$OUT/gemv_bench.log"
echo "=== gemv bench, PDL off" >> "$OUT/gemv_bench.log"
TRTD_CUDA_PDL=0 timeout 90 "$B/trtd_cuda_gemv_bench" --skip-alone --caps "${TRTD_GEMV_CAPS:-8,4,2}" >> "$OUT/gemv_bench.log" 2>&1; echo "rc=$?"
sed -n '/=== gemv bench, PDL off/,$p' "$OUT/gemv_bench.log" | grep chain

echo "=== models"
timeout 150 "$PY" tools/gpu/make_models.py "$MODELS" --shapes 1b,8b --dtype bfloat16 2>&1 | tail -3

for variant in ${TRTD_ANATOMY_VARIANTS:--}; do
  for m in 1b 8b; do
    env_args=()
    [ "$variant" != "-" ] && IFS=, read -r -a env_args <<< "$variant"
    echo "=== decode $m, variant $variant" | tee -a "$OUT/decode.txt"
    env "${env_args[@]}" TRTD_CUDA_STEP_TIMING=1 timeout 120 "$PY" tools/gpu/profile_decode.py --lib "$B/libtrtd_executor_cuda.so" \
      --model "$MODELS/$m-bf16" --new 128 > "$OUT/decode-last.txt" 2>&1
    echo "rc=$?"
    cat "$OUT/decode-last.txt" >> "$OUT/decode.txt"
    grep -E '^\{|timing:' "$OUT/decode-last.txt"
  done
done
if [ -n "${TRTD_ANATOMY_BENCH:-}" ]; then
  echo "=== bench_cuda.py (parts a,b,c; batches $TRTD_ANATOMY_BENCH), library defaults"
  timeout 240 "$PY" tools/gpu/bench_cuda.py --lib "$B/libtrtd_executor_cuda.so" --models "$MODELS/8b-bf16,$MODELS/1b-bf16" \
    --parts a,b,c --batches "$TRTD_ANATOMY_BENCH" --out "$OUT/bench.json" --time-limit 230 > "$OUT/bench.log" 2>&1
  echo "rc=$?"
  "$PY" - "$OUT/bench.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for name, m in d["models"].items():
    for b, r in (m.get("decode") or {}).items():
        print(f"{name} batch {b}: {r['tok_s']:.1f} tok/s, step {r['step_ms']:.3f} ms, {r['ratio_to_roofline']:.3f} of the roofline")
EOF
fi
echo "=== done $(date -u +%FT%TZ)"
