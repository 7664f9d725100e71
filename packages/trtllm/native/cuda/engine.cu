// The device side of the CUDA executor (engine.hpp).
#include "engine.hpp"
#include "kernel_common.cuh"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cublas_v2.h>
#include <stdexcept>
#include <unistd.h>

namespace trtd::cuda {

void cuda_check(cudaError_t e, const char * what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

namespace {

void cublas_check(cublasStatus_t s, const char * what) {
    if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(int(s)));
}

template <typename T> T * dev_alloc(size_t count, const char * what) {
    void * p = nullptr;
    cuda_check(cudaMalloc(&p, std::max<size_t>(count * sizeof(T), 16)), what);
    return static_cast<T *>(p);
}

uint16_t float_to_half_bits(float f, DType dt) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (dt == DType::BF16) {
        if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
        return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // round to nearest even
    }
    // fp16, round to nearest even (values here are cos/sin in [-1, 1])
    const uint32_t sign = (u >> 16) & 0x8000u;
    const int exp = int((u >> 23) & 0xff) - 127 + 15;
    uint32_t man = u & 0x7fffffu;
    if (exp <= 0) {
        if (exp < -10) return uint16_t(sign);
        man |= 0x800000u;
        const int shift = 14 - exp;
        uint32_t h = man >> shift;
        const uint32_t rem = man & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
        return uint16_t(sign | h);
    }
    if (exp >= 31) return uint16_t(sign | 0x7c00u);
    uint32_t h = (uint32_t(exp) << 10) | (man >> 13);
    const uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return uint16_t(sign | h);
}

constexpr size_t kMaxUpdates = 16384;

struct Descriptor {
    char magic[8];
    int32_t pid, device;
    char uuid[16];
    cudaIpcMemHandle_t handle;
    uint64_t pool_base, block_bytes, checksum;
    int32_t num_blocks, num_tokens;
    char layout_fp[32];
};
const char kMagic[8] = {'T', 'R', 'T', 'D', 'K', 'V', '1', 0};

}  // namespace

void Step::clear() {
    ids.clear(); positions.clear(); slots.clear();
    num_decode = 0;
    dec_seq_len.clear(); dec_bt_row.clear();
    pf_q_start.clear(); pf_q_len.clear(); pf_ctx_len.clear(); pf_bt_row.clear();
    logits_rows.clear(); sampling.clear(); bt_updates.clear(); host_rows.clear();
    masks.clear(); hold.clear();
}

struct Engine::Layout {
    size_t ids = 0, pos = 0, slots = 0, dec_len = 0, dec_bt = 0, pf_start = 0, pf_len = 0, pf_ctx = 0, pf_bt = 0;
    size_t tile_seq = 0, tile_row0 = 0, logit_rows = 0, params = 0, filtered = 0, upd_count = 0, upd_idx = 0, upd_val = 0;
    size_t bytes = 0;
    int num_tiles = 0, num_sampled = 0, num_filtered = 0, num_updates = 0;
};

struct Engine::Graph {
    cudaGraphExec_t exec = nullptr;
    ~Graph() { if (exec) cudaGraphExecDestroy(exec); }
};

