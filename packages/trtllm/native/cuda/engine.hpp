// The device side of the CUDA executor: weights, the KV pool, the batched forward pass (cuBLAS GEMMs and the
// kernels of kernels.cuh), CUDA graphs for decode steps, sampling, and KV block copies. Not thread-safe: the
// executor serializes every call (its compute lock).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fp8.cuh"
#include "kernels.cuh"
#include "model_config.hpp"

namespace trtd::cuda {

struct EngineConfig {
    int device = 0;
    int max_batch = 32;         // sequences per step
    int max_tokens = 512;       // rows per step
    int tokens_per_block = 32;
    int num_blocks = 0;         // 0: from kv_bytes
    int64_t kv_bytes = 0;       // pool budget when num_blocks == 0
    int max_ctx = 0;
    bool cuda_graphs = true;
    // Token masks applied on the device (TRTD_CUDA_DEVICE_MASK=1): allocates the mask staging and the held rows.
    bool device_masks = false;
};

// One iteration, built by the scheduler. Rows [0, num_decode) are decode rows, one per sequence; the prefill
// chunks follow, each sequence's rows contiguous and in position order.
struct Step {
    std::vector<int> ids, positions, slots;  // per row; slot = block * tokens_per_block + offset
    int num_decode = 0;
    std::vector<int> dec_seq_len, dec_bt_row;                       // per decode row
    std::vector<int> pf_q_start, pf_q_len, pf_ctx_len, pf_bt_row;  // per prefill sequence
    std::vector<int> logits_rows;          // rows whose next token is sampled, in output order
    std::vector<SampleParams> sampling;    // per logits row (logits_row / filtered / sorted_row set by the engine)
    std::vector<std::pair<int, int>> bt_updates;  // (bt_row * bt_stride + index, block)
    std::vector<int> host_rows;            // sampling rows whose logits run() copies to the host (host draws)
    // Device token masks (EngineConfig::device_masks): empty, or per sampling row its allowed-token bitmask
    // (ceil(vocab / 32) words) or null. A masked row's disallowed logits become -inf before it is drawn (greedy or
    // sampled, by the device sampler), so it draws over the allowed ids only. Read during run() only.
    std::vector<const uint32_t *> masks;
    // (sampling row, held slot): rows whose raw logits run() keeps on the device in that slot, for draw_held (a
    // constrained row whose mask has not come). Slots are < max_batch; the caller owns their assignment.
    std::vector<std::pair<int, int>> hold;
    void clear();
};

// A CUDA error or a failed check, with the call that failed.
void cuda_check(cudaError_t e, const char * what);

class Engine {
public:
    Engine(const std::string & model_dir, const ModelConfig & cfg, const EngineConfig & ec);
    ~Engine();
    Engine(const Engine &) = delete;
    Engine & operator=(const Engine &) = delete;

    // Runs one step; tokens_out[i] is the token sampled for logits_rows[i]. Blocks until the step is done. With
    // host_logits, the float32 logits of the sampling rows step.host_rows are copied there, row k at k * vocab.
    void run(const Step & step, std::vector<int> & tokens_out, std::vector<float> * host_logits = nullptr);
    // A held row (Step::hold) whose mask has come: its slot, its mask, its sampling parameters (logits_row, filtered
    // and sorted_row are the engine's).
    struct HeldDraw {
        int slot;
        const uint32_t * mask;
        SampleParams params;
    };
    // Draws held rows on the device, as run() draws a masked row: each slot's logits masked into the logits buffer,
    // then the greedy argmax or the sort and walk. tokens_out[i] is rows[i]'s token. Blocks until done. Needs
    // EngineConfig::device_masks; at most max_batch rows.
    void draw_held(const std::vector<HeldDraw> & rows, std::vector<int> & tokens_out);
    // Every position's logits over tokens (scratch KV, not the pool): n * vocab floats into out (host).
    void logits_all(const int * tokens, int n, float * out);

    int num_blocks() const { return num_blocks_; }
    int bt_stride() const { return bt_stride_; }
    size_t block_bytes() const { return pool_.block_elems() * 2; }
    DType dtype() const { return dt_; }
    const std::string & fingerprint() const { return fingerprint_; }
    uint64_t weight_bytes() const { return weight_bytes_; }
    const std::string & device_uuid() const { return uuid_; }
    int device() const { return ec_.device; }

