// The CUDA executor's kernels: the small fused pieces of a Llama forward pass around cuBLAS GEMMs, paged
// attention over the KV pool, and sampling. Every launcher takes the stream and reads dynamic sizes (row
// counts, sequence lengths) from device memory where a CUDA graph replays it with other values.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

#ifdef __CUDACC__
#define TRTD_HD __host__ __device__
#else
#define TRTD_HD
#endif

namespace trtd::cuda {

enum class DType : int { BF16 = 0, F16 = 1 };
inline size_t dtype_size(DType) { return 2; }

// The KV pool: blocks of [layer][K then V][token in block][kv head][head_dim] elements (the ABI's layout).
struct KvPoolView {
    void * base = nullptr;
    int num_layers = 0, num_kv_heads = 0, head_dim = 0, tokens_per_block = 0;
    TRTD_HD size_t block_elems() const { return size_t(num_layers) * 2 * tokens_per_block * num_kv_heads * head_dim; }
    TRTD_HD size_t layer_elems() const { return size_t(2) * tokens_per_block * num_kv_heads * head_dim; }
    TRTD_HD size_t kv_elems() const { return size_t(tokens_per_block) * num_kv_heads * head_dim; }
};

// out[r] = table[ids[r]] for r < rows.
void embed_gather(DType dt, const int * ids, const void * table, void * out, int rows, int hidden, cudaStream_t s);

// HF LlamaRMSNorm with the residual add fused in front:
//   if delta: residual[src] = residual[src] + delta[src]   (rounded to the model dtype, as HF keeps it)
//   out[i] = weight * dtype(residual[src] * rsqrt(mean(residual[src]^2) + eps))
// with src = rows_map ? rows_map[i] : i. With rows_map the residual is not written back (the final norm
// over the logits rows only).
void add_rmsnorm(DType dt, void * residual, const void * delta, const void * weight, void * out, const int * rows_map,
                 int rows, int hidden, float eps, cudaStream_t s);

// What some architectures apply to the QKV GEMM's output before RoPE (none for Llama and Mistral):
//   bias (Qwen2): qkv[r][e] = dtype(qkv[r][e] + bias[e]) on the q, k and v parts;
//   q_norm / k_norm (Qwen3): each q and k head RMS-normalized over head_dim as HF's Qwen3RMSNorm does it,
//   weight * dtype(x * rsqrt(mean(x^2) + eps)), after the bias and before RoPE (at most 256 q + kv heads).
struct QkvPre {
    const void * bias = nullptr;    // [(nq + 2 nkv) * D]
    const void * q_norm = nullptr;  // [D]; q_norm and k_norm are both set or both null
    const void * k_norm = nullptr;  // [D]
    float eps = 1e-6f;
    bool any() const { return bias || q_norm; }
};
constexpr int kQkvPreMaxNormHeads = 256;

// RoPE (HF rotate-half, cos/sin rounded to the model dtype as HF does) on the q and k heads of each row of
// qkv [rows][(nq + 2 nkv) * D], then K and V written into the pool at slot_mapping[r] (block * T + offset;
// -1 = padding, skipped). cos_sin: [max_pos][D/2][2] model dtype. pre: applied first (QkvPre), q written back
// with it; the raw k and v parts of qkv are left as they were.
void rope_kv_write(DType dt, void * qkv, const int * positions, const int * slot_mapping, const void * cos_sin,
                   KvPoolView pool, int layer, int rows, int num_heads, cudaStream_t s, const QkvPre & pre = QkvPre());

// out[r][i] = dtype(dtype(silu(gate[r][i])) * up[r][i]) with gate_up [rows][2 I] (gate then up).
void silu_mul(DType dt, const void * gate_up, void * out, int rows, int inter, cudaStream_t s);

// Decode attention: one query row per sequence (row b = sequence b), keys [0, seq_lens[b]) from the pool
// through the block table row block_tables[bt_rows[b] * bt_stride]. Grid (batch, kv heads, splits): each CTA
// reads its KV range once for all q heads of its group; partials are merged with their log-sum-exp.
// window > 0 (Mistral's sliding window): only keys [seq_lens[b] - window, seq_lens[b]) are seen; 0: all.
// seq_lens[b] == 0 writes zeros. work: decode_attention_workspace_bytes(...), zeroed once before first use;
// its arrival counters sit at decode_attention_counters_offset(...) (the last CTA of a sequence's kv head merges).
size_t decode_attention_workspace_bytes(int max_batch, int num_heads, int head_dim, int max_splits);
inline size_t decode_attention_counters_offset(int max_batch, int num_heads, int head_dim, int max_splits) {
    const size_t parts = size_t(max_batch) * num_heads * max_splits;
    return parts * head_dim * 4 + parts * 2 * 4;
}
void decode_attention(DType dt, const void * q, int q_stride, void * out, int out_stride, const int * seq_lens,
                      const int * bt_rows, const int * block_tables, int bt_stride, KvPoolView pool, int layer,
                      int batch, int num_heads, int splits, float scale, void * work, size_t counters_offset,
                      cudaStream_t s, int window = 0);

// Prefill attention, causal, variable length, FlashAttention-2 style tiles on tensor cores (wmma): query tile
// t covers rows tile_row0[t] .. +64 of sequence tile_seq[t]; sequence i has its queries at rows
// q_start[i] .. q_start[i] + q_len[i] and positions ctx_len[i] - q_len[i] .. ctx_len[i] - 1, and its keys
// [0, ctx_len[i]) in the pool (the chunk's K/V already written). num_tiles from the host. window > 0: the query
// at position p sees keys (p - window, p] only (HF Mistral: key > p - window); 0: all of [0, p].
void prefill_attention(DType dt, const void * q, int q_stride, void * out, int out_stride, const int * tile_seq,
                       const int * tile_row0, const int * q_start, const int * q_len, const int * ctx_len,
                       const int * bt_rows, const int * block_tables, int bt_stride, KvPoolView pool, int layer,
                       int num_tiles, int num_heads, float scale, cudaStream_t s, int window = 0);

// Small-batch GEMM: y[rows][out] = x[rows][in] . w[out][in]^T for rows <= 8 (false: not handled here).
// prefetch_bytes: how much of each warp's first row to ask L2 for before waiting on the previous kernel (PDL); < 0:
// the default (kernel_common.cuh, gemv_prefetch_bytes).
bool gemv(DType dt, const void * w, const void * x, void * y, int out, int in, int rows, bool f32_out, cudaStream_t s,
          long prefetch_bytes = -1);

// The small-batch GEMM with the next kernel fused in, for rows <= 8 (false: not handled here); the results equal
// gemv followed by that kernel, bit for bit:
//   gemv_silu: out[rows][inter] = silu_mul(x . w_gate_up^T) (w_gate_up [2 inter][in], gate rows then up rows);
//   gemv_rope_kv_write: qkv = x . w_qkv^T, then rope_kv_write(qkv, ...) (k and v go to the pool at slot_mapping).
// With norm, x is ignored: the input rows are add_rmsnorm(norm->res_in, norm->delta, norm->weight), computed in the
// kernel's prologue (one launch fewer), and norm->res_out receives the summed residual that add_rmsnorm would have
// written back in place (a second buffer: the kernel's other CTAs are still reading res_in). False where the rows
// do not fit (rows * in * 2 bytes over 32 KiB, or in > 8192): then the caller runs add_rmsnorm first.
struct GemvNorm {
    const void * res_in;  // [rows][in]
    const void * delta;   // [rows][in], added to res_in first; null: res_out gets a copy of res_in
    void * res_out;       // [rows][in], not res_in
    const void * weight;  // [in]
    float eps;
};
bool gemv_silu(DType dt, const void * w_gate_up, const void * x, void * out, int inter, int in, int rows, cudaStream_t s,
               const GemvNorm * norm = nullptr);
bool gemv_rope_kv_write(DType dt, const void * w_qkv, const void * x, void * qkv, int in, int rows, const int * positions,
                        const int * slot_mapping, const void * cos_sin, KvPoolView pool, int layer, int num_heads, cudaStream_t s,
                        const GemvNorm * norm = nullptr);

// block_tables[idx[i]] = val[i] for i < *count (device count).
void apply_block_table_updates(int * block_tables, const int * idx, const int * val, const int * count, int max_updates,
                               cudaStream_t s);

// Greedy: out[r] = argmax(logits[r]) (lowest id on ties; NaN and -inf never win, id 0 when nothing else) for
// r < rows. work: argmax_workspace_bytes(max rows), zeroed once before first use (each launch leaves it zeroed).
size_t argmax_workspace_bytes(int max_rows);
void argmax_rows(const float * logits, int vocab, int rows, int * out, void * work, cudaStream_t s);

struct SampleParams {
    uint64_t seed, n;      // the draw for the n-th token of the request: u = counter_uniform(seed, n)
    float temperature, top_p;
    int top_k;
    int logits_row;        // row of the logits buffer
    int filtered;          // top_k or top_p active: walks the sorted order; else index order
    int sorted_row;        // row of the sorted buffers when filtered
};
// Sampling with the reference executor's semantics: probabilities exp((l - max) / T); filtered rows walk
// the order (logit descending, id ascending), keep the top_k best, then the smallest prefix whose mass
// reaches top_p, and draw the first whose running mass exceeds u * kept mass; unfiltered rows walk index
// order. Sorting: sort_workspace_bytes / sort_rows (CUB segmented radix sort of monotone keys).
size_t sort_workspace_bytes(int max_rows, int vocab);
void sort_rows(const float * logits, const SampleParams * params, int num_params_filtered, const int * filtered_list,
               int vocab, uint32_t * keys, uint32_t * keys_out, int * ids, int * ids_out, void * temp, size_t temp_bytes,
               int * offsets, cudaStream_t s);
void sample_rows(const float * logits, const SampleParams * params, int num, const int * sorted_ids, int vocab,
                 int * out_tokens, cudaStream_t s);

// Token masks (constrained decoding on the device): for i < n, dst[rows[i].dst_row][v] = src[rows[i].src_row][v] where
// bit v % 32 of word v / 32 of mask i is set, else -inf, for v < vocab; masks holds n masks of (vocab + 31) / 32 words
// each, one after the other, and the bits of the last word past vocab are ignored. src == dst with src_row == dst_row
// masks a row in place (only the disallowed ids are written). rows and masks in device memory; n from the host.
struct MaskRow {
    int src_row, dst_row;
};
void apply_token_masks(const float * src, float * dst, const MaskRow * rows, const uint32_t * masks, int n, int vocab,
                       cudaStream_t s);

// A 64-bit checksum of bytes (sum over 8-byte words of a mix of (word, index)): order-independent to compute,
// position-sensitive. out must be zeroed first; count bytes a multiple of 8.
void checksum_blocks(const void * base, const int * blocks, int num_blocks, size_t block_bytes, unsigned long long * out,
                     cudaStream_t s);
// copy_blocks and checksum_blocks of the destination in one pass (*sum zeroed first; the same value).
void copy_blocks_checksum(const void * src_base, const int * src_blocks, void * dst_base, const int * dst_blocks, int num_blocks,
                          size_t block_bytes, unsigned long long * sum, cudaStream_t s);
// A short import's block lists, passed as the kernel's parameters, and where its checksum goes: the last CTA writes
// the sum (the copy_blocks_checksum value) to host_sum (mapped pinned memory) and returns sum and arrived (device, both
// zero before the first use) to zero.
constexpr int kImportInlineBlocks = 256;
struct ImportLists {
    int n;
    int src[kImportInlineBlocks], dst[kImportInlineBlocks];
};
struct ImportSync {
    unsigned long long * sum;
    unsigned int * arrived;
    volatile unsigned long long * host_sum;
};
void import_blocks_checksum(const void * src_base, void * dst_base, const ImportLists & lists, size_t block_bytes, ImportSync sync,
                            cudaStream_t s);
// dst_blocks[i] <- src_blocks[i] (block_bytes each) with one gather kernel; src and dst may be different pools.
void copy_blocks(const void * src_base, const int * src_blocks, void * dst_base, const int * dst_blocks, int num_blocks,
                 size_t block_bytes, cudaStream_t s);

}  // namespace trtd::cuda
