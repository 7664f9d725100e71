#!/bin/sh
# Compile check of the shim against TensorRT-LLM executor headers, without TensorRT-LLM's libraries.
#   packages/trtllm/shim/scripts/compile-check.sh HEADERS_DIR [CUDA_INCLUDE_DIR]
# HEADERS_DIR holds tensorrt_llm/executor/executor.h and the headers it includes (a wheel's include/ folder, a
# source tree's cpp/include, or copies rebuilt in a temporary folder). Links nothing: the full build needs
# libtensorrt_llm.so (see CMakeLists.txt, TRTD_TRTLLM_ROOT).
set -eu
headers=${1:?usage: compile-check.sh HEADERS_DIR [CUDA_INCLUDE_DIR]}
cuda=${2:-$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")/include}
[ -f "$cuda/cuda_fp16.h" ] || cuda=/usr/local/cuda/include
here=$(cd "$(dirname "$0")/.." && pwd)
cxx=${CXX:-g++}
for abi in 1 0; do
  for src in trtd_trtllm_shim.cpp src/engine_config.cpp src/context_phase_blob.cpp src/mini_json.cpp; do
    "$cxx" -std=c++17 -Wall -Wextra -Werror -fsyntax-only -D_GLIBCXX_USE_CXX11_ABI=$abi \
      -I"$here" -I"$here/../include" -I"$headers" -I"$cuda" "$here/$src"
  done
  echo "compile check passed (_GLIBCXX_USE_CXX11_ABI=$abi, $("$cxx" --version | head -1), CUDA headers $cuda)"
done