Engine::Engine(const std::string & model_dir, const ModelConfig & cfg, const EngineConfig & ec) : cfg_(cfg), ec_(ec) {
    try {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) throw std::runtime_error("no CUDA device");
        if (ec_.device < 0 || ec_.device >= count)
            throw std::invalid_argument("device_id " + std::to_string(ec_.device) + " is out of range (" + std::to_string(count) + " CUDA devices)");
        cuda_check(cudaSetDevice(ec_.device), "cudaSetDevice");
        cudaDeviceProp prop{};
        cuda_check(cudaGetDeviceProperties(&prop, ec_.device), "cudaGetDeviceProperties");
        std::memcpy(uuid_bytes_, prop.uuid.bytes, 16);
        {
            static const char * hex = "0123456789abcdef";
            uuid_ = "GPU-";
            for (int i = 0; i < 16; ++i) {
                const unsigned char b = static_cast<unsigned char>(prop.uuid.bytes[i]);
                uuid_ += hex[b >> 4];
                uuid_ += hex[b & 15];
                if (i == 3 || i == 5 || i == 7 || i == 9) uuid_ += '-';
            }
        }
        const std::string & d = cfg_.torch_dtype;
        dt_ = (d == "float16" || d == "half") ? DType::F16 : DType::BF16;  // bf16 for bf16, fp32 and unspecified checkpoints
        if (cfg_.hidden_size % 8 || cfg_.intermediate_size % 8) throw std::invalid_argument("hidden and intermediate sizes must be multiples of 8");
        const int G = cfg_.num_heads / cfg_.num_kv_heads;
        const int D = cfg_.head_dim;
        if (D != 16 && D != 32 && D != 64 && D != 128 && D != 256)
            throw std::invalid_argument("head_dim " + std::to_string(D) + " is not supported (16, 32, 64, 128 or 256)");
        // decode attention's instantiations (kernels.cu decode_attention_g)
        if (G < 1 || G > 8 || (G != 1 && G != 2 && G != 4 && G != 8 && D != 64 && D != 128))
            throw std::invalid_argument("num_attention_heads / num_key_value_heads = " + std::to_string(G) + " at head_dim " + std::to_string(D) +
                                        " is not supported (1, 2, 4 or 8 at any head_dim; 1 to 8 at head_dim 64 and 128)");
        if (cfg_.fp8.on && (cfg_.hidden_size % 16 || cfg_.intermediate_size % 16 || (cfg_.num_heads * D) % 16))
            throw std::invalid_argument("FP8 weights need hidden, intermediate and attention sizes that are multiples of 16");
        if (cfg_.qk_norm && cfg_.num_heads + cfg_.num_kv_heads > kQkvPreMaxNormHeads)
            throw std::invalid_argument("q/k norms over more than " + std::to_string(kQkvPreMaxNormHeads) + " heads are not supported");

        cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
        cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
        cuda_check(cudaEventCreateWithFlags(&host_copies_, cudaEventDisableTiming), "cudaEventCreate");
        cublasHandle_t h = nullptr;
        cublas_check(cublasCreate(&h), "cublasCreate");
        cublas_ = h;
        cublas_ws_bytes_ = size_t(32) << 20;
        cublas_ws_ = dev_alloc<unsigned char>(cublas_ws_bytes_, "cuBLAS workspace");
        cublas_check(cublasSetStream(h, stream_), "cublasSetStream");
        cublas_check(cublasSetWorkspace(h, cublas_ws_, cublas_ws_bytes_), "cublasSetWorkspace");  // after SetStream, which resets it
        cublas_check(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");

        load_weights(model_dir);

        // RoPE table: angle = float(pos) * float(inv_freq) in fp32 as HF computes it, cos/sin times the scaling's
        // attention factor in fp32 (1 but for yarn), rounded to the model dtype.
        {
            const std::vector<double> inv = rope_inv_freq(cfg_);
            const float af = float(cfg_.rope_scaling.attention_factor);
            const int half = D / 2;
            std::vector<uint16_t> table(size_t(ec_.max_ctx) * half * 2);
            for (int p = 0; p < ec_.max_ctx; ++p)
                for (int i = 0; i < half; ++i) {
                    const float a = float(p) * float(inv[size_t(i)]);
                    table[(size_t(p) * half + i) * 2] = float_to_half_bits(float(std::cos(double(a))) * af, dt_);
                    table[(size_t(p) * half + i) * 2 + 1] = float_to_half_bits(float(std::sin(double(a))) * af, dt_);
                }
            cos_sin_ = dev_alloc<uint16_t>(table.size(), "RoPE table");
            cuda_check(cudaMemcpy(cos_sin_, table.data(), table.size() * 2, cudaMemcpyHostToDevice), "RoPE table upload");
        }

        // KV pool: one cudaMalloc (IPC names whole allocations), blocks in the ABI's layout.
        pool_.num_layers = cfg_.num_layers;
        pool_.num_kv_heads = cfg_.num_kv_heads;
        pool_.head_dim = D;
        pool_.tokens_per_block = ec_.tokens_per_block;
        num_blocks_ = ec_.num_blocks > 0 ? ec_.num_blocks : int(std::max<int64_t>(1, ec_.kv_bytes / int64_t(block_bytes())));
        pool_.base = dev_alloc<unsigned char>(size_t(num_blocks_) * block_bytes(), "KV pool");
        bt_stride_ = (ec_.max_ctx + ec_.tokens_per_block - 1) / ec_.tokens_per_block;
        block_tables_ = dev_alloc<int>(size_t(ec_.max_batch + 1) * bt_stride_, "block tables");
        cuda_check(cudaMemset(block_tables_, 0, size_t(ec_.max_batch + 1) * bt_stride_ * 4), "block tables");

        // Activations for the largest step.
        max_rows_ = std::max(ec_.max_tokens, ec_.max_batch);
        const size_t H = cfg_.hidden_size, I = cfg_.intermediate_size, QKV = size_t(cfg_.num_heads + 2 * cfg_.num_kv_heads) * D;
        x_ = dev_alloc<uint16_t>(max_rows_ * H, "activations");
        x_alt_ = dev_alloc<uint16_t>(size_t(8) * H, "activations");  // the folded norms' second residual (rows <= 8)
        xn_ = dev_alloc<uint16_t>(max_rows_ * H, "activations");
        qkv_ = dev_alloc<uint16_t>(max_rows_ * QKV, "activations");
        attn_ = dev_alloc<uint16_t>(max_rows_ * size_t(cfg_.num_heads) * D, "activations");
        tmp_ = dev_alloc<uint16_t>(max_rows_ * H, "activations");
        gu_ = dev_alloc<uint16_t>(max_rows_ * 2 * I, "activations");
        act_ = dev_alloc<uint16_t>(max_rows_ * I, "activations");
        if (cfg_.fp8.on) {
            const size_t max_in = std::max({H, I, size_t(cfg_.num_heads) * D});
            xq_ = dev_alloc<uint8_t>(max_rows_ * max_in, "FP8 activations");
            xs_ = dev_alloc<float>(max_rows_, "FP8 activation scales");
            fp8_gemm_ = std::make_unique<Fp8Gemm>(dt_, stream_, cublas_ws_, cublas_ws_bytes_);
        }
        logits_ = dev_alloc<float>(size_t(ec_.max_batch) * cfg_.vocab_size, "logits");
        max_splits_ = 16;
        const size_t ws = decode_attention_workspace_bytes(ec_.max_batch, cfg_.num_heads, D, max_splits_);
        attn_ws_ = dev_alloc<unsigned char>(ws, "attention workspace");
        cuda_check(cudaMemset(attn_ws_, 0, ws), "attention workspace");  // the split arrival counters start at zero
        attn_counters_ = decode_attention_counters_offset(ec_.max_batch, cfg_.num_heads, D, max_splits_);
        argmax_ws_ = dev_alloc<unsigned char>(argmax_workspace_bytes(ec_.max_batch), "argmax workspace");
        cuda_check(cudaMemset(argmax_ws_, 0, argmax_workspace_bytes(ec_.max_batch)), "argmax workspace");

        const int max_tiles = max_rows_ / 64 + ec_.max_batch + 1;
        in_bytes_ = size_t(4) * (3 * size_t(max_rows_) + 6 * size_t(ec_.max_batch) + 2 * size_t(max_tiles) + 2 * size_t(max_rows_) + 16) +
                    sizeof(SampleParams) * size_t(max_rows_) + 16 + 4 * (2 * kMaxUpdates + 4) + 256;
        cuda_check(cudaHostAlloc(reinterpret_cast<void **>(&in_host_), in_bytes_, cudaHostAllocDefault), "pinned step buffer");
        in_dev_ = dev_alloc<unsigned char>(in_bytes_, "step buffer");
        tokens_dev_ = dev_alloc<int>(size_t(2) * max_rows_, "tokens");
        cuda_check(cudaHostAlloc(reinterpret_cast<void **>(&tokens_host_), size_t(2) * max_rows_ * 4, cudaHostAllocDefault), "pinned tokens");
        checksum_dev_ = dev_alloc<unsigned long long>(1, "checksum");
        if (ec_.device_masks) {  // sized once for the largest step: nothing is allocated per step
            mask_words_ = (cfg_.vocab_size + 31) / 32;
            mask_masks_off_ = ((size_t(ec_.max_batch) * sizeof(MaskRow) + 255) / 256) * 256;
            const size_t bytes = mask_masks_off_ + size_t(ec_.max_batch) * size_t(mask_words_) * 4;
            cuda_check(cudaHostAlloc(reinterpret_cast<void **>(&mask_host_), bytes, cudaHostAllocDefault), "pinned mask staging");
            mask_dev_ = dev_alloc<unsigned char>(bytes, "token masks");
            held_ = dev_alloc<float>(size_t(ec_.max_batch) * cfg_.vocab_size, "held logits");
        }

        if (const char * t = std::getenv("TRTD_CUDA_STEP_TIMING"); t && *t == '1') {
            timing_.on = true;
            cuda_check(cudaEventCreate(&timing_.t0), "cudaEventCreate");
            cuda_check(cudaEventCreate(&timing_.t1), "cudaEventCreate");
        }
        tune_small_gemms();
        for (int b : {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256})
            if (b < ec_.max_batch) buckets_.push_back(b);
        buckets_.push_back(ec_.max_batch);
    } catch (...) {
        release();  // what was made before the failure (a missing tensor, an allocation): no destructor runs
        throw;
    }
}

