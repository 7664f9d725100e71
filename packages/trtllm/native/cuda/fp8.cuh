// FP8 linear layers of the CUDA executor (compressed-tensors FP8 checkpoints: E4M3 weights with one scale per
// output channel, model_config.hpp Fp8Weights). Weights are never dequantized in memory:
//   - up to 8 rows (decode): gemv_fp8 streams the E4M3 weights (half the bytes of bf16) against the bf16/fp16
//     activations, fp32 accumulation, the channel scale applied to the sum (weight-only quantization, W8A16);
//   - more rows (prefill, large decode batches): the activations are quantized to E4M3 with one scale per row
//     (quantize_rows_fp8: absmax / 448, saturating), and cuBLASLt multiplies the two FP8 matrices on the tensor
//     cores with outer-vector scaling (a scale per weight row and per activation row) into bf16/fp16 (W8A8).
//     Where cuBLASLt offers no outer-vector-scaled FP8 GEMM (neither the H200 nor the H100 tried on 2026-12-07, with
//     CUDA 13.0's cuBLAS), the same FP8 product runs unscaled into an fp32 scratch, a block of rows at a time, and
//     one elementwise pass applies both scales and rounds once to the model dtype.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "kernels.cuh"

namespace trtd::cuda {

// y[rows][out] = scale[o] * sum_c x[rows][c] * fp8(w[o][c]) in the model dtype, rows <= 8, in a multiple of 16.
// False when not handled (rows > 8 or in % 16).
bool gemv_fp8(DType dt, const uint8_t * w, const float * scale, const void * x, void * y, int out, int in, int rows, cudaStream_t s);

// xq[r] = e4m3(x[r] / xs[r]) with xs[r] = max|x[r]| / 448 (1 for an all-zero row), saturating; in a multiple of 16.
void quantize_rows_fp8(DType dt, const void * x, uint8_t * xq, float * xs, int rows, int in, cudaStream_t s);

// cuBLASLt FP8 GEMMs: y[rows][out] = (xq . w^T) * ws[o] * xs[r], one plan (descriptors and the heuristic's
// algorithm) cached per shape. The stream and the workspace are fixed at construction (the plans run inside CUDA
// graph captures too). The scaling (outer-vector in cuBLASLt, or the fp32 scratch + scaling pass) is chosen at
// construction: Auto probes cuBLASLt; Scratch forces the fallback (the kernel check tests both).
class Fp8Gemm {
public:
    enum class Scaling { Auto, Scratch };
    // The fallback's scratch: 64 MiB of fp32 products, so a 28,672-wide layer takes 576 rows per GEMM.
    static constexpr size_t kScratchBytes = size_t(64) << 20;
    Fp8Gemm(DType out_dtype, cudaStream_t stream, void * workspace, size_t workspace_bytes, Scaling scaling = Scaling::Auto,
            size_t scratch_bytes = kScratchBytes);
    ~Fp8Gemm();
    Fp8Gemm(const Fp8Gemm &) = delete;
    Fp8Gemm & operator=(const Fp8Gemm &) = delete;
    void run(const uint8_t * w, const float * ws, const uint8_t * xq, const float * xs, void * y, int out, int in, int rows);
    // Whether cuBLASLt applies the scales (false: the fp32 scratch path).
    bool outer_vector() const { return outer_; }
    // Device bytes this object allocated itself (the fallback's scratch).
    size_t scratch_bytes() const { return scratch_bytes_; }

private:
    struct Plan;
    Plan & plan(int out, int in, int rows);
    std::unique_ptr<Plan> make_plan(bool outer, int out, int in, int rows);
    DType dt_;
    cudaStream_t stream_;
    void * ws_;
    size_t ws_bytes_;
    void * lt_ = nullptr;  // cublasLtHandle_t
    bool outer_ = true;
    float * scratch_ = nullptr;  // fallback only: fp32 products of up to scratch_bytes_ / 4 elements
    size_t scratch_bytes_ = 0;
    std::map<std::tuple<int, int, int>, std::unique_ptr<Plan>> plans_;
};

}  // namespace trtd::cuda
