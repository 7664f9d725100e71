#!/usr/bin/env bash
# Session 9 device run: conformance (CUDA), grammar bench (tiny; 8B), TTFT stages with the direct data path on/off (8B).
set -u
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/out}; mkdir -p $O
exec > >(tee -a $O/dev4.log) 2>&1
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
( timeout 240 $PY tools/gpu/make_models.py /tmp/trtd-models --shapes 8b --dtype bfloat16 > $O/make8b.log 2>&1; timeout 60 node --import tsx --conditions=source tools/gpu/deploy-tokenizer.ts $M8 >> $O/make8b.log 2>&1 ) &
MK=$!
[ -f models/tiny/config.json ] || timeout 120 node --import tsx --conditions=source tools/prepare-model/src/cli.ts tiny --out models/tiny >/dev/null
el; echo "=== conformance"
OUT=$O/c TRTD_CONFORMANCE_TIMEOUT=${CONF_T:-220} bash tools/gpu/run_conformance.sh > /dev/null 2>&1; echo "conformance rc=$?"
sed -n '/CONFORMANCE SUMMARY/,$p' $O/c/conformance.log | head -40
el; echo "=== grammar bench, CUDA, tiny"
(cd packages/grammar && TRTD_EXECUTOR_LIB=$LIB TRTD_BENCH_GENERATIONS=100 timeout 100 node --import tsx --conditions=source bench/constrained.bench.ts) 2>&1 | tail -4
wait $MK; tail -2 $O/make8b.log; el
echo "=== stages, cuda 8B, direct on/off"
timeout 200 node --import tsx --conditions=source apps/api/bench/stages.ts --executor cuda --model-dir $M8 --reps 20 --prompt-words 16,1000 --direct-data-path on,off > $O/gpu-stages.json 2> $O/gpu-stages.err; echo "stages rc=$?"
grep "^\[direct" $O/gpu-stages.err | cut -c1-330
el; echo "=== grammar bench, CUDA, 8B"
(cd packages/grammar && TRTD_BENCH_MODEL_DIR=$M8 TRTD_EXECUTOR_LIB=$LIB TRTD_BENCH_GENERATIONS=50 TRTD_BENCH_REPEATS=2 timeout 150 node --import tsx --conditions=source bench/constrained.bench.ts) 2>&1 | tail -4
el; date -u
rm -f $O/c/conformance.json
