#!/usr/bin/env bash
# Packs what tools/gpu/run_deploy.sh needs on a GPU machine besides what tools/gpu/pack-node.sh packs (node,
# node_modules without nx/typescript/openai): into .gpupack/ (git-ignored, carried with the device run)
#   nats-server.xz     nats-server from the Debian package (apt-get download; no install), xz'd (~3.5 MB)
#   openai.tar.xz      node_modules/openai, its ESM files only (no src/, .d.ts, .map, CommonJS): ~0.2 MB
# Runs pack-node.sh first when .gpupack/node.xz or node_modules.tar.xz is missing. Prints the sizes and the total of
# the carry (.gpupack + the CUDA library + libkvx.so + the working tree) against the device run's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpupack
[ -f .gpupack/node.xz ] && [ -f .gpupack/node_modules.tar.xz ] || bash tools/gpu/pack-node.sh

if [ ! -f .gpupack/nats-server.xz ]; then
  bin="${NATS_SERVER_BIN:-}"
  if [ -z "$bin" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && timeout 120 apt-get download nats-server >/dev/null && dpkg -x nats-server_*.deb x)
    bin=$(ls "$tmp"/x/usr/sbin/nats-server "$tmp"/x/usr/bin/nats-server 2>/dev/null | head -1)
  fi
  [ -x "$bin" ] || { echo "pack-deploy: no nats-server binary (apt-get download nats-server failed; set NATS_SERVER_BIN)"; exit 1; }
  "$bin" --version
  xz -T0 -9 -c "$bin" > .gpupack/nats-server.xz
  [ -n "${tmp:-}" ] && rm -rf "$tmp"
fi

[ -d node_modules/openai ] || { echo "pack-deploy: node_modules/openai missing (npm ci)"; exit 1; }
tar -cJf .gpupack/openai.tar.xz --exclude='node_modules/openai/src' --exclude='*.map' --exclude='*.d.ts' \
  --exclude='*.d.mts' --exclude='node_modules/openai/*.js' --exclude='node_modules/openai/**/*.js' node_modules/openai

du -b .gpupack/* | awk '{ printf "%8.1f MB  %s\n", $1 / 1e6, $2 }'
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
extra=0
for f in packages/trtllm/build/libtrtd_executor_cuda.so packages/kv-transfer/build/libkvx.so; do
  [ -f "$f" ] && extra=$(( extra + $(stat -c %s "$f") )) || echo "note: $f not here (carry it when it is)"
done
total=$(( $(du -cb .gpupack/* | tail -1 | cut -f1) + tree + extra ))
echo "carry ~ $(( total / 1048576 )) MiB of 64 MiB (.gpupack + libraries $(( extra / 1024 )) KiB + working tree $(( tree / 1024 )) KiB)"
