#!/usr/bin/env bash
# Packs what the Node side needs on a GPU machine that has no Node: the node binary and node_modules
# (without the build-only tools: nx, typescript, openai), xz-compressed into .gpupack/ (git-ignored via
# .git/info/exclude; name it in the device run's carry). On the GPU machine: source tools/gpu/unpack-node.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpupack
[ -f .gpupack/node.xz ] || xz -T0 -9 -c "$(command -v node)" > .gpupack/node.xz
tar -cJf .gpupack/node_modules.tar.xz --exclude=node_modules/nx --exclude=node_modules/@nx \
  --exclude=node_modules/typescript --exclude=node_modules/openai --exclude=node_modules/js-tiktoken \
  --exclude=node_modules/@types node_modules
du -sh .gpupack/*
