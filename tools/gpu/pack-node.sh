#!/usr/bin/env bash
# Packs what the Node side needs on a GPU machine that has no Node: the node binary and node_modules
# (without the build and test tools: nx, typescript, vite/vitest and their bundlers; openai travels apart, see
# pack-deploy.sh), and vitest with what it loads apart in test-tools.tar.xz (carry it for run_conformance.sh;
# runs that only serve or bench leave it, to stay inside the carry limit; of tiktoken's rank files only cl100k_base,
# the one the GPU runs' models use, travels), xz-compressed into .gpupack/ (git-ignored via
# .git/info/exclude; name it in the device run's carry). On the GPU machine: source tools/gpu/unpack-node.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpupack
[ -f .gpupack/node.xz ] || xz -T0 -9 -c "$(command -v node)" > .gpupack/node.xz
tar -cJf .gpupack/node_modules.tar.xz --exclude=node_modules/nx --exclude=node_modules/@nx \
  --exclude=node_modules/typescript --exclude=node_modules/openai --exclude=node_modules/js-tiktoken \
  --exclude=node_modules/@types --exclude=node_modules/@rolldown --exclude=node_modules/rolldown \
  --exclude='node_modules/lightningcss*' --exclude=node_modules/@napi-rs --exclude=node_modules/vite \
  --exclude=node_modules/vitest --exclude=node_modules/@vitest --exclude=node_modules/rollup \
  --exclude=node_modules/@rollup --exclude=node_modules/tiktoken/lite \
  --exclude='node_modules/tiktoken/encoders/*.js' --exclude='node_modules/tiktoken/encoders/*.cjs' \
  --exclude='node_modules/tiktoken/encoders/[gopr]*.json' node_modules
TEST_TOOLS="node_modules/vite node_modules/vitest node_modules/@vitest node_modules/rolldown node_modules/@rolldown
"  # not lightningcss (vite imports it lazily, for CSS only) nor rollup (a devDependency of vite)
# shellcheck disable=SC2086
tar -cJf .gpupack/test-tools.tar.xz $(for d in $TEST_TOOLS; do [ -e "$d" ] && echo "$d"; done)
du -sh .gpupack/*
