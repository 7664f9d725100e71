// FP8 linear layers (see fp8.cuh).
#include "fp8.cuh"
#include "kernel_common.cuh"

#include <algorithm>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdexcept>
#include <string>

namespace trtd::cuda {

namespace {

// 16 E4M3 values (one 16-byte load) to float, exactly (E4M3 -> half is exact).
__device__ __forceinline__ void fp8x16_to_float(const uint4 & u, float f[16]) {
    const __nv_fp8x2_storage_t * p = reinterpret_cast<const __nv_fp8x2_storage_t *>(&u);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        const __half2 h = __half2(__nv_cvt_fp8x2_to_halfraw2(p[k], __NV_E4M3));
        const float2 v = __half22float2(h);
        f[2 * k] = v.x;
        f[2 * k + 1] = v.y;
    }
}

template <typename T> __device__ __forceinline__ void load16(const T * p, float f[16]) {
    const uint4 a = __ldg(reinterpret_cast<const uint4 *>(p)), b = __ldg(reinterpret_cast<const uint4 *>(p + 8));
    const T * ea = reinterpret_cast<const T *>(&a);
    const T * eb = reinterpret_cast<const T *>(&b);
#pragma unroll
    for (int k = 0; k < 8; ++k) { f[k] = to_f(ea[k]); f[8 + k] = to_f(eb[k]); }
}

constexpr int kWarps = 8, kUnroll = 2;

// A warp per weight row: each lane takes 16 weights per load (512 per warp and load), all M rows of x against them.
template <typename T, int M>
__global__ void __launch_bounds__(kWarps * 32) gemv_fp8_k(const uint8_t * __restrict__ W, const float * __restrict__ scale,
                                                          const T * __restrict__ X, T * __restrict__ Y, int out, int in) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int r = blockIdx.x * kWarps + warp; r < out; r += gridDim.x * kWarps) {
        const uint8_t * w = W + size_t(r) * in;
        float acc[M];
#pragma unroll
        for (int m = 0; m < M; ++m) acc[m] = 0.f;
        int c = lane * 16;
        for (; c + (kUnroll - 1) * 512 < in; c += kUnroll * 512) {
            uint4 wv[kUnroll];
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) wv[u] = __ldg(reinterpret_cast<const uint4 *>(w + c + u * 512));
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {
                float wf[16];
                fp8x16_to_float(wv[u], wf);
#pragma unroll
                for (int m = 0; m < M; ++m) {
                    float xf[16];
                    load16(X + size_t(m) * in + c + u * 512, xf);
#pragma unroll
                    for (int k = 0; k < 16; ++k) acc[m] += wf[k] * xf[k];
                }
            }
        }
        for (; c < in; c += 512) {
            float wf[16];
            fp8x16_to_float(__ldg(reinterpret_cast<const uint4 *>(w + c)), wf);
#pragma unroll
            for (int m = 0; m < M; ++m) {
                float xf[16];
                load16(X + size_t(m) * in + c, xf);
#pragma unroll
                for (int k = 0; k < 16; ++k) acc[m] += wf[k] * xf[k];
            }
        }
#pragma unroll
        for (int m = 0; m < M; ++m)
            for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
        if (lane == 0) {
            const float s = scale[r];
#pragma unroll
            for (int m = 0; m < M; ++m) Y[size_t(m) * out + r] = from_f<T>(acc[m] * s);
        }
    }
}

template <typename T>
void gemv_fp8_rows(int rows, const uint8_t * w, const float * scale, const T * x, T * y, int out, int in, int grid, cudaStream_t s) {
#define TRTD_FP8_M(MV) \
    case MV: gemv_fp8_k<T, MV><<<grid, kWarps * 32, 0, s>>>(w, scale, x, y, out, in); break;
    switch (rows) {
        TRTD_FP8_M(1) TRTD_FP8_M(2) TRTD_FP8_M(3) TRTD_FP8_M(4) TRTD_FP8_M(5) TRTD_FP8_M(6) TRTD_FP8_M(7)
        default: gemv_fp8_k<T, 8><<<grid, kWarps * 32, 0, s>>>(w, scale, x, y, out, in); break;
    }
#undef TRTD_FP8_M
}

constexpr int kQuantThreads = 256;
constexpr float kE4M3Max = 448.f;