    // Host staging of KV blocks (export segments / import segments): device <-> host, in block order.
    void copy_blocks_to_host(const std::vector<int> & blocks, void * host);
    void copy_blocks_from_host(const std::vector<int> & blocks, const void * host);
    // The host KV tier (KvBlockPool's KvHostCopier): one block between the pool and pinned host memory, queued on the
    // engine's stream (ordered with the steps that read and write the pool); host_copies_wait() returns once every
    // copy queued so far is complete. Called by the engine thread, or by a caller holding the compute gate, so never
    // while a step is being captured into a graph.
    void copy_block_to_host_async(int block, void * host);
    void copy_block_from_host_async(const void * host, int block);
    void host_copies_wait();
    // Device checksum of blocks in order (kernels.cuh checksum_blocks).
    uint64_t checksum(const std::vector<int> & blocks);
    // Opaque device descriptor of blocks (export); copy a descriptor's blocks into dst_blocks (import).
    std::string export_descriptor(const std::vector<int> & blocks, int num_tokens, const std::string & layout_fp);
    // Returns "" on success, else why (unsupported / malformed / checksum); unsupported sets *unsupported.
    std::string import_descriptor(const void * desc, size_t size, const std::vector<int> & dst_blocks, int num_tokens,
                                  const std::string & layout_fp, bool * unsupported);

private:
    struct Layer {
        void *input_norm, *wqkv, *wo, *post_norm, *wgate_up, *wdown;
        QkvPre pre;  // Qwen2's q/k/v biases, Qwen3's q/k norms (null for Llama and Mistral)
        struct Fp8Scales { const float *qkv = nullptr, *o = nullptr, *gu = nullptr, *down = nullptr; } fp8;  // per output channel
    };
    struct Graph;
    struct Layout;  // offsets of one step's arrays in the packed input buffer

    void load_weights(const std::string & dir);
    void release();  // frees everything (the destructor; the constructor when it fails part way)
    // wscale: an FP8 weight's per-channel scales (fp8.cuh: the small-batch FP8 kernel, or the activations quantized
    // per row and cuBLASLt's FP8 GEMM); null: a weight in the model dtype.
    // prefetch_bytes: see trtd::cuda::gemv (the small-batch kernel only; < 0: its default).
    void gemm(const void * w, const void * x, void * y, int out, int in, int rows, bool f32_out, const float * wscale = nullptr,
              long prefetch_bytes = -1);
    // TRTD_CUDA_FUSE=0 turns off the fused small-batch GEMM forms (the norm, RoPE + KV write, SiLU * up folded in).
    static bool fuse_enabled();
    // What the O projection's small-batch kernel prefetches of its first rows into L2 while decode attention runs (a
    // latency-bound kernel that leaves HBM idle): whole rows unless TRTD_CUDA_O_PREFETCH_BYTES says otherwise.
    static long o_prefetch_bytes();
    void cublas_gemm(const void * w, const void * x, void * y, int out, int in, int rows, bool f32_out);
    void tune_small_gemms();
    bool small_gemm_picked(int out, int in, int rows, bool f32_out) const;  // init measured the small-batch kernel faster
    static uint64_t gemv_key(int out, int in, int rows, bool f32) {
        return (uint64_t(uint32_t(out)) << 32) | (uint64_t(uint32_t(in)) << 5) | (uint64_t(rows) << 1) | uint64_t(f32);
    }
    std::map<uint64_t, bool> use_gemv_;  // (shape, rows <= 8) -> the small-batch kernel beats cuBLAS
    void upload(const Step & step, Layout & lay, int bucket);
    // Returns the residual buffer that holds the last layer's output (x_ or x_alt_).
    void * forward(const Layout & lay, int rows, int num_decode, int num_tiles, int logits_rows, int splits, bool use_rows_map,
                 void * pool_base, float * logits);
    int splits_for(int batch) const;
    // The sampler after the logits: sort and walk the sampled rows (greedy rows took the argmax already), then queue the
    // downloads of the tokens and of the host rows' logits (host_logits, run()'s). Returns without waiting.
    void sample_and_download(const Step & st, const Layout & L, int M, std::vector<float> * host_logits);
    // tokens_out[i] for the step's M sampling rows, from the downloaded tokens (after the step's event).
    void collect_tokens(const Step & st, int M, std::vector<int> & out) const;
    // Device token masks: copies the masks into the pinned staging with their rows and queues one upload, then the
    // mask kernel (kernels.cuh apply_token_masks) from src into logits_. Returns how many rows it masked.
    int stage_and_apply_masks(const std::vector<MaskRow> & rows, const std::vector<const uint32_t *> & masks, const float * src);
    int bucket_for(int batch) const;