namespace {
double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Engine::~Engine() { release(); }

void Engine::release() {
    cudaSetDevice(ec_.device);
    if (timing_.on) {
        const double n = double(std::max<uint64_t>(timing_.steps, 1)), g = double(std::max<uint64_t>(timing_.graph_steps, 1));
        std::fprintf(stderr,
                     "trtd-cuda timing: %llu steps: gpu %.3f ms, run() %.3f ms; %llu graph replays: gpu %.3f ms, run() %.3f ms; "
                     "host gap between back-to-back steps %.3f ms (%llu gaps < 5 ms)\n",
                     (unsigned long long)timing_.steps, timing_.gpu_ms / n, timing_.run_ms / n,
                     (unsigned long long)timing_.graph_steps, timing_.graph_gpu_ms / g, timing_.graph_run_ms / g,
                     timing_.gap_ms / double(std::max<uint64_t>(timing_.gaps, 1)), (unsigned long long)timing_.gaps);
        cudaEventDestroy(timing_.t0);
        cudaEventDestroy(timing_.t1);
    }
    if (stream_) cudaStreamSynchronize(stream_);
    graphs_.clear();
    for (auto & p : peers_) cudaIpcCloseMemHandle(p.second);
    if (cublas_) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
    fp8_gemm_.reset();
    for (void * p : {weights_, cos_sin_, pool_.base, static_cast<void *>(block_tables_), x_, x_alt_, xn_, qkv_, attn_, tmp_, gu_, act_,
                     static_cast<void *>(logits_), attn_ws_, argmax_ws_, static_cast<void *>(in_dev_), static_cast<void *>(tokens_dev_),
                     static_cast<void *>(keys_), static_cast<void *>(keys_out_), static_cast<void *>(ids_), static_cast<void *>(ids_out_),
                     static_cast<void *>(sort_offsets_), sort_temp_, static_cast<void *>(blocks_dev_), static_cast<void *>(checksum_dev_),
                     cublas_ws_, static_cast<void *>(scales_), static_cast<void *>(xq_), static_cast<void *>(xs_),
                     static_cast<void *>(mask_dev_), static_cast<void *>(held_)})
        if (p) cudaFree(p);
    if (in_host_) cudaFreeHost(in_host_);
    if (mask_host_) cudaFreeHost(mask_host_);
    if (tokens_host_) cudaFreeHost(tokens_host_);
    if (host_tmp_) cudaFreeHost(host_tmp_);
    if (import_host_sum_) cudaFreeHost(import_host_sum_);
    if (import_sync_.sum) cudaFree(import_sync_.sum);
    if (import_sync_.arrived) cudaFree(import_sync_.arrived);
    if (done_) cudaEventDestroy(done_);
    if (host_copies_) cudaEventDestroy(host_copies_);
    if (stream_) cudaStreamDestroy(stream_);
}

// y[rows][out] = x[rows][in] . w[out][in]^T (row-major; column-major "TN" for cuBLAS), fp32 accumulation.
// Up to 8 rows, the small-batch kernel where init measured it faster than cuBLAS for this shape.
void Engine::gemm(const void * w, const void * x, void * y, int out, int in, int rows, bool f32_out, const float * wscale,
                  long prefetch_bytes) {
    if (wscale) {
        const uint8_t * w8 = static_cast<const uint8_t *>(w);
        if (gemv_fp8(dt_, w8, wscale, x, y, out, in, rows, stream_)) return;
        quantize_rows_fp8(dt_, x, xq_, xs_, rows, in, stream_);
        fp8_gemm_->run(w8, wscale, xq_, xs_, y, out, in, rows);
        return;
    }
    if (small_gemm_picked(out, in, rows, f32_out) && trtd::cuda::gemv(dt_, w, x, y, out, in, rows, f32_out, stream_, prefetch_bytes))
        return;
    cublas_gemm(w, x, y, out, in, rows, f32_out);
}

bool Engine::small_gemm_picked(int out, int in, int rows, bool f32_out) const {
    if (rows > 8) return false;
    auto it = use_gemv_.find(gemv_key(out, in, rows, f32_out));
    return it != use_gemv_.end() && it->second;
}

// Times cuBLAS against the small-batch kernel for every weight shape at 1..8 rows (TRTD_CUDA_GEMV=0 / 1 forces
// cuBLAS / the kernel).
void Engine::tune_small_gemms() {
    const char * force = std::getenv("TRTD_CUDA_GEMV");
    const int D = cfg_.head_dim, nq = cfg_.num_heads, H = cfg_.hidden_size, I = cfg_.intermediate_size;
    struct Shape { const void * w; const void * x; void * y; int out, in; bool f32; const char * name; };
    const Layer & l0 = layers_[0];
    const Shape shapes[] = {{l0.wqkv, xn_, qkv_, (nq + 2 * cfg_.num_kv_heads) * D, H, false, "qkv"},
                            {l0.wo, attn_, tmp_, H, nq * D, false, "o"},
                            {l0.wgate_up, xn_, gu_, 2 * I, H, false, "gate_up"},
                            {l0.wdown, act_, tmp_, H, I, false, "down"},
                            {lm_head_, xn_, logits_, cfg_.vocab_size, H, true, "lm_head"}};
    cudaEvent_t a, b;
    cuda_check(cudaEventCreate(&a), "cudaEventCreate");
    cuda_check(cudaEventCreate(&b), "cudaEventCreate");
    auto time_it = [&](auto && fn) {
        fn();
        float best = 1e30f;
        for (int rep = 0; rep < 3; ++rep) {
            cudaEventRecord(a, stream_);
            for (int k = 0; k < 4; ++k) fn();
            cudaEventRecord(b, stream_);
            cudaEventSynchronize(b);
            float ms = 0;
            cudaEventElapsedTime(&ms, a, b);
            best = std::min(best, ms / 4);
        }
        return best;
    };
    // QKV and gate_up have fused forms (the norm before, the RoPE + KV write or SiLU * up after): there the choice
    // is between what forward() would launch either way, cuBLAS + add_rmsnorm + the separate kernel against the
    // fused small-batch GEMM, not between the bare GEMMs (which alone flip between runs at batch 1).
    const float eps = float(cfg_.rms_norm_eps);
    const int tune_pos[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tune_slots[8] = {-1, -1, -1, -1, -1, -1, -1, -1};  // no KV writes
    cuda_check(cudaMemcpy(in_dev_, tune_pos, sizeof tune_pos, cudaMemcpyHostToDevice), "tuning positions");
    cuda_check(cudaMemcpy(in_dev_ + sizeof tune_pos, tune_slots, sizeof tune_slots, cudaMemcpyHostToDevice), "tuning slots");
    const int * pos = reinterpret_cast<const int *>(in_dev_);
    const int * slots = reinterpret_cast<const int *>(in_dev_ + sizeof tune_pos);
    auto fused_time = [&](const Shape & sh, int m, float & tc, float & tg) {
        const bool qkv = sh.w == l0.wqkv;
        const GemvNorm norm{x_, tmp_, x_alt_, qkv ? l0.input_norm : l0.post_norm, eps};
        auto separate = [&] {
            add_rmsnorm(dt_, x_, tmp_, norm.weight, xn_, nullptr, m, H, eps, stream_);
            cublas_gemm(sh.w, xn_, sh.y, sh.out, sh.in, m, false);
            if (qkv) rope_kv_write(dt_, qkv_, pos, slots, cos_sin_, pool_, 0, m, nq, stream_);
            else silu_mul(dt_, gu_, act_, m, I, stream_);
        };
        auto fused = [&] {
            const bool folded = qkv ? gemv_rope_kv_write(dt_, sh.w, nullptr, qkv_, H, m, pos, slots, cos_sin_, pool_, 0, nq, stream_, &norm)
                                    : gemv_silu(dt_, sh.w, nullptr, act_, I, H, m, stream_, &norm);
            if (folded) return;
            add_rmsnorm(dt_, x_, tmp_, norm.weight, xn_, nullptr, m, H, eps, stream_);
            if (qkv) gemv_rope_kv_write(dt_, sh.w, xn_, qkv_, H, m, pos, slots, cos_sin_, pool_, 0, nq, stream_);
            else gemv_silu(dt_, sh.w, xn_, act_, I, H, m, stream_);
        };
        tc = time_it(separate);
        tg = time_it(fused);
    };
    std::string report;
    const int max_m = std::min({8, max_rows_, ec_.max_batch});
    for (const Shape & sh : shapes) {
        if (cfg_.fp8.on && sh.w != lm_head_) continue;  // FP8 layers: gemm() picks by row count (fp8.cuh)
        // (forward() never fuses the QKV epilogue of a model with biases or q/k norms: there the bare GEMMs compete)
        const bool fused_shape = fuse_enabled() && ((sh.w == l0.wqkv && !l0.pre.any()) || sh.w == l0.wgate_up);
        for (int m = 1; m <= max_m; ++m) {
            bool pick;
            float tc = 0, tg = 0;
            if (force && (*force == '0' || *force == '1')) {
                pick = *force == '1';
            } else if (fused_shape) {
                fused_time(sh, m, tc, tg);
                pick = tg < tc;
            } else {
                tc = time_it([&] { cublas_gemm(sh.w, sh.x, sh.y, sh.out, sh.in, m, sh.f32); });
                tg = time_it([&] { trtd::cuda::gemv(dt_, sh.w, sh.x, sh.y, sh.out, sh.in, m, sh.f32, stream_); });
                pick = tg < tc;
            }
            use_gemv_[gemv_key(sh.out, sh.in, m, sh.f32)] = pick;
            if (m == 1 || m == 8) {
                char line[160];
                std::snprintf(line, sizeof line, fused_shape ? " %s[%d] norm+cublas+epilogue %.1f us, fused %.1f us;" : " %s[%d] cublas %.1f us, gemv %.1f us;",
                              sh.name, m, tc * 1e3f, tg * 1e3f);
                report += line;
            }
        }
    }
    cuda_check(cudaStreamSynchronize(stream_), "small GEMM tuning");
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    if (timing_.on) std::fprintf(stderr, "trtd-cuda small GEMMs:%s\n", report.c_str());
}

bool Engine::fuse_enabled() {
    static const bool on = [] { const char * e = std::getenv("TRTD_CUDA_FUSE"); return !(e && *e == '0'); }();
    return on;
}

long Engine::o_prefetch_bytes() {
    static const long n = env_nonnegative("TRTD_CUDA_O_PREFETCH_BYTES", long(1) << 40);
    return n;
}

void Engine::cublas_gemm(const void * w, const void * x, void * y, int out, int in, int rows, bool f32_out) {
    const float one = 1.f, zero = 0.f;
    const cudaDataType_t t = dt_ == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
    cublas_check(cublasGemmEx(static_cast<cublasHandle_t>(cublas_), CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &one, w, t, in, x, t,
                              in, &zero, y, f32_out ? CUDA_R_32F : t, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
}

int Engine::splits_for(int batch) const {
    int sms = 132;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ec_.device);
    const int ctas = batch * cfg_.num_kv_heads;
    return std::max(1, std::min(max_splits_, (2 * sms + ctas - 1) / ctas));
}

int Engine::bucket_for(int batch) const {
    for (int b : buckets_) if (b >= batch) return b;
    return 0;
}

// Packs the step's arrays into the pinned buffer and copies them with one transfer. With bucket > 0 (a decode
// step replayed by a graph) the decode arrays are padded to the bucket, so their offsets are the same every step.
void Engine::upload(const Step & st, Layout & L, int bucket) {
    size_t off = 0;
    auto ints = [&](const std::vector<int> & v, size_t n, int pad) {
        const size_t at = off;
        int * dst = reinterpret_cast<int *>(in_host_ + off);
        const size_t have = std::min(v.size(), n);
        std::copy(v.begin(), v.begin() + long(have), dst);
        for (size_t i = have; i < n; ++i) dst[i] = pad;
        off += ((n * 4 + 15) / 16) * 16;
        return at;
    };
    const size_t rows = bucket ? size_t(bucket) : st.ids.size();
    const size_t nd = bucket ? size_t(bucket) : size_t(st.num_decode);
    L.ids = ints(st.ids, rows, 0);
    L.pos = ints(st.positions, rows, 0);
    L.slots = ints(st.slots, rows, -1);
    L.dec_len = ints(st.dec_seq_len, nd, 0);
    L.dec_bt = ints(st.dec_bt_row, nd, 0);
    // prefill sequences and their 64-row query tiles
    std::vector<int> tseq, trow;
    for (size_t i = 0; i < st.pf_q_start.size(); ++i)
        for (int r = 0; r < st.pf_q_len[i]; r += 64) { tseq.push_back(int(i)); trow.push_back(st.pf_q_start[i] + r); }
    L.num_tiles = int(tseq.size());
    L.pf_start = ints(st.pf_q_start, st.pf_q_start.size(), 0);
    L.pf_len = ints(st.pf_q_len, st.pf_q_len.size(), 0);
    L.pf_ctx = ints(st.pf_ctx_len, st.pf_ctx_len.size(), 0);
    L.pf_bt = ints(st.pf_bt_row, st.pf_bt_row.size(), 0);
    L.tile_seq = ints(tseq, tseq.size(), 0);
    L.tile_row0 = ints(trow, trow.size(), 0);
    L.logit_rows = ints(st.logits_rows, st.logits_rows.size(), 0);
    // sampling params of the sampled (temperature > 0) rows; filtered ones also sorted
    std::vector<SampleParams> params;
    std::vector<int> filtered;
    for (size_t i = 0; i < st.sampling.size(); ++i) {
        SampleParams p = st.sampling[i];
        if (p.temperature <= 0) continue;
        p.logits_row = int(i);
        p.filtered = p.top_k > 0 || p.top_p < 1.f;
        p.sorted_row = p.filtered ? int(filtered.size()) : 0;
        if (p.filtered) filtered.push_back(int(params.size()));
        params.push_back(p);
    }
    L.num_sampled = int(params.size());
    L.num_filtered = int(filtered.size());
    L.params = off;
    std::memcpy(in_host_ + off, params.data(), params.size() * sizeof(SampleParams));
    off += ((params.size() * sizeof(SampleParams) + 15) / 16) * 16;
    L.filtered = ints(filtered, filtered.size(), 0);
    L.num_updates = int(std::min(st.bt_updates.size(), kMaxUpdates));
    std::vector<int> uc{L.num_updates}, ui, uv;
    for (int i = 0; i < L.num_updates; ++i) { ui.push_back(st.bt_updates[size_t(i)].first); uv.push_back(st.bt_updates[size_t(i)].second); }
    L.upd_count = ints(uc, 1, 0);
    L.upd_idx = ints(ui, ui.size(), 0);
    L.upd_val = ints(uv, uv.size(), 0);
    L.bytes = off;
    if (off > in_bytes_) throw std::runtime_error("step inputs exceed the step buffer");
    cuda_check(cudaMemcpyAsync(in_dev_, in_host_, off, cudaMemcpyHostToDevice, stream_), "step upload");
    if (L.num_updates)
        apply_block_table_updates(block_tables_, reinterpret_cast<int *>(in_dev_ + L.upd_idx),
                                  reinterpret_cast<int *>(in_dev_ + L.upd_val), reinterpret_cast<int *>(in_dev_ + L.upd_count),
                                  L.num_updates, stream_);
    // The rest of a very large update list (an imported 8k-token prompt): applied before the step, in order.
    for (size_t b = kMaxUpdates; b < st.bt_updates.size(); b += kMaxUpdates) {
        cuda_check(cudaStreamSynchronize(stream_), "block table updates");  // the pinned buffer is reused
        const size_t n = std::min(kMaxUpdates, st.bt_updates.size() - b);
        int * h = reinterpret_cast<int *>(in_host_ + L.upd_count);
        h[0] = int(n);
        for (size_t i = 0; i < n; ++i) { h[1 + i] = st.bt_updates[b + i].first; h[1 + n + i] = st.bt_updates[b + i].second; }
        cuda_check(cudaMemcpyAsync(in_dev_ + L.upd_count, h, (1 + 2 * n) * 4, cudaMemcpyHostToDevice, stream_), "block table updates");
        apply_block_table_updates(block_tables_, reinterpret_cast<int *>(in_dev_ + L.upd_count) + 1,
                                  reinterpret_cast<int *>(in_dev_ + L.upd_count) + 1 + n,
                                  reinterpret_cast<int *>(in_dev_ + L.upd_count), int(n), stream_);
    }
}

void * Engine::forward(const Layout & L, int rows, int nd, int num_tiles, int M, int splits, bool use_rows_map, void * pool_base,
                       float * logits) {
    auto I32 = [&](size_t off) { return reinterpret_cast<const int *>(in_dev_ + off); };
    const int H = cfg_.hidden_size, I = cfg_.intermediate_size, D = cfg_.head_dim, nq = cfg_.num_heads;
    const int QKV = (nq + 2 * cfg_.num_kv_heads) * D;
    const float eps = float(cfg_.rms_norm_eps), scale = 1.f / std::sqrt(float(D));
    KvPoolView pool = pool_;
    pool.base = pool_base;
    // Where init picked the small-batch kernel for a shape at this row count, its fused forms also take the RoPE +
    // KV write and the SiLU * up, and the RMSNorm in front (four launches fewer per layer; TRTD_CUDA_FUSE=0 keeps
    // them separate). A folded norm writes the summed residual to the other of two buffers, so `res` alternates.
    // The fused QKV epilogue has no bias or q/k norm (Qwen): those models take the GEMM and rope_kv_write with them.
    // Nor for FP8 weights (the fused forms read the model dtype): those take gemm() with the layer's scales.
    const bool fp8 = cfg_.fp8.on;
    const bool fuse_qkv = fuse_enabled() && !fp8 && !layers_[0].pre.any() && small_gemm_picked(QKV, H, rows, false);
    const int window = cfg_.sliding_window;  // Mistral; 0: none
    const bool fuse_gate_up = fuse_enabled() && !fp8 && small_gemm_picked(2 * I, H, rows, false);
    void * res = x_;
    auto other = [&](void * r) { return r == x_ ? x_alt_ : x_; };
    embed_gather(dt_, I32(L.ids), embed_, res, rows, H, stream_);
    for (int l = 0; l < cfg_.num_layers; ++l) {
        const Layer & w = layers_[size_t(l)];
        const GemvNorm n1{res, l ? tmp_ : nullptr, other(res), w.input_norm, eps};
        if (fuse_qkv && gemv_rope_kv_write(dt_, w.wqkv, nullptr, qkv_, H, rows, I32(L.pos), I32(L.slots), cos_sin_, pool, l, nq, stream_, &n1)) {
            res = other(res);
        } else {
            add_rmsnorm(dt_, res, l ? tmp_ : nullptr, w.input_norm, xn_, nullptr, rows, H, eps, stream_);
            if (!fuse_qkv || !gemv_rope_kv_write(dt_, w.wqkv, xn_, qkv_, H, rows, I32(L.pos), I32(L.slots), cos_sin_, pool, l, nq, stream_)) {
                gemm(w.wqkv, xn_, qkv_, QKV, H, rows, false, w.fp8.qkv);
                rope_kv_write(dt_, qkv_, I32(L.pos), I32(L.slots), cos_sin_, pool, l, rows, nq, stream_, w.pre);
            }
        }
        decode_attention(dt_, qkv_, QKV, attn_, nq * D, I32(L.dec_len), I32(L.dec_bt), block_tables_, bt_stride_, pool, l, nd, nq,
                         splits, scale, attn_ws_, attn_counters_, stream_, window);
        prefill_attention(dt_, qkv_, QKV, attn_, nq * D, I32(L.tile_seq), I32(L.tile_row0), I32(L.pf_start), I32(L.pf_len),
                          I32(L.pf_ctx), I32(L.pf_bt), block_tables_, bt_stride_, pool, l, num_tiles, nq, scale, stream_, window);
        gemm(w.wo, attn_, tmp_, H, nq * D, rows, false, w.fp8.o, nd == rows ? o_prefetch_bytes() : -1);
        const GemvNorm n2{res, tmp_, other(res), w.post_norm, eps};
        if (fuse_gate_up && gemv_silu(dt_, w.wgate_up, nullptr, act_, I, H, rows, stream_, &n2)) {
            res = other(res);
        } else {
            add_rmsnorm(dt_, res, tmp_, w.post_norm, xn_, nullptr, rows, H, eps, stream_);
            if (!fuse_gate_up || !gemv_silu(dt_, w.wgate_up, xn_, act_, I, H, rows, stream_)) {
                gemm(w.wgate_up, xn_, gu_, 2 * I, H, rows, false, w.fp8.gu);
                silu_mul(dt_, gu_, act_, rows, I, stream_);
            }
        }
        gemm(w.wdown, act_, tmp_, H, I, rows, false, w.fp8.down);
    }
    if (M > 0) {
        add_rmsnorm(dt_, res, tmp_, final_norm_, xn_, use_rows_map ? I32(L.logit_rows) : nullptr, M, H, eps, stream_);
        gemm(lm_head_, xn_, logits, cfg_.vocab_size, H, M, true);
        argmax_rows(logits, cfg_.vocab_size, M, tokens_dev_, argmax_ws_, stream_);
    }
    return res;
}

void Engine::run(const Step & st, std::vector<int> & out, std::vector<float> * host_logits) {
    const int rows = int(st.ids.size()), nd = st.num_decode, M = int(st.logits_rows.size());
    if (rows < 1 || rows > max_rows_ || M > ec_.max_batch) throw std::runtime_error("step shape out of range");
    const bool decode_only = nd == rows && st.pf_q_start.empty() && M == nd;
    const int bucket = ec_.cuda_graphs && decode_only ? bucket_for(nd) : 0;
    const double start = timing_.on ? now_ms() : 0;
    if (timing_.on && timing_.steps && start - timing_.last_end < 5.0) {
        timing_.gap_ms += start - timing_.last_end;
        ++timing_.gaps;
    }
    const bool replay = bucket && graphs_.count(bucket);
    Layout L;
    upload(st, L, bucket);
    if (timing_.on) cuda_check(cudaEventRecord(timing_.t0, stream_), "cudaEventRecord");
    if (bucket) {
        const int splits = splits_for(bucket);
        auto it = graphs_.find(bucket);
        if (it != graphs_.end()) {
            cuda_check(cudaGraphLaunch(it->second->exec, stream_), "cudaGraphLaunch");
        } else {
            // First step of this bucket: run eagerly (loads every kernel), then capture the same launches.
            forward(L, bucket, bucket, 0, bucket, splits, false, pool_.base, logits_);
            cudaGraph_t g = nullptr;
            cuda_check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
            try {
                forward(L, bucket, bucket, 0, bucket, splits, false, pool_.base, logits_);
            } catch (...) {
                cudaStreamEndCapture(stream_, &g);
                if (g) cudaGraphDestroy(g);
                throw;
            }
            cuda_check(cudaStreamEndCapture(stream_, &g), "cudaStreamEndCapture");
            auto graph = std::make_unique<Graph>();
            const cudaError_t e = cudaGraphInstantiate(&graph->exec, g, 0);
            cudaGraphDestroy(g);
            cuda_check(e, "cudaGraphInstantiate");
            graphs_[bucket] = std::move(graph);
        }
    } else {
        forward(L, rows, nd, L.num_tiles, M, splits_for(std::max(nd, 1)), true, pool_.base, logits_);
    }
    const int V = cfg_.vocab_size;
    // A held row's raw logits stay on the device (no download) until its mask comes (draw_held).
    for (const auto & [row, slot] : st.hold) {
        if (!held_ || row < 0 || row >= M || slot < 0 || slot >= ec_.max_batch) throw std::runtime_error("held row out of range");
        cuda_check(cudaMemcpyAsync(held_ + size_t(slot) * V, logits_ + size_t(row) * V, size_t(V) * sizeof(float),
                                   cudaMemcpyDeviceToDevice, stream_), "hold logits");
    }
    // Masked rows: their disallowed ids to -inf in place, after the forward pass (the greedy argmax inside it, and in
    // its CUDA graph, saw the raw rows) and before the sampler; then the argmax again where a masked row is greedy.
    // Applied to the logits once, so the argmax, the sort keys and the walk all read the same masked row, and the graphs
    // stay as they are: a step without masks costs nothing. The host packs the masks while the forward pass runs.
    if (!st.masks.empty()) {
        std::vector<MaskRow> mrows;
        std::vector<const uint32_t *> mptrs;
        bool greedy = false;
        for (int i = 0; i < M && size_t(i) < st.masks.size(); ++i) {
            if (!st.masks[size_t(i)]) continue;
            mrows.push_back({i, i});
            mptrs.push_back(st.masks[size_t(i)]);
            greedy |= !(st.sampling[size_t(i)].temperature > 0);
        }
        if (stage_and_apply_masks(mrows, mptrs, logits_) && greedy) argmax_rows(logits_, V, M, tokens_dev_, argmax_ws_, stream_);
    }
    sample_and_download(st, L, M, host_logits);
    if (timing_.on) cuda_check(cudaEventRecord(timing_.t1, stream_), "cudaEventRecord");
    cuda_check(cudaEventRecord(done_, stream_), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(done_), "step");
    if (timing_.on) {
        float ms = 0;
        cudaEventElapsedTime(&ms, timing_.t0, timing_.t1);
        const double end = now_ms();
        timing_.gpu_ms += ms;
        timing_.run_ms += end - start;
        ++timing_.steps;
        if (replay) { ++timing_.graph_steps; timing_.graph_gpu_ms += ms; timing_.graph_run_ms += end - start; }
        timing_.last_end = end;
    }
    collect_tokens(st, M, out);
}

int Engine::stage_and_apply_masks(const std::vector<MaskRow> & rows, const std::vector<const uint32_t *> & masks, const float * src) {
    const int n = int(rows.size());
    if (n == 0) return 0;
    if (!mask_host_ || n > ec_.max_batch) throw std::runtime_error("token masks: device masks off or too many rows");
    // The staging is free: the previous step's upload completed before that step returned (its event).
    std::memcpy(mask_host_, rows.data(), size_t(n) * sizeof(MaskRow));
    const size_t mask_bytes = size_t(mask_words_) * 4;
    for (int i = 0; i < n; ++i) std::memcpy(mask_host_ + mask_masks_off_ + size_t(i) * mask_bytes, masks[size_t(i)], mask_bytes);
    cuda_check(cudaMemcpyAsync(mask_dev_, mask_host_, mask_masks_off_ + size_t(n) * mask_bytes, cudaMemcpyHostToDevice, stream_),
               "token mask upload");
    apply_token_masks(src, logits_, reinterpret_cast<const MaskRow *>(mask_dev_), reinterpret_cast<const uint32_t *>(mask_dev_ + mask_masks_off_),
                      n, cfg_.vocab_size, stream_);
    return n;
}

void Engine::sample_and_download(const Step & st, const Layout & L, int M, std::vector<float> * host_logits) {
    const int V = cfg_.vocab_size;
    if (L.num_sampled) {
        const auto * params = reinterpret_cast<const SampleParams *>(in_dev_ + L.params);
        if (L.num_filtered) {
            if (L.num_filtered > max_sorted_rows_) {  // sized on first use: greedy-only servers never pay for it
                const int n = ec_.max_batch;
                for (void * p : {static_cast<void *>(keys_), static_cast<void *>(keys_out_), static_cast<void *>(ids_),
                                 static_cast<void *>(ids_out_), static_cast<void *>(sort_offsets_), sort_temp_})
                    if (p) cudaFree(p);
                keys_ = dev_alloc<uint32_t>(size_t(n) * V, "sort keys");
                keys_out_ = dev_alloc<uint32_t>(size_t(n) * V, "sort keys");
                ids_ = dev_alloc<int>(size_t(n) * V, "sort ids");
                ids_out_ = dev_alloc<int>(size_t(n) * V, "sort ids");
                sort_offsets_ = dev_alloc<int>(size_t(n) + 1, "sort offsets");
                sort_temp_bytes_ = sort_workspace_bytes(n, V);
                sort_temp_ = dev_alloc<unsigned char>(sort_temp_bytes_, "sort workspace");
                max_sorted_rows_ = n;
            }
            sort_rows(logits_, params, L.num_filtered, reinterpret_cast<const int *>(in_dev_ + L.filtered), V, keys_, keys_out_, ids_,
                      ids_out_, sort_temp_, sort_temp_bytes_, sort_offsets_, stream_);
        }
        sample_rows(logits_, params, L.num_sampled, ids_out_, V, tokens_dev_ + max_rows_, stream_);
    }
    cuda_check(cudaMemcpyAsync(tokens_host_, tokens_dev_, size_t(M) * 4, cudaMemcpyDeviceToHost, stream_), "tokens download");
    if (L.num_sampled)
        cuda_check(cudaMemcpyAsync(tokens_host_ + max_rows_, tokens_dev_ + max_rows_, size_t(L.num_sampled) * 4,
                                   cudaMemcpyDeviceToHost, stream_), "tokens download");
    if (host_logits && !st.host_rows.empty()) {
        // Row i of the logits buffer is sampling row i (rows map and graph buckets both put them in that order).
        host_logits->resize(st.host_rows.size() * size_t(V));
        for (size_t k = 0; k < st.host_rows.size(); ++k)
            cuda_check(cudaMemcpyAsync(host_logits->data() + k * size_t(V), logits_ + size_t(st.host_rows[k]) * size_t(V),
                                       size_t(V) * sizeof(float), cudaMemcpyDeviceToHost, stream_), "logits download");
    }
}

void Engine::collect_tokens(const Step & st, int M, std::vector<int> & out) const {
    out.resize(size_t(M));
    int s = 0;
    for (int i = 0; i < M; ++i) out[size_t(i)] = st.sampling[size_t(i)].temperature > 0 ? tokens_host_[max_rows_ + s++] : tokens_host_[i];
}

void Engine::draw_held(const std::vector<HeldDraw> & rows, std::vector<int> & out) {
    const int n = int(rows.size());
    out.clear();
    if (n == 0) return;
    if (!held_ || n > ec_.max_batch) throw std::runtime_error("held draws: device masks off or too many rows");
    // A step of n sampling rows and no forward pass: row i of the logits buffer is held row i masked (the held slot is
    // left as it was), then the same sampler as run()'s, so a held draw equals the draw it would have had in its step.
    Step st;
    std::vector<MaskRow> mrows;
    std::vector<const uint32_t *> mptrs;
    for (int i = 0; i < n; ++i) {
        const HeldDraw & h = rows[size_t(i)];
        if (h.slot < 0 || h.slot >= ec_.max_batch || !h.mask) throw std::runtime_error("held draws: bad slot or no mask");
        st.sampling.push_back(h.params);
        mrows.push_back({h.slot, i});
        mptrs.push_back(h.mask);
    }
    Layout L;
    upload(st, L, 0);
    stage_and_apply_masks(mrows, mptrs, held_);
    if (L.num_sampled < n) argmax_rows(logits_, cfg_.vocab_size, n, tokens_dev_, argmax_ws_, stream_);  // a greedy row
    sample_and_download(st, L, n, nullptr);
    cuda_check(cudaEventRecord(done_, stream_), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(done_), "held draws");
    collect_tokens(st, n, out);
}

void Engine::logits_all(const int * tokens, int n, float * out) {
    const int T = ec_.tokens_per_block, nb = (n + T - 1) / T, V = cfg_.vocab_size;
    if (nb > bt_stride_) throw std::invalid_argument("too many tokens");
    void * scratch = dev_alloc<unsigned char>(size_t(nb) * block_bytes(), "scratch KV");
    try {
        Step st;
        for (int b = 0; b < nb; ++b) st.bt_updates.push_back({ec_.max_batch * bt_stride_ + b, b});
        const int chunk = max_rows_;
        for (int r0 = 0; r0 < n; r0 += chunk) {
            const int len = std::min(chunk, n - r0);
            st.ids.assign(tokens + r0, tokens + r0 + len);
            st.positions.resize(size_t(len));
            st.slots.resize(size_t(len));
            for (int i = 0; i < len; ++i) st.positions[size_t(i)] = st.slots[size_t(i)] = r0 + i;
            st.pf_q_start = {0};
            st.pf_q_len = {len};
            st.pf_ctx_len = {r0 + len};
            st.pf_bt_row = {ec_.max_batch};
            Layout L;
            upload(st, L, 0);
            st.bt_updates.clear();
            void * res = forward(L, len, 0, L.num_tiles, 0, 1, true, scratch, logits_);
            // Logits in groups of max_batch rows (the logits buffer's height).
            for (int g0 = 0; g0 < len; g0 += ec_.max_batch) {
                const int m = std::min(ec_.max_batch, len - g0);
                std::vector<int> rows_map(static_cast<size_t>(m));
                for (int i = 0; i < m; ++i) rows_map[size_t(i)] = g0 + i;
                cuda_check(cudaStreamSynchronize(stream_), "logits");  // the pinned buffer is reused below
                std::memcpy(in_host_ + L.logit_rows, rows_map.data(), size_t(m) * 4);
                cuda_check(cudaMemcpyAsync(in_dev_ + L.logit_rows, in_host_ + L.logit_rows, size_t(m) * 4, cudaMemcpyHostToDevice, stream_), "rows");
                add_rmsnorm(dt_, res, tmp_, final_norm_, xn_, reinterpret_cast<const int *>(in_dev_ + L.logit_rows), m, cfg_.hidden_size,
                            float(cfg_.rms_norm_eps), stream_);
                gemm(lm_head_, xn_, logits_, V, cfg_.hidden_size, m, true);
                cuda_check(cudaMemcpyAsync(out + size_t(r0 + g0) * V, logits_, size_t(m) * V * 4, cudaMemcpyDeviceToHost, stream_), "logits download");
            }
            cuda_check(cudaStreamSynchronize(stream_), "logits");
        }
    } catch (...) {
        cudaStreamSynchronize(stream_);
        cudaFree(scratch);
        throw;
    }
    cudaFree(scratch);
}

// ---- KV blocks ------------------------------------------------------------------------------------------

namespace {
// Runs of consecutive block ids, merged into one copy each: [first index, count].
std::vector<std::pair<size_t, size_t>> runs_of(const std::vector<int> & blocks) {
    std::vector<std::pair<size_t, size_t>> runs;
    for (size_t i = 0; i < blocks.size();) {
        size_t j = i + 1;
        while (j < blocks.size() && blocks[j] == blocks[j - 1] + 1) ++j;
        runs.push_back({i, j - i});
        i = j;
    }
    return runs;
}
}  // namespace

void Engine::copy_blocks_to_host(const std::vector<int> & blocks, void * host) {
    const size_t bb = block_bytes();
    for (auto [i, n] : runs_of(blocks))
        cuda_check(cudaMemcpyAsync(static_cast<unsigned char *>(host) + i * bb, static_cast<unsigned char *>(pool_.base) + size_t(blocks[i]) * bb,
                                   n * bb, cudaMemcpyDeviceToHost, stream_), "KV download");
    cuda_check(cudaStreamSynchronize(stream_), "KV download");
}

void Engine::copy_blocks_from_host(const std::vector<int> & blocks, const void * host) {
    const size_t bb = block_bytes();
    if (blocks.empty()) return;
    // Say which of the copy's arguments is wrong, rather than cudaMemcpyAsync's bare "invalid argument".
    if (!host) throw std::runtime_error("KV upload: no host staging buffer");
    for (int b : blocks)
        if (b < 0 || b >= num_blocks_)
            throw std::runtime_error("KV upload: block " + std::to_string(b) + " is outside the pool of " + std::to_string(num_blocks_));
    if (const cudaError_t stale = cudaGetLastError(); stale != cudaSuccess)
        throw std::runtime_error(std::string("KV upload: an earlier CUDA call left an error: ") + cudaGetErrorString(stale));
    for (auto [i, n] : runs_of(blocks))
        cuda_check(cudaMemcpyAsync(static_cast<unsigned char *>(pool_.base) + size_t(blocks[i]) * bb,
                                   static_cast<const unsigned char *>(host) + i * bb, n * bb, cudaMemcpyHostToDevice, stream_), "KV upload");
    cuda_check(cudaStreamSynchronize(stream_), "KV upload");
}

void Engine::copy_block_to_host_async(int block, void * host) {
    const size_t bb = block_bytes();
    cuda_check(cudaMemcpyAsync(host, static_cast<unsigned char *>(pool_.base) + size_t(block) * bb, bb, cudaMemcpyDeviceToHost, stream_),
               "host KV tier: store");
}

void Engine::copy_block_from_host_async(const void * host, int block) {
    const size_t bb = block_bytes();
    cuda_check(cudaMemcpyAsync(static_cast<unsigned char *>(pool_.base) + size_t(block) * bb, host, bb, cudaMemcpyHostToDevice, stream_),
               "host KV tier: restore");
}

void Engine::host_copies_wait() {
    // An event rather than cudaStreamSynchronize: waits for these copies (and what came before them), not for work
    // another thread queues meanwhile.
    cuda_check(cudaEventRecord(host_copies_, stream_), "host KV tier: cudaEventRecord");
    cuda_check(cudaEventSynchronize(host_copies_), "host KV tier: cudaEventSynchronize");
}

uint64_t Engine::checksum(const std::vector<int> & blocks) {
    if (int(blocks.size()) > blocks_dev_cap_) {
        if (blocks_dev_) cudaFree(blocks_dev_);
        blocks_dev_cap_ = std::max<int>(int(blocks.size()) * 2, 1024);
        blocks_dev_ = dev_alloc<int>(size_t(blocks_dev_cap_), "block list");
    }
    cuda_check(cudaMemcpyAsync(blocks_dev_, blocks.data(), blocks.size() * 4, cudaMemcpyHostToDevice, stream_), "block list");
    cuda_check(cudaMemsetAsync(checksum_dev_, 0, 8, stream_), "checksum");
    checksum_blocks(pool_.base, blocks_dev_, int(blocks.size()), block_bytes(), checksum_dev_, stream_);
    unsigned long long h = 0;
    cuda_check(cudaMemcpyAsync(&h, checksum_dev_, 8, cudaMemcpyDeviceToHost, stream_), "checksum");
    cuda_check(cudaStreamSynchronize(stream_), "checksum");
    return uint64_t(h);
}

std::string Engine::export_descriptor(const std::vector<int> & blocks, int num_tokens, const std::string & layout_fp) {
    Descriptor d{};
    std::memcpy(d.magic, kMagic, 8);
    d.pid = int32_t(getpid());
    d.device = ec_.device;
    std::memcpy(d.uuid, uuid_bytes_, 16);
    if (!ipc_handle_) {  // one handle names the pool for its whole life
        ipc_handle_ = std::make_unique<cudaIpcMemHandle_t>();
        cuda_check(cudaIpcGetMemHandle(ipc_handle_.get(), pool_.base), "cudaIpcGetMemHandle");
    }
    d.handle = *ipc_handle_;
    d.pool_base = uint64_t(reinterpret_cast<uintptr_t>(pool_.base));
    d.block_bytes = block_bytes();
    d.num_blocks = int32_t(blocks.size());
    d.num_tokens = num_tokens;
    d.checksum = checksum(blocks);
    std::snprintf(d.layout_fp, sizeof d.layout_fp, "%s", layout_fp.c_str());
    std::string out(reinterpret_cast<const char *>(&d), sizeof d);
    out.append(reinterpret_cast<const char *>(blocks.data()), blocks.size() * 4);
    return out;
}

std::string Engine::import_descriptor(const void * desc, size_t size, const std::vector<int> & dst, int num_tokens,
                                      const std::string & layout_fp, bool * unsupported) {
    *unsupported = false;
    Descriptor d;
    if (size < sizeof d) return "the descriptor is too short";
    std::memcpy(&d, desc, sizeof d);
    if (std::memcmp(d.magic, kMagic, 8) != 0) return "not a trtd device KV descriptor";
    if (d.num_blocks < 0 || size != sizeof d + size_t(d.num_blocks) * 4) return "the descriptor's size does not match its block count";
    if (d.block_bytes != block_bytes() || std::strncmp(d.layout_fp, layout_fp.c_str(), sizeof d.layout_fp) != 0)
        return "the descriptor's KV layout differs from this executor's";
    if (d.num_tokens != num_tokens || size_t(d.num_blocks) != dst.size())
        return "the descriptor holds " + std::to_string(d.num_tokens) + " tokens; the import was reserved for " + std::to_string(num_tokens);
    std::vector<int> src(size_t(d.num_blocks));
    std::memcpy(src.data(), static_cast<const unsigned char *>(desc) + sizeof d, src.size() * 4);
    const bool same_gpu = std::memcmp(uuid_bytes_, d.uuid, 16) == 0;
    void * src_base = nullptr;
    if (d.pid == int32_t(getpid())) {
        src_base = reinterpret_cast<void *>(uintptr_t(d.pool_base));  // same process: the pointer is valid as it is
        if (!same_gpu) {
            int ok = 0;
            cudaDeviceCanAccessPeer(&ok, ec_.device, d.device);
            if (!ok) { *unsupported = true; return "the exporting GPU cannot be reached from this one (no peer access)"; }
            const cudaError_t e = cudaDeviceEnablePeerAccess(d.device, 0);
            if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled) { *unsupported = true; return cudaGetErrorString(e); }
            cudaGetLastError();
        }
    } else {
        const std::string key(reinterpret_cast<const char *>(&d.handle), sizeof d.handle);
        auto it = peers_.find(key);
        if (it == peers_.end()) {
            void * p = nullptr;
            const cudaError_t e = cudaIpcOpenMemHandle(&p, d.handle, cudaIpcMemLazyEnablePeerAccess);
            if (e != cudaSuccess) {
                cudaGetLastError();
                *unsupported = true;
                return std::string("cannot map the exporter's KV pool: ") + cudaGetErrorString(e);
            }
            it = peers_.emplace(key, p).first;
        }
        src_base = it->second;
    }
    const int n = d.num_blocks;
    if (n <= kImportInlineBlocks) {
        // The short path: the block lists ride in the kernel's parameters and the checksum comes back through
        // mapped pinned memory, so the import is one launch and one wait (the fixed cost of a 16 MiB transfer).
        if (!import_sync_.sum) {
            import_sync_.sum = dev_alloc<unsigned long long>(1, "import checksum");
            import_sync_.arrived = dev_alloc<unsigned int>(1, "import arrivals");
            cuda_check(cudaMemset(import_sync_.sum, 0, 8), "import checksum");
            cuda_check(cudaMemset(import_sync_.arrived, 0, 4), "import arrivals");
            void * h = nullptr;
            cuda_check(cudaHostAlloc(&h, 64, cudaHostAllocMapped), "mapped import checksum");
            import_host_sum_ = static_cast<unsigned long long *>(h);
            void * hd = nullptr;
            cuda_check(cudaHostGetDevicePointer(&hd, h, 0), "mapped import checksum");
            import_sync_.host_sum = static_cast<volatile unsigned long long *>(hd);
        }
        if (!import_lists_) import_lists_ = std::make_unique<ImportLists>();
        ImportLists & lists = *import_lists_;
        lists.n = n;
        std::memcpy(lists.src, src.data(), size_t(n) * 4);
        std::memcpy(lists.dst, dst.data(), size_t(n) * 4);
        *static_cast<volatile unsigned long long *>(import_host_sum_) = ~d.checksum;  // anything but the expected sum
        import_blocks_checksum(src_base, pool_.base, lists, block_bytes(), import_sync_, stream_);
        cuda_check(cudaStreamSynchronize(stream_), "KV device copy");
        if (uint64_t(*static_cast<volatile unsigned long long *>(import_host_sum_)) != d.checksum) return "checksum mismatch after the device copy";
        return "";
    }
    if (2 * n + 4 > blocks_dev_cap_) {
        if (blocks_dev_) cudaFree(blocks_dev_);
        blocks_dev_cap_ = std::max(4 * n + 4, 1024);
        blocks_dev_ = dev_alloc<int>(size_t(blocks_dev_cap_), "block list");
    }
    // Block lists and the checksum slot through one pinned buffer: one upload, one fused copy + checksum
    // kernel, one download, one wait.
    const size_t list_bytes = size_t(2 * n) * 4 + 16;
    if (list_bytes > host_tmp_bytes_) {
        if (host_tmp_) cudaFreeHost(host_tmp_);
        host_tmp_ = nullptr;
        host_tmp_bytes_ = std::max<size_t>(list_bytes * 2, 1 << 16);
        cuda_check(cudaHostAlloc(&host_tmp_, host_tmp_bytes_, cudaHostAllocDefault), "pinned block lists");
    }
    unsigned long long * sum_host = static_cast<unsigned long long *>(host_tmp_);
    int * lists = reinterpret_cast<int *>(static_cast<unsigned char *>(host_tmp_) + 16);
    std::memcpy(lists, src.data(), size_t(n) * 4);
    std::memcpy(lists + n, dst.data(), size_t(n) * 4);
    *sum_host = 0;
    // device layout as on the host: [checksum, 16 bytes][src blocks][dst blocks]
    cuda_check(cudaMemcpyAsync(blocks_dev_, host_tmp_, list_bytes, cudaMemcpyHostToDevice, stream_), "block lists");
    auto * sum_dev = reinterpret_cast<unsigned long long *>(blocks_dev_);
    copy_blocks_checksum(src_base, blocks_dev_ + 4, pool_.base, blocks_dev_ + 4 + n, n, block_bytes(), sum_dev, stream_);
    cuda_check(cudaMemcpyAsync(sum_host, sum_dev, 8, cudaMemcpyDeviceToHost, stream_), "checksum");
    cuda_check(cudaStreamSynchronize(stream_), "KV device copy");
    if (uint64_t(*sum_host) != d.checksum) return "checksum mismatch after the device copy";
    return "";
}

}  // namespace trtd::cuda