template <typename T>
__global__ void __launch_bounds__(kQuantThreads) quantize_rows_k(const T * __restrict__ X, uint8_t * __restrict__ Q, float * __restrict__ S, int in) {
    __shared__ float red[kQuantThreads / 32];
    const int r = blockIdx.x;
    const T * x = X + size_t(r) * in;
    float m = 0.f;
    for (int c = threadIdx.x; c < in; c += kQuantThreads) m = fmaxf(m, fabsf(to_f(x[c])));
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = m;
    __syncthreads();
    m = 0.f;
#pragma unroll
    for (int k = 0; k < kQuantThreads / 32; ++k) m = fmaxf(m, red[k]);
    const float scale = m > 0.f ? m / kE4M3Max : 1.f;
    const float inv = 1.f / scale;
    for (int c = 2 * threadIdx.x; c < in; c += 2 * kQuantThreads) {
        const float2 v = make_float2(to_f(x[c]) * inv, to_f(x[c + 1]) * inv);
        const __nv_fp8x2_storage_t q = __nv_cvt_float2_to_fp8x2(v, __NV_SATFINITE, __NV_E4M3);
        *reinterpret_cast<__nv_fp8x2_storage_t *>(Q + size_t(r) * in + c) = q;
    }
    if (threadIdx.x == 0) S[r] = scale;
}

// y[r][o] = acc[r][o] * xs[r] * ws[o] in the model dtype: the fallback's scaling pass (row-major, ld out).
template <typename T>
__global__ void scale_products_k(const float * __restrict__ acc, const float * __restrict__ xs, const float * __restrict__ ws,
                                 T * __restrict__ y, int out, size_t n) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        const size_t r = i / size_t(out);
        const int o = int(i - r * size_t(out));
        y[i] = from_f<T>(acc[i] * xs[r] * ws[o]);
    }
}

void check_lt(cublasStatus_t st, const char * what) {
    if (st != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": cuBLASLt status " + std::to_string(int(st)));
}

}  // namespace

bool gemv_fp8(DType dt, const uint8_t * w, const float * scale, const void * x, void * y, int out, int in, int rows, cudaStream_t s) {
    if (rows < 1 || rows > 8 || in % 16) return false;
    const int grid = small_gemm_grid(out, kWarps);
    if (dt == DType::BF16)
        gemv_fp8_rows(rows, w, scale, static_cast<const __nv_bfloat16 *>(x), static_cast<__nv_bfloat16 *>(y), out, in, grid, s);
    else
        gemv_fp8_rows(rows, w, scale, static_cast<const __half *>(x), static_cast<__half *>(y), out, in, grid, s);
    check_launch("gemv_fp8");
    return true;
}

void quantize_rows_fp8(DType dt, const void * x, uint8_t * xq, float * xs, int rows, int in, cudaStream_t s) {
    if (rows <= 0) return;
    if (in % 16) throw std::runtime_error("quantize_rows_fp8: the row length must be a multiple of 16");
    if (dt == DType::BF16) quantize_rows_k<<<rows, kQuantThreads, 0, s>>>(static_cast<const __nv_bfloat16 *>(x), xq, xs, in);
    else quantize_rows_k<<<rows, kQuantThreads, 0, s>>>(static_cast<const __half *>(x), xq, xs, in);
    check_launch("quantize_rows_fp8");
}

struct Fp8Gemm::Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    ~Plan() {
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (op) cublasLtMatmulDescDestroy(op);
    }
};

Fp8Gemm::Fp8Gemm(DType out_dtype, cudaStream_t stream, void * workspace, size_t workspace_bytes, Scaling scaling, size_t scratch_bytes)
    : dt_(out_dtype), stream_(stream), ws_(workspace), ws_bytes_(workspace_bytes) {
    cublasLtHandle_t h = nullptr;
    check_lt(cublasLtCreate(&h), "cublasLtCreate");
    lt_ = h;
    // Outer-vector scaling is a property of the GPU and the cuBLAS build: probe it once on a small shape.
    outer_ = scaling == Scaling::Auto && make_plan(true, 256, 256, 64) != nullptr;
    if (!outer_) {
        const cudaError_t e = cudaMalloc(&scratch_, scratch_bytes);
        if (e != cudaSuccess) {
            cublasLtDestroy(h);
            throw std::runtime_error(std::string("FP8 GEMM scratch: ") + cudaGetErrorString(e));
        }
        scratch_bytes_ = scratch_bytes;
    }
}

Fp8Gemm::~Fp8Gemm() {
    plans_.clear();
    if (scratch_) cudaFree(scratch_);
    if (lt_) cublasLtDestroy(static_cast<cublasLtHandle_t>(lt_));
}