    ModelConfig cfg_;
    EngineConfig ec_;
    DType dt_ = DType::BF16;
    cudaStream_t stream_ = nullptr;
    void * cublas_ = nullptr;  // cublasHandle_t
    void * cublas_ws_ = nullptr;
    size_t cublas_ws_bytes_ = 0;

    void * weights_ = nullptr;  // one allocation for every weight
    float * scales_ = nullptr;  // FP8 models: every linear layer's per-channel scales
    std::unique_ptr<Fp8Gemm> fp8_gemm_;
    uint8_t * xq_ = nullptr;    // FP8 models: the activations quantized per row for cuBLASLt, and their scales
    float * xs_ = nullptr;
    uint64_t weight_bytes_ = 0;
    void *embed_ = nullptr, *lm_head_ = nullptr, *final_norm_ = nullptr;
    std::vector<Layer> layers_;
    void * cos_sin_ = nullptr;
    std::string fingerprint_, uuid_;

    KvPoolView pool_;
    int num_blocks_ = 0, bt_stride_ = 0;
    int * block_tables_ = nullptr;  // [(max_batch + 1) * bt_stride]; row max_batch: logits_all's scratch

    // activations, sized for max rows
    int max_rows_ = 0;
    void *x_ = nullptr, *x_alt_ = nullptr, *xn_ = nullptr, *qkv_ = nullptr, *attn_ = nullptr, *tmp_ = nullptr, *gu_ = nullptr, *act_ = nullptr;
    float * logits_ = nullptr;  // [max_batch][vocab]
    void * attn_ws_ = nullptr;
    void * argmax_ws_ = nullptr;  // argmax_rows' keys and arrival counters (left zeroed by every launch)
    size_t attn_counters_ = 0;
    int max_splits_ = 16;
    // packed step inputs: host pinned and device
    unsigned char *in_host_ = nullptr, *in_dev_ = nullptr;
    size_t in_bytes_ = 0;
    // sampling
    int *tokens_dev_ = nullptr, *tokens_host_ = nullptr;
    uint32_t *keys_ = nullptr, *keys_out_ = nullptr;
    int *ids_ = nullptr, *ids_out_ = nullptr, *sort_offsets_ = nullptr;
    void * sort_temp_ = nullptr;
    size_t sort_temp_bytes_ = 0;
    int max_sorted_rows_ = 0;
    cudaEvent_t done_ = nullptr;
    cudaEvent_t host_copies_ = nullptr;  // recorded after the host tier's copies (host_copies_wait)
    // small scratch for block copies and checksums
    int * blocks_dev_ = nullptr;
    int blocks_dev_cap_ = 0;
    unsigned long long * checksum_dev_ = nullptr;
    void * host_tmp_ = nullptr;  // pinned: block lists and the checksum of a device import
    size_t host_tmp_bytes_ = 0;

    // TRTD_CUDA_STEP_TIMING=1: per-step averages printed at destruction (cycle = start to start of run()).
    struct Timing {
        bool on = false;
        cudaEvent_t t0 = nullptr, t1 = nullptr;
        uint64_t steps = 0, graph_steps = 0, gaps = 0;
        double gpu_ms = 0, graph_gpu_ms = 0, graph_run_ms = 0, run_ms = 0, gap_ms = 0, last_end = 0;
    } timing_;

    // Device token masks (ec_.device_masks; all null otherwise), allocated at construction and freed by release(),
    // owned by the engine: the pinned staging of one step's masks ([max_batch] MaskRow, then up to max_batch masks of
    // mask_words_, written by the engine thread while no upload from it is in flight: every run() and draw_held() waits
    // for its step), its device copy (one cudaMemcpyAsync per step), and the held rows, one per batch slot
    // ([max_batch][vocab] fp32: a constrained row's raw logits while it waits for its mask; the executor assigns slots).
    int mask_words_ = 0;
    size_t mask_masks_off_ = 0;  // where the masks start in the staging
    unsigned char *mask_host_ = nullptr, *mask_dev_ = nullptr;
    float * held_ = nullptr;

    std::map<int, std::unique_ptr<Graph>> graphs_;  // by bucket
    std::vector<int> buckets_;
    std::map<std::string, void *> peers_;  // opened IPC pools by handle bytes
    unsigned char uuid_bytes_[16] = {};
    std::unique_ptr<cudaIpcMemHandle_t> ipc_handle_;  // the pool's, made on the first export
    // the short import path (kernels.cuh import_blocks_checksum)
    std::unique_ptr<ImportLists> import_lists_;
    ImportSync import_sync_{};
    unsigned long long * import_host_sum_ = nullptr;  // mapped pinned
};

}  // namespace trtd::cuda
