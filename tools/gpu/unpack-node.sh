# Sourced on the GPU machine (bash): puts the packed node on PATH and node_modules in the repo root.
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || return 1
mkdir -p /tmp/trtd-node/bin
xz -dc .gpupack/node.xz > /tmp/trtd-node/bin/node && chmod +x /tmp/trtd-node/bin/node
[ -d node_modules ] || tar -xJf .gpupack/node_modules.tar.xz
export PATH=/tmp/trtd-node/bin:$PATH
node --version
