# Sourced on the GPU machine (bash): puts the packed node on PATH and node_modules in the repo root.
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || return 1
mkdir -p /tmp/trtd-node/bin
xz -dc .gpupack/node.xz > /tmp/trtd-node/bin/node && chmod +x /tmp/trtd-node/bin/node
[ -d node_modules ] || tar -xJf .gpupack/node_modules.tar.xz
# vitest and its bundlers, when carried (pack-node.sh packs them apart; run_conformance.sh needs them)
[ -d node_modules/vitest ] || [ ! -f .gpupack/test-tools.tar.xz ] || tar -xJf .gpupack/test-tools.tar.xz
export PATH=/tmp/trtd-node/bin:$PATH
node --version
