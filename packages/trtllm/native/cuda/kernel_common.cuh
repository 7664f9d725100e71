// What the CUDA executor's kernel files share (kernels.cu, fp8.cu): the model dtype's conversions and rounding, the
// launch check, and the small-batch GEMMs' grid size.
#pragma once
#include <algorithm>
#include <cstdlib>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdexcept>
#include <string>

namespace trtd::cuda {

__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
// Rounds through the model dtype: where HF materializes an intermediate tensor in bf16/fp16.
template <typename T> __device__ __forceinline__ float rnd(float x) { return to_f(from_f<T>(x)); }

// Throws with `what` when the last launch failed.
inline void check_launch(const char * what) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A non-negative integer (bytes, counts) from the environment variable `name`; `dflt` when it is unset or empty.
inline long env_nonnegative(const char * name, long dflt) {
    const char * e = std::getenv(name);
    return e && *e ? std::max(0L, std::atol(e)) : dflt;
}

// CTAs per SM that a small-batch GEMM's grid may reach (the rest loop): 8 unless TRTD_CUDA_GEMV_CTAS_PER_SM says
// otherwise (a tuning knob for the GPU benches; tools/gpu/gemv_bench sweeps it in one process through this reference).
inline int & small_gemm_ctas_per_sm() {
    static int n = [] {
        const char * e = std::getenv("TRTD_CUDA_GEMV_CTAS_PER_SM");
        const int v = e ? std::atoi(e) : 0;
        return v >= 1 && v <= 32 ? v : 8;
    }();
    return n;
}

// Bytes of each of its first rows that a small-batch GEMM's warp asks L2 for before waiting on the previous kernel
// (PDL). None by default: measured on an H100 (docs/benchmarks/cuda-executor.md, run 18), prefetching whole rows made
// the chained batch-1 GEMMs of the 8B shape 15% slower (the prefetches of thousands of warps flood the memory system
// ahead of the loads that need the bytes now, and overflow L2). TRTD_CUDA_GEMV_PREFETCH_BYTES sets it (the GPU
// benches sweep it through this reference); a launcher may ask for more where HBM is otherwise idle.
inline long & gemv_prefetch_bytes() {
    static long n = env_nonnegative("TRTD_CUDA_GEMV_PREFETCH_BYTES", 0);
    return n;
}
// Whether the small-batch GEMMs issue their first group of weight loads before waiting on the previous kernel (PDL),
// into registers: on unless TRTD_CUDA_GEMV_EARLY=0 (the GPU benches' A/B).
inline int gemv_early_loads() {
    static const int on = [] { const char * e = std::getenv("TRTD_CUDA_GEMV_EARLY"); return !(e && *e == '0'); }();
    return on;
}

// Elements of a row of row_elems to prefetch: prefetch_bytes (< 0: gemv_prefetch_bytes()) over the element size.
inline int gemv_prefetch_elems(int row_elems, size_t elem_bytes, long prefetch_bytes = -1) {
    return int(std::min<long>(row_elems, (prefetch_bytes < 0 ? gemv_prefetch_bytes() : prefetch_bytes) / long(elem_bytes)));
}

// CTAs of a small-batch GEMM over `warp_rows` items of a warp each, `warps` warps per CTA: at most
// small_gemm_ctas_per_sm() CTAs per SM (the rest loop), on the device of the first call.
inline int small_gemm_grid(int warp_rows, int warps) {
    static const int sms = [] { int d = 0, n = 132; cudaGetDevice(&d); cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, d); return n; }();
    return std::min((warp_rows + warps - 1) / warps, sms * small_gemm_ctas_per_sm());
}

}  // namespace trtd::cuda
