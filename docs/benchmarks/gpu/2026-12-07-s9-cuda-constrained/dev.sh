#!/usr/bin/env bash
# Branch s9-cuda-constrained, one device run: the constrained conformance suite on the CUDA executor, then the grammar
# bench on it (models/tiny; then the 8B-shaped model if time is left). Carry: .gpupack (tools/gpu/pack-node.sh, plus
# cuda-lib.tar.xz holding this branch's libtrtd_executor_cuda.so).
# Not yet run: no device machine came for this branch's helper session (three tries, 22:52-23:12 UTC). Usage:
#   tools/gpu/pack-node.sh; tar -C packages/trtllm/build -cJf .gpupack/cuda-lib.tar.xz libtrtd_executor_cuda.so
#   then on the device, carrying .gpupack: bash docs/benchmarks/gpu/2026-12-07-s9-cuda-constrained/dev.sh
set -u
cd "$(dirname "$0")/../../../.."
O=${OUT:-/tmp/out}; mkdir -p "$O"
exec > >(tee -a "$O/dev.log") 2>&1
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
date -u; nproc; uptime; nvidia-smi --query-gpu=name --format=csv,noheader
source tools/gpu/unpack-node.sh
# nats-server only when carried (neither the constrained suite nor the bench uses NATS; the carry limit is tight)
if [ -f .gpupack/nats-server.xz ]; then
  xz -dc .gpupack/nats-server.xz > /tmp/trtd-node/bin/nats-server && chmod +x /tmp/trtd-node/bin/nats-server
  export NATS_SERVER_BIN=/tmp/trtd-node/bin/nats-server
fi
mkdir -p packages/trtllm/build && tar -C packages/trtllm/build -xJf .gpupack/cuda-lib.tar.xz
[ -f models/tiny/config.json ] || timeout 120 node --import tsx --conditions=source tools/prepare-model/src/cli.ts tiny --out models/tiny >/dev/null
PY=/opt/torch/.venv/bin/python; [ -x $PY ] || PY=python3
source tools/gpu/cublas-path.sh && add_cublas_dirs $PY
LIB=$PWD/packages/trtllm/build/libtrtd_executor_cuda.so
el; echo "=== constrained conformance on CUDA"
OUT=$O/c TRTD_CONFORMANCE_TIMEOUT=${CONF_T:-180} TRTD_CONFORMANCE_ARGS=packages/trtllm/test/constrained.test.ts \
  bash tools/gpu/run_conformance.sh > /dev/null 2>&1; echo "conformance rc=$?"; tail -25 "$O/c/conformance.log"
el; echo "=== grammar bench on CUDA, models/tiny"
(cd packages/grammar && TRTD_EXECUTOR_LIB=$LIB TRTD_BENCH_GENERATIONS=${GEN:-200} timeout 150 node --import tsx --conditions=source bench/constrained.bench.ts) 2>&1 | tail -6
el
if (( $(date +%s) - T0 < ${BIG_BEFORE:-260} )); then
  echo "=== grammar bench on CUDA, 8B-shaped bf16"
  M=/tmp/trtd-models/8b-bf16
  [ -f $M/config.json ] || timeout 180 $PY tools/gpu/make_models.py /tmp/trtd-models --shapes 8b --dtype bfloat16 2>&1 | tail -3
  timeout 60 node --import tsx --conditions=source tools/gpu/deploy-tokenizer.ts $M 2>&1 | tail -2
  el
  (cd packages/grammar && TRTD_EXECUTOR_LIB=$LIB TRTD_BENCH_MODEL_DIR=$M TRTD_BENCH_REPEATS=${BIG_REPEATS:-2} TRTD_BENCH_GENERATIONS=${BIG_GEN:-64} \
    timeout ${BIG_T:-200} node --import tsx --conditions=source bench/constrained.bench.ts) 2>&1 | tail -6
else
  echo "=== 8B bench skipped: past ${BIG_BEFORE:-260} s"
fi
el; date -u
