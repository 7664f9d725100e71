#!/usr/bin/env bash
# Session 9 device run 1: CUDA conformance of the current tree, then the grammar bench on the CUDA executor.
set -u
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/out}; mkdir -p $O
exec > >(tee -a $O/dev1.log) 2>&1
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
date -u; nproc; nvidia-smi --query-gpu=name --format=csv,noheader; git log -1 --oneline
source tools/gpu/unpack-node.sh
xz -dc .gpupack/nats-server.xz > /tmp/trtd-node/bin/nats-server && chmod +x /tmp/trtd-node/bin/nats-server
export NATS_SERVER_BIN=/tmp/trtd-node/bin/nats-server
mkdir -p packages/trtllm/build && tar -C packages/trtllm/build -xJf .gpupack/cuda-lib.tar.xz
[ -f models/tiny/config.json ] || timeout 120 node --import tsx --conditions=source tools/prepare-model/src/cli.ts tiny --out models/tiny >/dev/null
PY=/opt/torch/.venv/bin/python; [ -x $PY ] || PY=python3
source tools/gpu/cublas-path.sh && add_cublas_dirs $PY
LIB=$PWD/packages/trtllm/build/libtrtd_executor_cuda.so
el; echo "=== conformance"
OUT=$O/c TRTD_CONFORMANCE_TIMEOUT=${CONF_T:-260} bash tools/gpu/run_conformance.sh > /dev/null 2>&1; echo "conformance rc=$?"; tail -40 $O/c/conformance.log
el; echo "=== grammar bench on CUDA"
GEN=${GEN:-300}
(cd packages/grammar && TRTD_EXECUTOR_LIB=$LIB TRTD_BENCH_GENERATIONS=$GEN timeout 200 node --import tsx --conditions=source bench/constrained.bench.ts) 2>&1 | tail -30
echo "grammar rc=$?"
el; echo "=== grammar bench on reference (same machine, 16 cores)"
(cd packages/grammar && TRTD_BENCH_GENERATIONS=100 timeout 120 node --import tsx --conditions=source bench/constrained.bench.ts) 2>&1 | tail -12
el; date -u
