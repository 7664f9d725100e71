#!/usr/bin/env bash
# One GPU run: bash tools/gpu/run_gpu.sh [quick|full]
#   quick: 2-layer 1B/8B shapes (bf16), a 2-layer fp16 one and a legacy-rope-layout copy; numerics + bench.
#   full:  numerics on the fp16 2-layer, legacy-layout 2-layer, 1B and 8B models; bench on 8B and 1B.
# Prints nvidia-smi, builds libtrtd_executor_cuda.so if it is absent (or does not load), runs the kernel check,
# makes the models in /tmp, runs check_numerics.py then bench_cuda.py, writes everything to $OUT (run_gpu.log,
# build.log, kernel_check.log, numerics.json, bench.json) and prints a short summary last.
# Every step runs under `timeout`, sized from what is left of a total budget (TRTD_GPU_BUDGET, default 560 s),
# so one hang cannot eat the whole run.
# Overrides: PYTHON, OUT, TRTD_GPU_BUDGET, TRTD_MODELS_DIR, TRTD_NUMERICS_MODELS / TRTD_BENCH_MODELS (comma lists
# of model names under TRTD_MODELS_DIR), TRTD_BENCH_ARGS, TRTD_NUMERICS_ARGS, TRTD_MAKE (model groups), TRTD_LIB.
# CPU dry run against the reference executor (see README.md):
#   TRTD_LIB=packages/trtllm/build/libtrtd_ref.so PYTHON=/work/venv/bin/python TRTD_MAKE="tiny:bfloat16:legacy ..." ...
set -u -o pipefail
MODE="${1:-quick}"
case "$MODE" in quick|full) ;; *) echo "usage: bash tools/gpu/run_gpu.sh [quick|full]" >&2; exit 2 ;; esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
OUT="${OUT:-/tmp/trtd-gpu-out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run_gpu.log") 2>&1
export PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error

START=$(date +%s)
BUDGET="${TRTD_GPU_BUDGET:-560}"
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# step_timeout CAP RESERVE: min(CAP, time left - RESERVE), at least 10
step_timeout() { local t=$(( $(left) - $2 )); (( t > $1 )) && t=$1; (( t < 10 )) && t=10; echo "$t"; }
declare -a SUMMARY=()
note() { SUMMARY+=("$(printf '%-14s %-6s %5ss  %s' "$1" "$2" "$3" "${4:-}")"); }
run_step() {  # run_step NAME TIMEOUT CMD...: runs CMD under timeout, records status
  local name="$1" t="$2"; shift 2
  local t0=$(date +%s)
  echo; echo "=== [$name] (timeout ${t}s, $(left)s left) $*"
  timeout -k 10 "$t" "$@"
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local st=ok; (( rc != 0 )) && st="rc=$rc"; (( rc == 124 || rc == 137 )) && st="TIMEOUT"
  note "$name" "$st" "$dt"
  echo "=== [$name] $st in ${dt}s"
  return $rc
}

echo "=== trtd GPU run ($MODE) $(date -u +%FT%TZ) in $REPO; git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
timeout 30 nvidia-smi || echo "nvidia-smi failed"
timeout 10 nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm,power.limit --format=csv 2>/dev/null

PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch, transformers, safetensors, numpy" 2>/dev/null; then
  [ -x /opt/torch/.venv/bin/python ] && PY=/opt/torch/.venv/bin/python
