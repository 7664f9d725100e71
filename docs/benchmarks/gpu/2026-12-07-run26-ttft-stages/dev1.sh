#!/usr/bin/env bash
# Scratch device run: TTFT stage trace, CPU reference (tiny) and CUDA (8B random).
set -u; N=${N:-40}; NG=${NG:-20}
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/out}; mkdir -p $O
exec > >(tee -a $O/dev1.log) 2>&1
date -u; nproc; nvidia-smi --query-gpu=name --format=csv,noheader
source tools/gpu/unpack-node.sh
xz -dc .gpupack/nats-server.xz > /tmp/trtd-node/bin/nats-server && chmod +x /tmp/trtd-node/bin/nats-server
export NATS_SERVER_BIN=/tmp/trtd-node/bin/nats-server
mkdir -p packages/trtllm/build && tar -C packages/trtllm/build -xJf .gpupack/cuda-lib.tar.xz
[ -f models/tiny/config.json ] || timeout 120 node --import tsx --conditions=source tools/prepare-model/src/cli.ts tiny --out models/tiny
for spin in 0 1; do
N=${N:-40} TRTD_SPIN=$spin NODE_OPTIONS="--import $PWD/.scratch/spin.mjs" timeout 150 node --import tsx --conditions=source apps/api/bench/stages.ts --reps $N --prompt-words 16,1000 > $O/cpu-trace-spin$spin.json 2> $O/cpu-trace-spin$spin.err; echo "cpu spin=$spin rc=$?"
tail -2 $O/cpu-trace-spin$spin.err | cut -c1-400
done
PY=/opt/torch/.venv/bin/python; [ -x $PY ] || PY=python3
source tools/gpu/cublas-path.sh && add_cublas_dirs $PY
[ -f /tmp/trtd-models/8b-bf16/config.json ] || timeout 240 $PY tools/gpu/make_models.py /tmp/trtd-models --shapes 8b --dtype bfloat16
timeout 60 node --import tsx --conditions=source tools/gpu/deploy-tokenizer.ts /tmp/trtd-models/8b-bf16 | tail -2
for spin in 0 1; do
N=${NG:-20} TRTD_SPIN=$spin NODE_OPTIONS="--import $PWD/.scratch/spin.mjs" timeout 200 node --import tsx --conditions=source apps/api/bench/stages.ts --executor cuda --model-dir /tmp/trtd-models/8b-bf16 --reps $NG --prompt-words 16,1000 > $O/gpu-trace-spin$spin.json 2> $O/gpu-trace-spin$spin.err; echo "gpu spin=$spin rc=$?"
tail -3 $O/gpu-trace-spin$spin.err | cut -c1-400
done
date -u
