#!/usr/bin/env bash
# CPU self-test of tools/gpu against the reference executor (no GPU): tiny models, check_numerics.py on the
# reference executor and on the reference executor + the fake device-KV shim (so that the kv_export_device /
# kv_import_device descriptor flow between two processes runs too), a short bench_cuda.py, and a dry run of
# run_gpu.sh. Needs a Python with CPU torch + transformers (STACK.md: /work/venv).
#   bash tools/gpu/testing/cpu_selftest.sh [PYTHON]
set -eu -o pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$REPO"
PY="${1:-${PYTHON:-/work/venv/bin/python}}"
REF="$REPO/packages/trtllm/build/libtrtd_ref.so"
[ -f "$REF" ] || { echo "build the reference executor first: npm run build:native"; exit 2; }
W="$(mktemp -d /tmp/trtd-gpu-selftest.XXXXXX)"
trap 'rm -rf "$W"' EXIT
cc -shared -fPIC -O2 -Wall -I packages/trtllm/include tools/gpu/testing/fake_device_kv.c -o "$W/libtrtd_fake_device.so" \
  -L "$(dirname "$REF")" -l:libtrtd_ref.so -Wl,-rpath,"$(dirname "$REF")" -ldl
"$PY" tools/gpu/make_models.py "$W/models" --shapes tiny,tiny-untied --legacy-copy
"$PY" tools/gpu/make_models.py "$W/models" --shapes tiny --dtype float16
M="$W/models/tiny-bf16,$W/models/tiny-bf16-legacy,$W/models/tiny-untied-bf16,$W/models/tiny-fp16"
"$PY" tools/gpu/check_numerics.py --lib "$REF" --models "$M" --kv-mib 64 --out "$W/numerics-ref.json"
"$PY" tools/gpu/check_numerics.py --lib "$W/libtrtd_fake_device.so" --models "$M" --kv-mib 64 --out "$W/numerics-fake.json"
SMALL="--copy-gib 0.25 --batches 1,4 --new 16 --prompt 32 --hf-new 8 --hf-batches 1,4 --prefill 64,512 --kv-mib-targets 1,4 --kv-mib 64 --child-kv-mib 64 --max-ctx 4096"
"$PY" tools/gpu/bench_cuda.py --lib "$W/libtrtd_fake_device.so" --models "$W/models/tiny-untied-bf16" $SMALL --out "$W/bench.json" | tail -1 \
  | "$PY" -c "import json, sys; d = json.loads(sys.stdin.read()); assert d['models'], d; print('bench JSON ok:', list(d['models']))"
OUT="$W/out" TRTD_MODELS_DIR="$W/models2" TRTD_LIB="$W/libtrtd_fake_device.so" PYTHON="$PY" \
  TRTD_MAKE="tiny:bfloat16:legacy tiny:float16" TRTD_NUMERICS_MODELS=tiny-bf16,tiny-bf16-legacy,tiny-fp16 \
  TRTD_BENCH_MODELS=tiny-bf16 TRTD_NUMERICS_ARGS="--kv-mib 64" TRTD_BENCH_ARGS="$SMALL" \
  bash tools/gpu/run_gpu.sh quick > "$W/run_gpu.stdout" 2>&1 || { tail -40 "$W/run_gpu.stdout"; exit 1; }
sed -n '/SUMMARY/,$p' "$W/run_gpu.stdout"
echo "cpu_selftest: PASS"