// Column-major view of the row-major operands: D (out x rows, ld out) = op(A) . B with A = w as in x out (ld in,
// transposed: the "TN" layout FP8 requires) and B = xq as in x rows (ld in). Outer-vector plans write the model
// dtype with the scale pointers set per call; the others write unscaled fp32 products. Null when the heuristic has
// no algorithm.
std::unique_ptr<Fp8Gemm::Plan> Fp8Gemm::make_plan(bool outer, int out, int in, int rows) {
    auto p = std::make_unique<Plan>();
    check_lt(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    check_lt(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "TRANSA");
    check_lt(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "TRANSB");
    if (outer) {  // a cuBLAS that does not know the attribute has no such GEMM either
        const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
        if (cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof mode) != CUBLAS_STATUS_SUCCESS ||
            cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof mode) != CUBLAS_STATUS_SUCCESS)
            return nullptr;
    }
    const cudaDataType_t dtype = !outer ? CUDA_R_32F : dt_ == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
    check_lt(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_8F_E4M3, uint64_t(in), uint64_t(out), int64_t(in)), "layout A");
    check_lt(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_8F_E4M3, uint64_t(in), uint64_t(rows), int64_t(in)), "layout B");
    check_lt(cublasLtMatrixLayoutCreate(&p->d, dtype, uint64_t(out), uint64_t(rows), int64_t(out)), "layout D");
    cublasLtMatmulPreference_t pref = nullptr;
    check_lt(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    const uint64_t wsb = ws_bytes_;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(lt_), p->op, p->a, p->b, p->d, p->d, pref, 1,
                                                             &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) return nullptr;
    p->algo = res.algo;
    return p;
}

Fp8Gemm::Plan & Fp8Gemm::plan(int out, int in, int rows) {
    auto key = std::make_tuple(out, in, rows);
    auto it = plans_.find(key);
    if (it != plans_.end()) return *it->second;
    auto p = make_plan(outer_, out, in, rows);
    if (!p)
        throw std::runtime_error("cuBLASLt has no FP8 GEMM (" + std::string(outer_ ? "outer-vector scales" : "fp32 out") + ") for " +
                                 std::to_string(rows) + " x " + std::to_string(in) + " x " + std::to_string(out) + " on this GPU");
    Plan & ref = *p;
    plans_.emplace(key, std::move(p));
    return ref;
}

void Fp8Gemm::run(const uint8_t * w, const float * ws, const uint8_t * xq, const float * xs, void * y, int out, int in, int rows) {
    const float one = 1.f, zero = 0.f;
    auto lt = static_cast<cublasLtHandle_t>(lt_);
    if (outer_) {
        Plan & p = plan(out, in, rows);
        check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws, sizeof ws), "A_SCALE_POINTER");
        check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xs, sizeof xs), "B_SCALE_POINTER");
        check_lt(cublasLtMatmul(lt, p.op, &one, w, p.a, xq, p.b, &zero, y, p.d, y, p.d, &p.algo, ws_, ws_bytes_, stream_), "cublasLtMatmul (FP8)");
        return;
    }
    // Blocks of rows whose fp32 products fit the scratch (a multiple of 16 rows: FP8 wants 16-byte-aligned operands).
    const int block = std::max(16, int(std::min<size_t>(size_t(rows), scratch_bytes_ / (4 * size_t(out)))) / 16 * 16);
    const size_t esize = 2;  // bf16 / fp16
    for (int r0 = 0; r0 < rows; r0 += block) {
        const int n = std::min(block, rows - r0);
        Plan & p = plan(out, in, n);
        check_lt(cublasLtMatmul(lt, p.op, &one, w, p.a, xq + size_t(r0) * in, p.b, &zero, scratch_, p.d, scratch_, p.d, &p.algo, ws_,
                                ws_bytes_, stream_),
                 "cublasLtMatmul (FP8, fp32 out)");
        const size_t count = size_t(n) * out;
        const int grid = int(std::min<size_t>((count + 255) / 256, 4096));
        void * yr = static_cast<unsigned char *>(y) + size_t(r0) * out * esize;
        if (dt_ == DType::BF16)
            scale_products_k<<<grid, 256, 0, stream_>>>(scratch_, xs + r0, ws, static_cast<__nv_bfloat16 *>(yr), out, count);
        else
            scale_products_k<<<grid, 256, 0, stream_>>>(scratch_, xs + r0, ws, static_cast<__half *>(yr), out, count);
        check_launch("FP8 GEMM scaling");
    }
}

}  // namespace trtd::cuda