fi
"$PY" - <<'EOF' || { echo "python/torch not usable"; exit 3; }
import sys, torch, transformers, numpy, safetensors
print(f"python {sys.version.split()[0]} torch {torch.__version__} (cuda {torch.version.cuda}) transformers "
      f"{transformers.__version__} numpy {numpy.__version__}; cuda available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
EOF
echo "disk: $(df -h /tmp | tail -1)"; echo "memory: $(free -g | awk '/Mem:/{print $2" GiB total, "$7" GiB available"}')"

# cuBLAS at run time: the toolkit's, or the image's nvidia wheels.
# shellcheck source=tools/gpu/cublas-path.sh
source tools/gpu/cublas-path.sh && add_cublas_dirs "$PY"
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"

BUILD="$REPO/packages/trtllm/build"
LIB="${TRTD_LIB:-$BUILD/libtrtd_executor_cuda.so}"  # TRTD_LIB: another executor (CPU dry runs of this script)
lib_loads() { "$PY" -c "import ctypes, sys; ctypes.CDLL(sys.argv[1])" "$LIB" 2>&1; }
if [ -f "$LIB" ] && msg=$(lib_loads); then
  echo "library: $LIB (present, loads; $(stat -c '%y' "$LIB"))"
  note build skip 0 "present"
else
  [ -f "$LIB" ] && echo "library present but does not load: ${msg:-?}; rebuilding"
  CUBLAS_ARG=""
  if ! ls /usr/local/cuda/include/cublas_v2.h /usr/local/cuda/targets/x86_64-linux/include/cublas_v2.h >/dev/null 2>&1; then
    W="$("$PY" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))' 2>/dev/null)"
    [ -n "$W" ] && [ -f "$W/include/cublas_v2.h" ] && CUBLAS_ARG="-DTRTD_CUBLAS_ROOT=$W" && echo "cuBLAS from $W"
  fi
  run_step build "$(step_timeout 300 240)" bash -c "
    set -o pipefail
    cmake -S packages/trtllm/native/cuda -B /tmp/trtd-cuda-build -DCMAKE_BUILD_TYPE=Release $CUBLAS_ARG \
      -DCMAKE_CUDA_COMPILER=\"\$(command -v nvcc)\" -DTRTD_OUTPUT_DIR='$BUILD' > '$OUT/build.log' 2>&1 &&
    cmake --build /tmp/trtd-cuda-build -j \$(nproc) >> '$OUT/build.log' 2>&1" \
    || { echo "--- build failed; tail of build.log:"; tail -40 "$OUT/build.log"; }
  [ -f "$LIB" ] || { echo "no $LIB: stopping"; printf '%s\n' "${SUMMARY[@]}"; exit 4; }
fi
"$PY" -c "
import sys; sys.path.insert(0, 'tools/gpu'); import trtd
l = trtd.Lib.get('$LIB'); print('executor:', l.version, 'ABI', l.abi_version)" || { echo "cannot bind $LIB"; exit 5; }

if [ -x "$BUILD/trtd_cuda_kernel_check" ]; then
  run_step kernel_check "$(step_timeout 90 420)" bash -c "'$BUILD/trtd_cuda_kernel_check' > '$OUT/kernel_check.log' 2>&1"
  echo "--- kernel_check.log (tail)"; tail -25 "$OUT/kernel_check.log"
else
  note kernel_check skip 0 "not built"
fi

MODELS="${TRTD_MODELS_DIR:-/tmp/trtd-models}"
if [ "$MODE" = full ]; then
  SHAPES="1b-2l,8b,1b"; NUM_DEFAULT="1b-2l-fp16,1b-2l-bf16-legacy,1b-bf16,8b-bf16"; BENCH_DEFAULT="8b-bf16,1b-bf16"
  MK_CAP=200; NUM_CAP=250; BENCH_RESERVE=200
else
  SHAPES="1b-2l,8b-2l"; NUM_DEFAULT="1b-2l-bf16,1b-2l-bf16-legacy,8b-2l-bf16,1b-2l-fp16"; BENCH_DEFAULT="8b-2l-bf16,1b-2l-bf16"
  MK_CAP=120; NUM_CAP=200; BENCH_RESERVE=120
fi
# TRTD_MAKE: space-separated SHAPES:DTYPE[:legacy] groups, one make_models.py call each
MAKE="${TRTD_MAKE:-1b-2l:bfloat16:legacy 1b-2l:float16 $SHAPES:bfloat16}"
MK_CMD="true"
for g in $MAKE; do
  IFS=':' read -r shp dt lg <<< "$g"
  MK_CMD="$MK_CMD && '$PY' tools/gpu/make_models.py '$MODELS' --shapes $shp --dtype $dt ${lg:+--legacy-copy}"
done
run_step models "$(step_timeout $MK_CAP $((BENCH_RESERVE + 60)))" bash -c "set -o pipefail; $MK_CMD"
ls -la "$MODELS" 2>/dev/null

join_models() { local out="" n; IFS=',' read -ra ns <<< "$1"; for n in "${ns[@]}"; do
  [ -f "$MODELS/$n/config.json" ] && out="${out:+$out,}$MODELS/$n" || echo "  (missing model $n)" >&2; done; echo "$out"; }
NUM_MODELS=$(join_models "${TRTD_NUMERICS_MODELS:-$NUM_DEFAULT}")
BENCH_MODELS=$(join_models "${TRTD_BENCH_MODELS:-$BENCH_DEFAULT}")

if [ -n "$NUM_MODELS" ]; then
  T=$(step_timeout $NUM_CAP $BENCH_RESERVE)
  run_step numerics "$T" "$PY" tools/gpu/check_numerics.py --lib "$LIB" --models "$NUM_MODELS" \
    --out "$OUT/numerics.json" --time-limit $((T - 5)) ${TRTD_NUMERICS_ARGS:-}
else
  note numerics skip 0 "no models"
fi

if [ -n "$BENCH_MODELS" ]; then
  T=$(step_timeout 400 $(( ${TRTD_BENCH_AB:-1} == 1 ? 55 : 15 )))
  run_step bench "$T" "$PY" tools/gpu/bench_cuda.py --lib "$LIB" --models "$BENCH_MODELS" \
    --out "$OUT/bench.json" --time-limit $((T - 5)) ${TRTD_BENCH_ARGS:-}
else
  note bench skip 0 "no models"
fi

# The same decode bench with the batch-1 latency work switched off (programmatic dependent launch and the fused
# small-batch GEMM epilogues: TRTD_CUDA_PDL=0 TRTD_CUDA_FUSE=0), in this run, as its own baseline.
if [ -n "$BENCH_MODELS" ] && [ "${TRTD_BENCH_AB:-1}" = 1 ] && (( $(left) > 45 )); then
  T=$(step_timeout 120 5)
  run_step bench_ab "$T" env TRTD_CUDA_PDL=0 TRTD_CUDA_FUSE=0 "$PY" tools/gpu/bench_cuda.py --lib "$LIB" --models "$BENCH_MODELS" \
    --parts a,b,c --batches 1,8 --out "$OUT/bench_ab.json" --time-limit $((T - 5))
fi

echo; echo "================ SUMMARY ($MODE, $(( $(date +%s) - START ))s) ================"
printf '%s\n' "${SUMMARY[@]}"
"$PY" tools/gpu/summarize.py "$OUT/numerics.json" "$OUT/bench.json" 2>&1 || true
ls -la "$OUT"
# exit status: 0 when every step succeeded (numerics PASS included), else 1
for line in "${SUMMARY[@]}"; do case "$line" in *TIMEOUT*|*rc=*) exit 1 ;; esac; done
exit 0
