#!/usr/bin/env bash
# Session 9 device run: conformance (CUDA), grammar bench (tiny; 8B), TTFT stages with the direct data path on/off (8B).
set -u
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/out}; mkdir -p $O
exec > >(tee -a $O/dev5.log) 2>&1
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
date -u; nproc; nvidia-smi --query-gpu=name --format=csv,noheader
source tools/gpu/unpack-node.sh
xz -dc .gpupack/nats-server.xz > /tmp/trtd-node/bin/nats-server && chmod +x /tmp/trtd-node/bin/nats-server
export NATS_SERVER_BIN=/tmp/trtd-node/bin/nats-server
mkdir -p packages/trtllm/build && tar -C packages/trtllm/build -xJf .gpupack/cuda-lib.tar.xz
PY=/opt/torch/.venv/bin/python; [ -x $PY ] || PY=python3
source tools/gpu/cublas-path.sh && add_cublas_dirs $PY
LIB=$PWD/packages/trtllm/build/libtrtd_executor_cuda.so
M8=/tmp/trtd-models/8b-bf16
MK=""

[ -f models/tiny/config.json ] || timeout 120 node --import tsx --conditions=source tools/prepare-model/src/cli.ts tiny --out models/tiny >/dev/null
el; echo "=== conformance"
OUT=$O/c TRTD_CONFORMANCE_TIMEOUT=${CONF_T:-200} bash tools/gpu/run_conformance.sh > /dev/null 2>&1; echo "conformance rc=$?"
sed -n '/CONFORMANCE SUMMARY/,$p' $O/c/conformance.log | head -40
el; echo "=== grammar bench, CUDA, tiny"
(cd packages/grammar && TRTD_EXECUTOR_LIB=$LIB TRTD_BENCH_GENERATIONS=100 timeout 100 node --import tsx --conditions=source bench/constrained.bench.ts) 2>&1 | tail -4
el; date -u; rm -f $O/c/conformance.json
