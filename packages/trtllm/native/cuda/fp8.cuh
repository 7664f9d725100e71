// FP8 linear layers of the CUDA executor (compressed-tensors FP8 checkpoints: E4M3 weights with one scale per
// output channel, model_config.hpp Fp8Weights). Weights are never dequantized in memory:
//   - up to 8 rows (decode): gemv_fp8 streams the E4M3 weights (half the bytes of bf16) against the bf16/fp16
//     activations, fp32 accumulation, the channel scale applied to the sum (weight-only quantization, W8A16);
//   - more rows (prefill, large decode batches): the activations are quantized to E4M3 with one scale per row
//     (quantize_rows_fp8: absmax / 448, saturating), and cuBLASLt multiplies the two FP8 matrices on the tensor
//     cores with outer-vector scaling (a scale per weight row and per activation row) into bf16/fp16 (W8A8).
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

// cuBLASLt FP8 GEMMs with outer-vector scaling: y[rows][out] = (xq . w^T) * ws[o] * xs[r], one plan (descriptors
// and the heuristic's algorithm) cached per shape. The stream and the workspace are fixed at construction (the plans
// run inside CUDA graph captures too).
class Fp8Gemm {
public:
    Fp8Gemm(DType out_dtype, cudaStream_t stream, void * workspace, size_t workspace_bytes);
    ~Fp8Gemm();
    Fp8Gemm(const Fp8Gemm &) = delete;
    Fp8Gemm & operator=(const Fp8Gemm &) = delete;
    void run(const uint8_t * w, const float * ws, const uint8_t * xq, const float * xs, void * y, int out, int in, int rows);

private:
    struct Plan;
    Plan & plan(int out, int in, int rows);
    DType dt_;
    cudaStream_t stream_;
    void * ws_;
    size_t ws_bytes_;
    void * lt_ = nullptr;  // cublasLtHandle_t
    std::map<std::tuple<int, int, int>, std::unique_ptr<Plan>> plans_;
};

}  // namespace trtd::cuda
