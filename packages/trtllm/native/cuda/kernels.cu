// Kernels of the CUDA executor (see kernels.cuh for what each computes).
#include "kernels.cuh"
#include "kernel_common.cuh"

#include <cfloat>
#include <cstdlib>
#include <cub/cub.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <stdexcept>
#include <string>

namespace trtd::cuda {

namespace {

template <typename T> __device__ __forceinline__ void load8(const T * p, float f[8]) {
    const uint4 u = *reinterpret_cast<const uint4 *>(p);
    const T * e = reinterpret_cast<const T *>(&u);
#pragma unroll
    for (int k = 0; k < 8; ++k) f[k] = to_f(e[k]);
}
template <typename T> __device__ __forceinline__ void store8(T * p, const float f[8]) {
    uint4 u;
    T * e = reinterpret_cast<T *>(&u);
#pragma unroll
    for (int k = 0; k < 8; ++k) e[k] = from_f<T>(f[k]);
    *reinterpret_cast<uint4 *>(p) = u;
}
// add_rmsnorm's two steps, owned here so that the folded norm of the small-batch GEMMs rounds exactly as it does:
// the residual sum x += delta in fp32, rounded through T (HF materializes it in the model dtype) ...
template <typename T> __device__ __forceinline__ void add_residual8(float x[8], const T * delta) {
    float y[8];
    load8(delta, y);
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] = rnd<T>(x[k] + y[k]);
}
// ... and the normalized value, weight * round_T(x * inv).
template <typename T> __device__ __forceinline__ void apply_norm8(float x[8], const T * weight, float inv) {
    float g[8];
    load8(weight, g);
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] = g[k] * rnd<T>(x[k] * inv);
}

// Programmatic dependent launch (Hopper): the forward pass's kernels are launched so that the next one may be
// scheduled while the previous one drains, hiding the launch gap between the ~10 kernels of a layer (the batch-1
// decode step is made of them). The contract: every such kernel calls pdl_wait() in every thread before it reads
// what an earlier kernel wrote or writes anything an earlier kernel reads (only weights, never written, may be read
// before), so the wait's transitivity keeps the stream's order; pdl_trigger() lets the next kernel be scheduled.
// Every kernel triggers only after its own wait, so when the third kernel of a forward pass starts, everything
// queued before the forward pass is complete: decode attention relies on this to read the step's inputs and the
// KV of earlier steps before its wait.
// Without the launch attribute (another stream kind, TRTD_CUDA_PDL=0) both are no-ops.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void prefetch_l2(const void * p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

bool pdl_enabled() {
    static const bool on = [] {
        const char * e = std::getenv("TRTD_CUDA_PDL");
        int dev = 0, major = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        return major >= 9 && !(e && *e == '0');
    }();
    return on;
}

// kernel<<<grid, block, smem, s>>>(args...) with programmatic stream serialization where enabled (not on the
// legacy default stream, which the kernel checks use).
template <typename... KArgs, typename... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args &&... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = s != nullptr && pdl_enabled() ? 1 : 0;
    cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

#define TRTD_DISPATCH_DTYPE(dt, ...)          \
    do {                                      \
        if ((dt) == DType::BF16) {            \
            using T = __nv_bfloat16;          \
            __VA_ARGS__;                      \
        } else {                              \
            using T = __half;                 \
            __VA_ARGS__;                      \
        }                                     \
    } while (0)

template <int THREADS> __device__ float block_sum(float v, float * scratch) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = 0;
    if (threadIdx.x < 32) {
        t = threadIdx.x < THREADS / 32 ? scratch[threadIdx.x] : 0.f;
        for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        if (threadIdx.x == 0) scratch[0] = t;
    }
    __syncthreads();
    t = scratch[0];
    __syncthreads();
    return t;
}

// ---- embedding, norms, rope, activation ---------------------------------------------------------------

template <typename T> __global__ void embed_gather_k(const int * ids, const T * table, T * out, int hidden) {
    pdl_wait();
    pdl_trigger();
    const int r = blockIdx.x;
    const uint4 * src = reinterpret_cast<const uint4 *>(table + size_t(ids[r]) * hidden);
    uint4 * dst = reinterpret_cast<uint4 *>(out + size_t(r) * hidden);
    for (int c = threadIdx.x; c < hidden / 8; c += blockDim.x) dst[c] = src[c];
}

template <typename T, int kNormThreads>
__global__ void __launch_bounds__(kNormThreads) add_rmsnorm_k(T * res, const T * delta, const T * w, T * out,
                                                               const int * rows_map, int H, float eps) {
    pdl_wait();
    pdl_trigger();
    __shared__ float scratch[32];
    const int i = blockIdx.x;
    const int src = rows_map ? rows_map[i] : i;
    T * r = res + size_t(src) * H;
    const T * d = delta ? delta + size_t(src) * H : nullptr;
    const bool write_back = d && !rows_map;
    float ss = 0;
    for (int c = threadIdx.x * 8; c < H; c += kNormThreads * 8) {
        float x[8];
        load8(r + c, x);
        if (d) {
            add_residual8(x, d + c);
            if (write_back) store8(r + c, x);
        }
#pragma unroll
        for (int k = 0; k < 8; ++k) ss += x[k] * x[k];
    }
    const float inv = rsqrtf(block_sum<kNormThreads>(ss, scratch) / float(H) + eps);
    T * o = out + size_t(i) * H;
    for (int c = threadIdx.x * 8; c < H; c += kNormThreads * 8) {
        float x[8];
        load8(r + c, x);
        if (d && rows_map) add_residual8(x, d + c);
        apply_norm8(x, w + c, inv);
        store8(o + c, x);
    }
}

template <typename T>
__global__ void rope_kv_write_k(T * qkv, const int * positions, const int * slots, const T * cos_sin, KvPoolView pool,
                                int layer, int nq, QkvPre pre) {
    pdl_wait();
    pdl_trigger();
    const int r = blockIdx.x;
    const int D = pool.head_dim, half = D / 2, nkv = pool.num_kv_heads, TB = pool.tokens_per_block;
    T * row = qkv + size_t(r) * (nq + 2 * nkv) * D;
    const int pos = positions[r], slot = slots[r];
    const T * cs = cos_sin + size_t(pos) * half * 2;
    T * kcache = nullptr;
    if (slot >= 0) {
        kcache = static_cast<T *>(pool.base) + size_t(slot / TB) * pool.block_elems() + size_t(layer) * pool.layer_elems() +
                 size_t(slot % TB) * nkv * D;
    }
    // Element e of the row as the attention sees it before RoPE: with the bias added (rounded, as HF's biased
    // linear materializes it).
    const T * bias = static_cast<const T *>(pre.bias);
    auto val = [&](int e) { return bias ? rnd<T>(to_f(row[e]) + to_f(bias[e])) : to_f(row[e]); };
    // Qwen3: each q and k head's inverse RMS, a warp per head (read before any thread writes the row below).
    __shared__ float inv_rms[kQkvPreMaxNormHeads];
    const T * qn = static_cast<const T *>(pre.q_norm);
    const T * kn = static_cast<const T *>(pre.k_norm);
    if (qn) {
        const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
        for (int head = warp; head < nq + nkv; head += blockDim.x / 32) {
            float ss = 0.f;
            for (int i = lane; i < D; i += 32) {
                const float x = val(head * D + i);
                ss += x * x;
            }
            for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
            if (lane == 0) inv_rms[head] = rsqrtf(ss / float(D) + pre.eps);
        }
        __syncthreads();
    }
    for (int p = threadIdx.x; p < (nq + nkv) * half; p += blockDim.x) {
        const int head = p / half, i = p % half;
        T * h = row + size_t(head) * D;
        float x1 = val(head * D + i), x2 = val(head * D + i + half);
        if (qn) {
            const T * w = head < nq ? qn : kn;
            const float inv = inv_rms[head];
            x1 = rnd<T>(to_f(w[i]) * rnd<T>(x1 * inv));
            x2 = rnd<T>(to_f(w[i + half]) * rnd<T>(x2 * inv));
        }
        const float c = to_f(cs[2 * i]), s = to_f(cs[2 * i + 1]);
        const T o1 = from_f<T>(rnd<T>(x1 * c) + rnd<T>(-x2 * s));
        const T o2 = from_f<T>(rnd<T>(x2 * c) + rnd<T>(x1 * s));
        if (head < nq) {
            h[i] = o1;
            h[i + half] = o2;
        } else if (kcache) {
            T * k = kcache + size_t(head - nq) * D;
            k[i] = o1;
            k[i + half] = o2;
        }
    }
    if (!kcache) return;
    const T * v = row + size_t(nq + nkv) * D;
    T * vcache = kcache + pool.kv_elems();
    if (bias) {
        for (int c = threadIdx.x; c < nkv * D; c += blockDim.x) vcache[c] = from_f<T>(val((nq + nkv) * D + c));
    } else {
        for (int c = threadIdx.x; c < nkv * D / 8; c += blockDim.x)
            reinterpret_cast<uint4 *>(vcache)[c] = reinterpret_cast<const uint4 *>(v)[c];
    }
}

template <typename T> __global__ void silu_mul_k(const T * gu, T * out, int rows, int inter) {
    pdl_wait();
    pdl_trigger();
    const size_t n = size_t(rows) * inter / 8;
    for (size_t v = blockIdx.x * size_t(blockDim.x) + threadIdx.x; v < n; v += size_t(gridDim.x) * blockDim.x) {
        const size_t e = v * 8, r = e / inter, i = e % inter;
        float g[8], u[8], o[8];
        load8(gu + r * 2 * inter + i, g);
        load8(gu + r * 2 * inter + inter + i, u);
#pragma unroll
        for (int k = 0; k < 8; ++k) o[k] = rnd<T>(g[k] / (1.f + __expf(-g[k]))) * u[k];
        store8(out + e, o);
    }
}

// ---- decode attention ------------------------------------------------------------------------------------

constexpr int kDecodeWarps = 4;
constexpr int kDecodeMinPerSplit = 64;  // tokens: a split shorter than this is not worth its CTA

// NT: K/V loads per lane issued together before any is used (one memory round trip per round of GROUPS * NT
// tokens). Small batches (a few CTAs per KV head, latency-bound) take the deep rounds; large batches take NT = 1,
// whose fewer registers keep more CTAs per SM (measured: deep rounds at batch 128 cost 18% of the 8B step).
template <int GROUPS, int G> constexpr int decode_deep_tokens_per_lane() {
    return GROUPS >= 64 ? 1 : (64 / GROUPS > (G > 4 ? 2 : 4) ? (G > 4 ? 2 : 4) : 64 / GROUPS);
}
constexpr int kDecodeDeepMaxBatch = 8;

template <typename T, int D, int G, int NT>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    decode_attention_k(const T * q, int q_stride, const int * seq_lens, const int * bt_rows, const int * block_tables,
                       int bt_stride, KvPoolView pool, int layer, int num_heads, int splits, float scale_log2,
                       float * part_o, float * part_ml, unsigned int * counters, T * out, int out_stride, int window) {
    constexpr int LPT = D / 8;       // lanes per token: each lane holds 8 elements of the head
    constexpr int TPW = 32 / LPT;    // tokens per warp step
    constexpr int GROUPS = kDecodeWarps * TPW;
    __shared__ float sm_ml[GROUPS][G][2];
    __shared__ float sm_acc[GROUPS][G][D];
    const int b = blockIdx.x, kvh = blockIdx.y, sp = blockIdx.z;
    // The step's lengths and block tables, and the KV of every token but the newest, were in place before this
    // forward pass began (uploaded or written by earlier steps, in stream order). Only q and the newest token's K/V
    // come from the kernel just before, so the rest is loaded before pdl_wait, under that kernel's tail.
    const int L = seq_lens[b];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gi = lane / LPT, li = lane % LPT;
    const int gid = warp * TPW + gi;
    const int lo = window > 0 ? max(0, L - window) : 0;  // the sliding window's first key
    const int per = max((L - lo + splits - 1) / splits, kDecodeMinPerSplit);
    const int begin = lo + sp * per, end = min(L, begin + per);
    const int nkv = pool.num_kv_heads, TB = pool.tokens_per_block;
    const T * base = static_cast<const T *>(pool.base) + size_t(layer) * pool.layer_elems() + size_t(kvh) * D + li * 8;
    const int * bt = block_tables + size_t(bt_rows[b]) * bt_stride;
    auto kv_at = [&](int t) { return base + size_t(bt[t / TB]) * pool.block_elems() + size_t(t % TB) * nkv * D; };
    uint4 kraw[NT], vraw[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        const int t = begin + gid + j * GROUPS;
        if (t < end && t < L - 1) {
            const T * kp = kv_at(t);
            kraw[j] = *reinterpret_cast<const uint4 *>(kp);
            vraw[j] = *reinterpret_cast<const uint4 *>(kp + pool.kv_elems());
        }
    }
    pdl_wait();
    pdl_trigger();

    float qr[G][8], acc[G][8], m[G], l[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        load8(q + size_t(b) * q_stride + size_t(kvh * G + g) * D + li * 8, qr[g]);
#pragma unroll
        for (int k = 0; k < 8; ++k) { qr[g][k] *= scale_log2; acc[g][k] = 0.f; }
        m[g] = -INFINITY;
        l[g] = 0.f;
    }
    // Rounds of GROUPS * NT tokens; lane group gid takes tokens begin + gid + j * GROUPS, in the order j, so each
    // lane's online softmax sees the same sequence as one token per loop trip would.
    for (int r0 = begin; r0 < end; r0 += GROUPS * NT) {
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            const int t = r0 + gid + j * GROUPS;
            if (t < end && (r0 != begin || t >= L - 1)) {  // round 0 preloaded all but the newest token
                const T * kp = kv_at(t);
                kraw[j] = *reinterpret_cast<const uint4 *>(kp);
                vraw[j] = *reinterpret_cast<const uint4 *>(kp + pool.kv_elems());
            }
        }
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            const int t = r0 + gid + j * GROUPS;
            const bool valid = t < end;
            float kf[8], vf[8];
            const T * ke = reinterpret_cast<const T *>(&kraw[j]);
            const T * ve = reinterpret_cast<const T *>(&vraw[j]);
#pragma unroll
            for (int k = 0; k < 8; ++k) { kf[k] = valid ? to_f(ke[k]) : 0.f; vf[k] = valid ? to_f(ve[k]) : 0.f; }
#pragma unroll
            for (int g = 0; g < G; ++g) {
                float s = 0.f;
                if (valid) {
#pragma unroll
                    for (int k = 0; k < 8; ++k) s += qr[g][k] * kf[k];
                }
#pragma unroll
                for (int o = LPT / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                if (valid) {
                    const float mn = fmaxf(m[g], s);
                    const float c = exp2f(m[g] - mn), p = exp2f(s - mn);
                    l[g] = l[g] * c + p;
#pragma unroll
                    for (int k = 0; k < 8; ++k) acc[g][k] = acc[g][k] * c + p * vf[k];
                    m[g] = mn;
                }
            }
        }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int k = 0; k < 8; ++k) sm_acc[gid][g][li * 8 + k] = acc[g][k];
        if (li == 0) { sm_ml[gid][g][0] = m[g]; sm_ml[gid][g][1] = l[g]; }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < G * D; e += blockDim.x) {
        const int g = e / D, d = e % D;
        float M = -INFINITY;
        for (int j = 0; j < GROUPS; ++j) M = fmaxf(M, sm_ml[j][g][0]);
        float o = 0.f, den = 0.f;
        if (M != -INFINITY) {
            for (int j = 0; j < GROUPS; ++j) {
                const float w = exp2f(sm_ml[j][g][0] - M);
                o += w * sm_acc[j][g][d];
                den += w * sm_ml[j][g][1];
            }
        }
        if (splits == 1) {  // no partials: normalize and write the output
            out[size_t(b) * out_stride + size_t(kvh * G + g) * D + d] = from_f<T>(M != -INFINITY && L > 0 ? o / den : 0.f);
            continue;
        }
        const size_t idx = (size_t(b) * num_heads + kvh * G + g) * splits + sp;
        part_o[idx * D + d] = o;
        if (d == 0) { part_ml[idx * 2] = M; part_ml[idx * 2 + 1] = den; }
    }
    if (splits == 1) return;
    // The last CTA of this (sequence, kv head) to finish merges the splits' partials (no second kernel).
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned int * c = counters + size_t(b) * pool.num_kv_heads + kvh;
        last = atomicAdd(c, 1u) == unsigned(splits - 1);
        if (last) *c = 0;  // ready for the next launch (graph replays)
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int e = threadIdx.x; e < G * D; e += blockDim.x) {
        const int g = e / D, d = e % D;
        const size_t base = (size_t(b) * num_heads + kvh * G + g) * splits;
        float M = -INFINITY;
        for (int k = 0; k < splits; ++k) M = fmaxf(M, __ldcg(part_ml + (base + k) * 2));
        float o = 0.f, den = 0.f;
        if (L > 0 && M != -INFINITY) {
            for (int k = 0; k < splits; ++k) {
                const float w = exp2f(__ldcg(part_ml + (base + k) * 2) - M);
                o += w * __ldcg(part_o + (base + k) * D + d);
                den += w * __ldcg(part_ml + (base + k) * 2 + 1);
            }
            o /= den;
        }
        out[size_t(b) * out_stride + size_t(kvh * G + g) * D + d] = from_f<T>(o);
    }
}

// ---- prefill attention (wmma tiles) ----------------------------------------------------------------------

constexpr int kTileM = 64, kTileN = 64, kPrefillWarps = 4;

template <int D> constexpr size_t prefill_smem_bytes() {
    return size_t(3) * kTileM * D * 2 + size_t(kPrefillWarps) * 16 * kTileN * 4 + size_t(kPrefillWarps) * 16 * kTileN * 2 +
           size_t(kPrefillWarps) * 16 * D * 4 + 3 * kTileM * 4;
}

template <typename T, int D>
__global__ void __launch_bounds__(kPrefillWarps * 32)
    prefill_attention_k(const T * q, int q_stride, T * out, int out_stride, const int * tile_seq, const int * tile_row0,
                        const int * q_start, const int * q_len, const int * ctx_len, const int * bt_rows,
                        const int * block_tables, int bt_stride, KvPoolView pool, int layer, int num_heads,
                        float scale_log2, int window) {
    pdl_wait();
    pdl_trigger();
    using namespace nvcuda;
    extern __shared__ __align__(128) unsigned char smem[];
    T * Qs = reinterpret_cast<T *>(smem);
    T * Ks = Qs + kTileM * D;
    T * Vs = Ks + kTileN * D;
    float * S = reinterpret_cast<float *>(Vs + kTileN * D);
    T * P = reinterpret_cast<T *>(S + kPrefillWarps * 16 * kTileN);
    float * O = reinterpret_cast<float *>(P + kPrefillWarps * 16 * kTileN);
    float * rowm = O + kPrefillWarps * 16 * D;
    float * rowl = rowm + kTileM;
    float * rowc = rowl + kTileM;

    const int tile = blockIdx.x, h = blockIdx.y;
    const int seq = tile_seq[tile], r0 = tile_row0[tile];
    const int qs = q_start[seq], ql = q_len[seq], ctx = ctx_len[seq];
    const int pos0 = ctx - ql;  // position of row qs
    const int nkv = pool.num_kv_heads, TB = pool.tokens_per_block, G = num_heads / nkv, kvh = h / G;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row_end = min(r0 + kTileM, qs + ql);
    const int kmax = min(ctx, pos0 + (row_end - qs));  // keys [0, kmax) are seen by some row of the tile
    constexpr int CH = D / 8;                          // 16-byte chunks per row

    for (int c = threadIdx.x; c < kTileM * CH; c += blockDim.x) {
        const int rr = c / CH, cc = c % CH, r = r0 + rr;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r < row_end) v = *reinterpret_cast<const uint4 *>(q + size_t(r) * q_stride + size_t(h) * D + cc * 8);
        reinterpret_cast<uint4 *>(Qs)[c] = v;
    }
    float * Ow = O + warp * 16 * D;
    float * Sw = S + warp * 16 * kTileN;
    T * Pw = P + warp * 16 * kTileN;
    for (int e = lane; e < 16 * D; e += 32) Ow[e] = 0.f;
    if (lane < 16) { rowm[warp * 16 + lane] = -INFINITY; rowl[warp * 16 + lane] = 0.f; }

    const int * bt = block_tables + size_t(bt_rows[seq]) * bt_stride;
    const T * kbase = static_cast<const T *>(pool.base) + size_t(layer) * pool.layer_elems() + size_t(kvh) * D;
    const int rr = lane / 2, hf = lane % 2;
    const int my_row = r0 + warp * 16 + rr;
    const bool row_valid = my_row < row_end;
    const int qpos = pos0 + (my_row - qs);
    // Sliding window: row p sees keys > p - window; key tiles wholly before the tile's first row's window are skipped.
    const int qlo = window > 0 ? qpos - window : -1;
    const int kstart = window > 0 ? max(0, pos0 + (r0 - qs) - window + 1) / kTileN * kTileN : 0;

    for (int k0 = kstart; k0 < kmax; k0 += kTileN) {
        __syncthreads();
        for (int c = threadIdx.x; c < kTileN * CH; c += blockDim.x) {
            const int j = c / CH, cc = c % CH, kpos = k0 + j;
            uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
            if (kpos < kmax) {
                const T * kp = kbase + size_t(bt[kpos / TB]) * pool.block_elems() + size_t(kpos % TB) * nkv * D + cc * 8;
                kv = *reinterpret_cast<const uint4 *>(kp);
                vv = *reinterpret_cast<const uint4 *>(kp + pool.kv_elems());
            }
            reinterpret_cast<uint4 *>(Ks)[c] = kv;
            reinterpret_cast<uint4 *>(Vs)[c] = vv;
        }
        __syncthreads();
        // S = Q_w K^T
#pragma unroll
        for (int j = 0; j < kTileN / 16; ++j) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.f);
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bf;
                wmma::load_matrix_sync(a, Qs + warp * 16 * D + kk * 16, D);
                wmma::load_matrix_sync(bf, Ks + j * 16 * D + kk * 16, D);
                wmma::mma_sync(acc, a, bf, acc);
            }
            wmma::store_matrix_sync(Sw + j * 16, acc, kTileN, wmma::mem_row_major);
        }
        __syncwarp();
        // online softmax: two lanes per row, 32 columns each
        float sv[kTileN / 2];
        float mloc = -INFINITY;
#pragma unroll
        for (int c = 0; c < kTileN / 2; ++c) {
            const int col = hf * (kTileN / 2) + c, kpos = k0 + col;
            const bool ok = row_valid && kpos <= qpos && kpos > qlo;
            sv[c] = ok ? Sw[rr * kTileN + col] * scale_log2 : -INFINITY;
            mloc = fmaxf(mloc, sv[c]);
        }
        mloc = fmaxf(mloc, __shfl_xor_sync(0xffffffffu, mloc, 1));
        const float mold = rowm[warp * 16 + rr];
        const float mnew = fmaxf(mold, mloc);
        const float corr = mnew == -INFINITY ? 1.f : exp2f(mold - mnew);
        float sum = 0.f;
#pragma unroll
        for (int c = 0; c < kTileN / 2; ++c) {
            const int col = hf * (kTileN / 2) + c;
            const float p = sv[c] == -INFINITY ? 0.f : exp2f(sv[c] - mnew);
            const T pt = from_f<T>(p);
            Pw[rr * kTileN + col] = pt;
            sum += to_f(pt);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        __syncwarp();
        if (hf == 0) {
            rowm[warp * 16 + rr] = mnew;
            rowl[warp * 16 + rr] = rowl[warp * 16 + rr] * corr + sum;
            rowc[warp * 16 + rr] = corr;
        }
        __syncwarp();
        for (int e = lane; e < 16 * D; e += 32) Ow[e] *= rowc[warp * 16 + e / D];
        __syncwarp();
        // O_w += P_w V
#pragma unroll
        for (int j = 0; j < D / 16; ++j) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, Ow + j * 16, D, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < kTileN / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bf;
                wmma::load_matrix_sync(a, Pw + kk * 16, kTileN);
                wmma::load_matrix_sync(bf, Vs + kk * 16 * D + j * 16, D);
                wmma::mma_sync(acc, a, bf, acc);
            }
            wmma::store_matrix_sync(Ow + j * 16, acc, D, wmma::mem_row_major);
        }
        __syncwarp();
    }
    __syncwarp();
    for (int e = lane; e < 16 * D; e += 32) {
        const int r = r0 + warp * 16 + e / D;
        if (r < row_end) out[size_t(r) * out_stride + size_t(h) * D + e % D] = from_f<T>(Ow[e] / rowl[warp * 16 + e / D]);
    }
}

// ---- prefill attention (FA2 on mma.sync m16n8k16, D = 64 or 128) ----------------------------------------
// Per CTA 64 query rows (4 warps x 16) of one head; K/V tiles of 64 keys double-buffered in shared memory by
// cp.async (gathered from the paged pool), Q and the O accumulators in registers, the online softmax on the
// S accumulators, P fed back as the A operand without a trip through shared memory.

template <typename T> struct MmaOps;
template <> struct MmaOps<__nv_bfloat16> {
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
};
template <> struct MmaOps<__half> {
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
};

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void * p) {
    const uint32_t a = uint32_t(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void * p) {
    const uint32_t a = uint32_t(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
// 16 bytes global -> shared; valid == false fills zeros (nothing is read).
__device__ __forceinline__ void cp_async16(void * smem, const void * gmem, bool valid) {
    const uint32_t s = uint32_t(__cvta_generic_to_shared(smem));
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

template <int D> constexpr int fa_stride() { return D + 8; }  // padded rows: ldmatrix without bank conflicts
template <int D> constexpr size_t fa_smem_bytes() { return size_t(5) * kTileM * fa_stride<D>() * 2; }

template <typename T, int D>
__global__ void __launch_bounds__(kPrefillWarps * 32)
    prefill_attention_mma_k(const T * q, int q_stride, T * out, int out_stride, const int * tile_seq, const int * tile_row0,
                            const int * q_start, const int * q_len, const int * ctx_len, const int * bt_rows,
                            const int * block_tables, int bt_stride, KvPoolView pool, int layer, int num_heads,
                            float scale_log2, int window) {
    pdl_wait();
    pdl_trigger();
    constexpr int SD = fa_stride<D>(), CH = D / 8, BN = kTileN;
    extern __shared__ __align__(128) unsigned char smem[];
    T * Qs = reinterpret_cast<T *>(smem);
    T * Ks = Qs + kTileM * SD;       // [2][BN][SD]
    T * Vs = Ks + 2 * BN * SD;       // [2][BN][SD]

    const int tile = blockIdx.x, h = blockIdx.y;
    const int seq = tile_seq[tile], r0 = tile_row0[tile];
    const int qs = q_start[seq], ql = q_len[seq], ctx = ctx_len[seq];
    const int pos0 = ctx - ql;
    const int nkv = pool.num_kv_heads, TB = pool.tokens_per_block, G = num_heads / nkv, kvh = h / G;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
    const int row_end = min(r0 + kTileM, qs + ql);
    const int kmax = min(ctx, pos0 + (row_end - qs));
    // Sliding window: row p sees keys > p - window; key tiles wholly before the tile's first row's window are skipped.
    const int kstart = window > 0 ? max(0, pos0 + (r0 - qs) - window + 1) / BN * BN : 0;
    const int ntiles = (kmax - kstart + BN - 1) / BN;
    if (ntiles <= 0) return;
    const int * bt = block_tables + size_t(bt_rows[seq]) * bt_stride;
    const T * kbase = static_cast<const T *>(pool.base) + size_t(layer) * pool.layer_elems() + size_t(kvh) * D;

    for (int c = tid; c < kTileM * CH; c += blockDim.x) {
        const int rr = c / CH, cc = c % CH, r = r0 + rr;
        const bool ok = r < row_end;
        cp_async16(Qs + rr * SD + cc * 8, ok ? q + size_t(r) * q_stride + size_t(h) * D + cc * 8 : q, ok);
    }
    auto load_kv = [&](int buf, int k0) {
        for (int c = tid; c < BN * CH; c += blockDim.x) {
            const int j = c / CH, cc = c % CH, kpos = k0 + j;
            const bool ok = kpos < kmax;
            const T * src = ok ? kbase + size_t(bt[kpos / TB]) * pool.block_elems() + size_t(kpos % TB) * nkv * D + cc * 8 : kbase;
            cp_async16(Ks + (buf * BN + j) * SD + cc * 8, src, ok);
            cp_async16(Vs + (buf * BN + j) * SD + cc * 8, ok ? src + pool.kv_elems() : kbase, ok);
        }
    };
    load_kv(0, kstart);
    cp_async_commit();

    const int row0 = r0 + warp * 16 + g, row1 = row0 + 8;
    const bool ok0 = row0 < row_end, ok1 = row1 < row_end;
    const int qpos0 = pos0 + (row0 - qs), qpos1 = qpos0 + 8;
    const int qlo0 = window > 0 ? qpos0 - window : -1, qlo1 = window > 0 ? qpos1 - window : -1;
    uint32_t qf[D / 16][4];
    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

    for (int i = 0; i < ntiles; ++i) {
        const int buf = i & 1;
        if (i + 1 < ntiles) {
            load_kv(buf ^ 1, kstart + (i + 1) * BN);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (i == 0) {
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk)
                ldmatrix_x4(qf[kk], Qs + (warp * 16 + (lane % 8) + 8 * ((lane / 8) % 2)) * SD + kk * 16 + 8 * (lane / 16));
        }
        const T * Kb = Ks + buf * BN * SD;
        const T * Vb = Vs + buf * BN * SD;
        float s[BN / 8][4];
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
            for (int jj = 0; jj < BN / 16; ++jj) {
                uint32_t b[4];
                ldmatrix_x4(b, Kb + (jj * 16 + (lane % 8) + 8 * (lane / 16)) * SD + kk * 16 + 8 * ((lane / 8) % 2));
                MmaOps<T>::mma(s[2 * jj], qf[kk], b[0], b[1]);
                MmaOps<T>::mma(s[2 * jj + 1], qf[kk], b[2], b[3]);
            }
        }
        const int k0 = kstart + i * BN;
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = k0 + j * 8 + 2 * t + (e & 1);
                const bool ok = e < 2 ? (ok0 && key <= qpos0 && key > qlo0) : (ok1 && key <= qpos1 && key > qlo1);
                s[j][e] = ok ? s[j][e] * scale_log2 : -INFINITY;
            }
            mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
            mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float c0 = mn0 == -INFINITY ? 1.f : exp2f(m0 - mn0), c1 = mn1 == -INFINITY ? 1.f : exp2f(m1 - mn1);
        m0 = mn0;
        m1 = mn1;
        l0 *= c0;
        l1 *= c1;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) { o[j][0] *= c0; o[j][1] *= c0; o[j][2] *= c1; o[j][3] *= c1; }
        uint32_t pa[BN / 16][4];
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
            const float p0 = s[j][0] == -INFINITY ? 0.f : exp2f(s[j][0] - mn0);
            const float p1 = s[j][1] == -INFINITY ? 0.f : exp2f(s[j][1] - mn0);
            const float p2 = s[j][2] == -INFINITY ? 0.f : exp2f(s[j][2] - mn1);
            const float p3 = s[j][3] == -INFINITY ? 0.f : exp2f(s[j][3] - mn1);
            l0 += p0 + p1;
            l1 += p2 + p3;
            pa[j / 2][(j % 2) * 2 + 0] = MmaOps<T>::pack(p0, p1);
            pa[j / 2][(j % 2) * 2 + 1] = MmaOps<T>::pack(p2, p3);
        }
#pragma unroll
        for (int mm = 0; mm < BN / 16; ++mm) {
#pragma unroll
            for (int dd = 0; dd < D / 16; ++dd) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, Vb + (mm * 16 + (lane % 8) + 8 * ((lane / 8) % 2)) * SD + dd * 16 + 8 * (lane / 16));
                MmaOps<T>::mma(o[2 * dd], pa[mm], b[0], b[1]);
                MmaOps<T>::mma(o[2 * dd + 1], pa[mm], b[2], b[3]);
            }
        }
        __syncthreads();
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
        const int col = j * 8 + 2 * t;
        if (ok0) *reinterpret_cast<uint32_t *>(out + size_t(row0) * out_stride + size_t(h) * D + col) = MmaOps<T>::pack(o[j][0] * i0, o[j][1] * i0);
        if (ok1) *reinterpret_cast<uint32_t *>(out + size_t(row1) * out_stride + size_t(h) * D + col) = MmaOps<T>::pack(o[j][2] * i1, o[j][3] * i1);
    }
}

// ---- sampling -------------------------------------------------------------------------------------------

constexpr int kSampleThreads = 1024;

// Greedy over a vocabulary row, split across kArgmaxCtas CTAs per row (one CTA per row took ~56 us for 128k
// entries: a thousand threads each walking 125 dependent loads). Each CTA folds its slice into a 64-bit key,
// value-major with the complement of the id below it, so that one atomicMax keeps the largest value and, among
// equal values, the lowest id; the last CTA of the row to arrive turns the key into the id and resets the slot
// for the next launch (graph replays). NaN and -inf never win, as with the reference's strict '>' from -inf, and
// a row with no candidate gives id 0.
constexpr int kArgmaxThreads = 256, kArgmaxCtas = 32;

__device__ __forceinline__ unsigned long long argmax_key(float v, int i) {
    if (!(v > -INFINITY)) return 0ull;
    if (v == 0.f) v = 0.f;  // -0.0 ties with +0.0 (the lower id wins)
    const uint32_t u = __float_as_uint(v);
    const uint32_t ord = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (static_cast<unsigned long long>(ord) << 32) | ~static_cast<uint32_t>(i);
}

__global__ void __launch_bounds__(kArgmaxThreads) argmax_k(const float * logits, int vocab, int * out, unsigned long long * keys,
                                                           unsigned int * arrived) {
    pdl_wait();
    pdl_trigger();
    __shared__ unsigned long long warp_best[kArgmaxThreads / 32];
    __shared__ bool last;
    const int r = blockIdx.x;
    const float * row = logits + size_t(r) * vocab;
    const int chunk = (vocab + gridDim.y - 1) / gridDim.y, lo = blockIdx.y * chunk, hi = min(vocab, lo + chunk);
    unsigned long long best = 0ull;
#pragma unroll 4
    for (int i = lo + threadIdx.x; i < hi; i += kArgmaxThreads) best = max(best, argmax_key(__ldcg(row + i), i));
    for (int o = 16; o > 0; o >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, o));
    if (threadIdx.x % 32 == 0) warp_best[threadIdx.x / 32] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < kArgmaxThreads / 32; ++w) best = max(best, warp_best[w]);
        if (best) atomicMax(keys + r, best);
        __threadfence();
        last = atomicAdd(arrived + r, 1u) == gridDim.y - 1;
        if (last) {
            const unsigned long long k = atomicExch(keys + r, 0ull);
            arrived[r] = 0;
            out[r] = k ? int(~static_cast<uint32_t>(k)) : 0;
        }
    }
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// Bit for bit the reference executor's counter_uniform (sampler.cpp).
__device__ __forceinline__ double counter_uniform(uint64_t seed, uint64_t n) {
    const uint64_t z = mix64(mix64(seed ^ 0x6A09E667F3BCC909ull) + (n + 1) * 0x9E3779B97F4A7C15ull);
    return double(z >> 11) * (1.0 / 9007199254740992.0);
}
// The reference sampler's radix key: ascending order of keys is logit descending; -0.0 folded into +0.0.
__device__ __forceinline__ uint32_t desc_key(float f) {
    if (f == 0.0f) f = 0.0f;
    const uint32_t u = __float_as_uint(f);
    const uint32_t asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~asc;
}

__global__ void sort_keys_k(const float * logits, const SampleParams * params, const int * filtered_list, int vocab,
                            uint32_t * keys, int * ids, int * offsets, int nf) {
    const int f = blockIdx.y;
    const SampleParams p = params[filtered_list[f]];
    const float * row = logits + size_t(p.logits_row) * vocab;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < vocab; i += gridDim.x * blockDim.x) {
        keys[size_t(f) * vocab + i] = desc_key(row[i]);
        ids[size_t(f) * vocab + i] = i;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        offsets[f] = f * vocab;
        if (f == nf - 1) offsets[nf] = nf * vocab;
    }
}

__global__ void __launch_bounds__(kSampleThreads) sample_k(const float * logits, const SampleParams * params,
                                                           const int * sorted_ids, int vocab, int * out) {
    using Scan = cub::BlockScan<double, kSampleThreads>;
    using Reduce = cub::BlockReduce<double, kSampleThreads>;
    __shared__ union {
        typename Scan::TempStorage scan;
        typename Reduce::TempStorage reduce;
    } tmp;
    __shared__ double s_val;
    __shared__ int s_found;
    const SampleParams p = params[blockIdx.x];
    const float * row = logits + size_t(p.logits_row) * vocab;
    const int * order = p.filtered ? sorted_ids + size_t(p.sorted_row) * vocab : nullptr;
    auto at = [&](int i) -> float { return order ? row[order[i]] : row[i]; };
    const double inv_t = 1.0 / double(p.temperature);
    double mx;
    if (order) {
        mx = double(row[order[0]]);
    } else {
        double m = -INFINITY;
        for (int i = threadIdx.x; i < vocab; i += kSampleThreads) m = fmax(m, double(row[i]));
        m = Reduce(tmp.reduce).Reduce(m, [](double a, double b) { return fmax(a, b); });
        if (threadIdx.x == 0) s_val = m;
        __syncthreads();
        mx = s_val;
        __syncthreads();
    }
    const int kcut = order && p.top_k > 0 ? min(p.top_k, vocab) : vocab;
    auto prob = [&](int i) -> double { return i < kcut ? exp((double(at(i)) - mx) * inv_t) : 0.0; };
    double total = 0;
    for (int i = threadIdx.x; i < kcut; i += kSampleThreads) total += prob(i);
    total = Reduce(tmp.reduce).Sum(total);
    if (threadIdx.x == 0) s_val = total;
    __syncthreads();
    total = s_val;
    __syncthreads();
    // First index in [0, n) whose running mass satisfies pred(running mass): chunked block scans in order.
    auto first_where = [&](int n, bool at_least, double threshold, double * mass_out) -> int {
        double carry = 0;
        for (int base = 0; base < n; base += kSampleThreads) {
            const int i = base + threadIdx.x;
            const double v = i < n ? prob(i) : 0.0;
            double incl, agg;
            Scan(tmp.scan).InclusiveSum(v, incl, agg);
            if (threadIdx.x == 0) s_found = 0x7fffffff;
            __syncthreads();
            const double run = carry + incl;
            if (i < n && (at_least ? run >= threshold : run > threshold)) atomicMin(&s_found, i);
            __syncthreads();
            const int found = s_found;
            if (found != 0x7fffffff) {
                if (i == found) s_val = run;
                __syncthreads();
                *mass_out = s_val;
                __syncthreads();
                return found;
            }
            carry += agg;
            __syncthreads();
        }
        *mass_out = carry;
        return -1;
    };
    int keep = kcut;
    double kept = total;
    if (order && p.top_p < 1.f) {
        double mass;
        const int i = first_where(kcut, true, double(p.top_p) * total, &mass);
        if (i >= 0) { keep = i + 1; kept = mass; }
    }
    const double u = counter_uniform(p.seed, p.n);
    double unused;
    int pick = first_where(keep, false, u * kept, &unused);
    if (pick < 0) pick = keep - 1;
    if (threadIdx.x == 0) out[blockIdx.x] = order ? order[pick] : pick;
}

// ---- token masks ---------------------------------------------------------------------------------------

// One warp per mask word: its 32 lanes take the word's 32 ids, so the word is one broadcast load and the logits one
// coalesced 128-byte access. A word that allows all 32 ids leaves an in-place row untouched (no write at all: an
// all-allowing mask costs only the mask's reads).
constexpr int kMaskWarps = 8;

__global__ void __launch_bounds__(kMaskWarps * 32) token_mask_k(const float * src, float * dst, const MaskRow * rows,
                                                                const uint32_t * masks, int vocab) {
    const int i = blockIdx.y, words = (vocab + 31) / 32, lane = threadIdx.x % 32;
    const MaskRow mr = rows[i];
    const float * s = src + size_t(mr.src_row) * vocab;
    float * d = dst + size_t(mr.dst_row) * vocab;
    const bool in_place = s == d;
    const uint32_t * m = masks + size_t(i) * words;
    for (int w = blockIdx.x * kMaskWarps + threadIdx.x / 32; w < words; w += gridDim.x * kMaskWarps) {
        const uint32_t bits = m[w];
        if (in_place && bits == 0xffffffffu) continue;  // warp-uniform
        const int v = w * 32 + lane;
        if (v >= vocab) continue;  // the last word's bits past vocab
        if (!((bits >> lane) & 1u)) d[v] = -INFINITY;
        else if (!in_place) d[v] = s[v];
    }
}

// ---- KV blocks ------------------------------------------------------------------------------------------

__global__ void block_table_updates_k(int * bt, const int * idx, const int * val, const int * count) {
    const int n = *count;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) bt[idx[i]] = val[i];
}

constexpr int kCopySlices = 16;

__global__ void copy_blocks_k(const uint4 * src, const int * src_blocks, uint4 * dst, const int * dst_blocks, size_t block_vecs) {
    const int i = blockIdx.x;
    const uint4 * s = src + size_t(src_blocks[i]) * block_vecs;
    uint4 * d = dst + size_t(dst_blocks[i]) * block_vecs;
    const size_t per = (block_vecs + kCopySlices - 1) / kCopySlices;
    const size_t lo = blockIdx.y * per, hi = min(block_vecs, lo + per);
    for (size_t v = lo + threadIdx.x; v < hi; v += blockDim.x) d[v] = s[v];
}

__global__ void checksum_k(const uint64_t * base, const int * blocks, size_t block_words, unsigned long long * out) {
    const int i = blockIdx.x;
    const uint64_t * b = base + size_t(blocks[i]) * block_words;
    const size_t per = (block_words + kCopySlices - 1) / kCopySlices;
    const size_t lo = blockIdx.y * per, hi = min(block_words, lo + per);
    uint64_t h = 0;
    for (size_t w = lo + threadIdx.x; w < hi; w += blockDim.x)
        h += mix64(b[w] ^ ((uint64_t(i) * block_words + w + 1) * 0x9E3779B97F4A7C15ull));
    for (int o = 16; o > 0; o >>= 1) h += __shfl_xor_sync(0xffffffffu, h, o);
    if (threadIdx.x % 32 == 0) atomicAdd(out, (unsigned long long)h);
}

}  // namespace

// ---- small-batch GEMM (decode): y[m][r] = sum_c x[m][c] w[r][c], a warp per weight row -------------------
// Streams each weight row once for all M inputs (x stays in L1/L2), fp32 accumulation, the model dtype (or
// fp32 for logits) out. For M <= 8 this reads the weights at close to the copy bandwidth where cuBLAS's
// small-N kernels, measured at init, may not: the engine picks per shape whichever is faster.

__device__ __forceinline__ uint4 ld_stream(const void * p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

template <typename T> __device__ __forceinline__ void unpack8(const uint4 & u, float f[8]) {
    const T * e = reinterpret_cast<const T *>(&u);
#pragma unroll
    for (int k = 0; k < 8; ++k) f[k] = to_f(e[k]);
}

constexpr int kGemvWarps = 8, kGemvUnroll = 4;

// One warp asks L2 for a row of n elements (128-byte lines).
template <typename T> __device__ __forceinline__ void prefetch_row_l2(const T * row, int n, int lane) {
    for (int c = lane * (128 / int(sizeof(T))); c < n; c += 32 * (128 / int(sizeof(T)))) prefetch_l2(row + c);
}

template <typename T, int M, bool F32OUT>
__global__ void __launch_bounds__(kGemvWarps * 32) gemv_k(const T * __restrict__ W, const T * __restrict__ X, void * Y, int out, int in, int pf, int early) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = blockIdx.x * kGemvWarps + warp;
    // The weights are never written, so their first loads go out while the previous kernel drains: this warp's first
    // group of loads into registers (consumed right after the wait; `early`), and pf elements of its row into L2.
    uint4 wv[kGemvUnroll];
    const bool first_loaded = early && r0 < out && lane * 8 + (kGemvUnroll - 1) * 256 < in;
    if (first_loaded) {
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) wv[u] = ld_stream(W + size_t(r0) * in + lane * 8 + u * 256);
    }
    if (r0 < out) prefetch_row_l2(W + size_t(r0) * in, pf, lane);
    pdl_wait();
    pdl_trigger();
    for (int r = r0; r < out; r += gridDim.x * kGemvWarps) {
        const T * w = W + size_t(r) * in;
        float acc[M];
#pragma unroll
        for (int m = 0; m < M; ++m) acc[m] = 0.f;
        int c = lane * 8;
        bool loaded = first_loaded && r == r0;
        for (; c + (kGemvUnroll - 1) * 256 < in; c += kGemvUnroll * 256) {
            if (!loaded) {
#pragma unroll
                for (int u = 0; u < kGemvUnroll; ++u) wv[u] = ld_stream(w + c + u * 256);
            }
            loaded = false;
#pragma unroll
            for (int u = 0; u < kGemvUnroll; ++u) {
                float wf[8];
                unpack8<T>(wv[u], wf);
#pragma unroll
                for (int m = 0; m < M; ++m) {
                    float xf[8];
                    unpack8<T>(__ldg(reinterpret_cast<const uint4 *>(X + size_t(m) * in + c + u * 256)), xf);
#pragma unroll
                    for (int k = 0; k < 8; ++k) acc[m] += wf[k] * xf[k];
                }
            }
        }
        for (; c < in; c += 256) {
            float wf[8];
            unpack8<T>(ld_stream(w + c), wf);
#pragma unroll
            for (int m = 0; m < M; ++m) {
                float xf[8];
                unpack8<T>(__ldg(reinterpret_cast<const uint4 *>(X + size_t(m) * in + c)), xf);
#pragma unroll
                for (int k = 0; k < 8; ++k) acc[m] += wf[k] * xf[k];
            }
        }
#pragma unroll
        for (int m = 0; m < M; ++m)
            for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
        if (lane == 0) {
#pragma unroll
            for (int m = 0; m < M; ++m) {
                if (F32OUT) static_cast<float *>(Y)[size_t(m) * out + r] = acc[m];
                else static_cast<T *>(Y)[size_t(m) * out + r] = from_f<T>(acc[m]);
            }
        }
    }
}

// Two weight rows per warp with the next small kernel folded into the epilogue (batch <= 8, decode steps):
//   EPI_SILU: rows p and p + pairs of gate_up; Y[m][p] = silu(gate) * up, rounded as silu_mul is;
//   EPI_ROPE: rows (head, i) and (head, i + D/2) of qkv; q heads roped into Y, k heads roped and v heads written to
//             the KV pool at slots[m] (and the raw k, v rows to Y), rounded as rope_kv_write is.
// Each row's dot product is the gemv_k loop's, so the results equal gemv_k followed by the separate kernel.
constexpr int EPI_SILU = 1, EPI_ROPE = 2;
struct GemvRope {
    const int * positions;
    const int * slots;
    const void * cos_sin;
    KvPoolView pool;
    int layer, num_heads;
};

// The RMSNorm in front of the GEMM (GemvNorm), folded into its prologue: every CTA computes the M normalized rows
// itself into shared memory, in add_rmsnorm_k<T, THREADS>'s order of sums (its THREADS threads played by this CTA's
// 256, a virtual thread v = threadIdx.x + 256 j), so the rows are bit for bit the ones that kernel would write.

__host__ __device__ constexpr int norm_threads(int hidden) {  // add_rmsnorm's launch width for this row length
    return hidden / 8 <= 128 ? 128 : hidden / 8 <= 256 ? 256 : hidden / 8 <= 512 ? 512 : 1024;
}

template <typename T, int M>
__device__ void norm_rows_to_shared(const GemvNorm & nm, int H, T * xs, bool write_res) {
    constexpr int CTA = kGemvWarps * 32;
    __shared__ float scratch[32];
    const int NV = norm_threads(H), R = (NV + CTA - 1) / CTA;  // R <= 4
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll 1
    for (int m = 0; m < M; ++m) {
        const T * r = static_cast<const T *>(nm.res_in) + size_t(m) * H;
        const T * d = nm.delta ? static_cast<const T *>(nm.delta) + size_t(m) * H : nullptr;
        T * ro = static_cast<T *>(nm.res_out) + size_t(m) * H;
        T * xm = xs + size_t(m) * H;
        float part[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int v = threadIdx.x + j * CTA;
            if (j >= R || v >= NV) continue;
            for (int c = v * 8; c < H; c += NV * 8) {
                float x[8];
                load8(r + c, x);
                if (d) add_residual8(x, d + c);
                store8(xm + c, x);
                if (write_res) store8(ro + c, x);
#pragma unroll
                for (int k = 0; k < 8; ++k) part[j] += x[k] * x[k];
            }
        }
        // block_sum<NV>: each virtual warp reduces across its lanes, then warp 0 over the NV / 32 warp sums.
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if (j >= R) continue;
            for (int o = 16; o > 0; o >>= 1) part[j] += __shfl_xor_sync(0xffffffffu, part[j], o);
            if (lane == 0 && threadIdx.x + j * CTA < NV) scratch[warp + j * kGemvWarps] = part[j];
        }
        __syncthreads();
        if (threadIdx.x < 32) {
            float t = threadIdx.x < NV / 32 ? scratch[threadIdx.x] : 0.f;
            for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
            if (threadIdx.x == 0) scratch[0] = t;
        }
        __syncthreads();
        const float inv = rsqrtf(scratch[0] / float(H) + nm.eps);
        for (int c = threadIdx.x * 8; c < H; c += CTA * 8) {
            float x[8];
            load8(xm + c, x);
            apply_norm8(x, static_cast<const T *>(nm.weight) + c, inv);
            store8(xm + c, x);
        }
        __syncthreads();
    }
}

// X from global memory through the read-only path, or from shared memory (the folded norm's rows).
template <bool SHARED> __device__ __forceinline__ uint4 ld_x(const void * p) {
    if (SHARED) return *static_cast<const uint4 *>(p);
    return __ldg(static_cast<const uint4 *>(p));
}

template <typename T, int M, int EPI, bool NORM>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_pair_k(const T * __restrict__ W, const T * X, T * Y, int pairs, int in, int pf, int early, int y_stride, GemvRope rp,
                GemvNorm nm) {
    extern __shared__ uint4 norm_rows[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int D = rp.pool.head_dim, half = D / 2;
    auto rows_of = [&](int p, int & ra, int & rb) {
        if (EPI == EPI_SILU) {
            ra = p;
            rb = p + pairs;
        } else {
            ra = (p / half) * D + p % half;
            rb = ra + half;
        }
    };
    // As in gemv_k: the first pair's first group of loads (and pf elements of each row into L2) before the wait, under
    // the previous kernel's tail and this kernel's norm prologue.
    const int p0 = blockIdx.x * kGemvWarps + warp;
    uint4 wv[2][kGemvUnroll];
    const bool first_loaded = early && p0 < pairs && lane * 8 + (kGemvUnroll - 1) * 256 < in;
    if (p0 < pairs) {
        int ra, rb;
        rows_of(p0, ra, rb);
        if (first_loaded) {
#pragma unroll
            for (int u = 0; u < kGemvUnroll; ++u) {
                wv[0][u] = ld_stream(W + size_t(ra) * in + lane * 8 + u * 256);
                wv[1][u] = ld_stream(W + size_t(rb) * in + lane * 8 + u * 256);
            }
        }
        prefetch_row_l2(W + size_t(ra) * in, pf, lane);
        prefetch_row_l2(W + size_t(rb) * in, pf, lane);
    }
    pdl_wait();
    pdl_trigger();
    if (NORM) {
        norm_rows_to_shared<T, M>(nm, in, reinterpret_cast<T *>(norm_rows), blockIdx.x == 0);
        X = reinterpret_cast<const T *>(norm_rows);
    }
    for (int p = p0; p < pairs; p += gridDim.x * kGemvWarps) {
        int ra, rb;
        rows_of(p, ra, rb);
        const T * wa = W + size_t(ra) * in;
        const T * wb = W + size_t(rb) * in;
        float acc[2][M];
#pragma unroll
        for (int m = 0; m < M; ++m) acc[0][m] = acc[1][m] = 0.f;
        int c = lane * 8;
        bool loaded = first_loaded && p == p0;
        for (; c + (kGemvUnroll - 1) * 256 < in; c += kGemvUnroll * 256) {
            if (!loaded) {
#pragma unroll
                for (int u = 0; u < kGemvUnroll; ++u) {
                    wv[0][u] = ld_stream(wa + c + u * 256);
                    wv[1][u] = ld_stream(wb + c + u * 256);
                }
            }
            loaded = false;
#pragma unroll
            for (int u = 0; u < kGemvUnroll; ++u) {
                float fa[8], fb[8];
                unpack8<T>(wv[0][u], fa);
                unpack8<T>(wv[1][u], fb);
#pragma unroll
                for (int m = 0; m < M; ++m) {
                    float xf[8];
                    unpack8<T>(ld_x<NORM>(X + size_t(m) * in + c + u * 256), xf);
#pragma unroll
                    for (int k = 0; k < 8; ++k) {
                        acc[0][m] += fa[k] * xf[k];
                        acc[1][m] += fb[k] * xf[k];
                    }
                }
            }
        }
        for (; c < in; c += 256) {
            float fa[8], fb[8];
            unpack8<T>(ld_stream(wa + c), fa);
            unpack8<T>(ld_stream(wb + c), fb);
#pragma unroll
            for (int m = 0; m < M; ++m) {
                float xf[8];
                unpack8<T>(ld_x<NORM>(X + size_t(m) * in + c), xf);
#pragma unroll
                for (int k = 0; k < 8; ++k) {
                    acc[0][m] += fa[k] * xf[k];
                    acc[1][m] += fb[k] * xf[k];
                }
            }
        }
#pragma unroll
        for (int m = 0; m < M; ++m)
            for (int o = 16; o > 0; o >>= 1) {
                acc[0][m] += __shfl_xor_sync(0xffffffffu, acc[0][m], o);
                acc[1][m] += __shfl_xor_sync(0xffffffffu, acc[1][m], o);
            }
        if (lane != 0) continue;
#pragma unroll
        for (int m = 0; m < M; ++m) {
            const float x1 = rnd<T>(acc[0][m]), x2 = rnd<T>(acc[1][m]);  // the GEMM's output, in the model dtype
            T * y = Y + size_t(m) * y_stride;
            if (EPI == EPI_SILU) {
                y[p] = from_f<T>(rnd<T>(x1 / (1.f + __expf(-x1))) * x2);
                continue;
            }
            const int head = p / half, i = p % half, nq = rp.num_heads, nkv = rp.pool.num_kv_heads;
            const int slot = rp.slots[m];
            T * kcache = nullptr;
            if (slot >= 0)
                kcache = static_cast<T *>(rp.pool.base) + size_t(slot / rp.pool.tokens_per_block) * rp.pool.block_elems() +
                         size_t(rp.layer) * rp.pool.layer_elems() + size_t(slot % rp.pool.tokens_per_block) * nkv * D;
            if (head >= nq + nkv) {  // v: no rotation
                y[ra] = from_f<T>(x1);
                y[rb] = from_f<T>(x2);
                if (kcache) {
                    T * v = kcache + rp.pool.kv_elems() + size_t(head - nq - nkv) * D;
                    v[i] = from_f<T>(x1);
                    v[i + half] = from_f<T>(x2);
                }
                continue;
            }
            const T * cs = static_cast<const T *>(rp.cos_sin) + size_t(rp.positions[m]) * half * 2;
            const float co = to_f(cs[2 * i]), si = to_f(cs[2 * i + 1]);
            const T o1 = from_f<T>(rnd<T>(x1 * co) + rnd<T>(-x2 * si));
            const T o2 = from_f<T>(rnd<T>(x2 * co) + rnd<T>(x1 * si));
            if (head < nq) {
                y[ra] = o1;
                y[rb] = o2;
            } else {
                y[ra] = from_f<T>(x1);
                y[rb] = from_f<T>(x2);
                if (kcache) {
                    T * k = kcache + size_t(head - nq) * D;
                    k[i] = o1;
                    k[i + half] = o2;
                }
            }
        }
    }
}

// ---- launchers ------------------------------------------------------------------------------------------

void embed_gather(DType dt, const int * ids, const void * table, void * out, int rows, int hidden, cudaStream_t s) {
    if (rows <= 0) return;
    TRTD_DISPATCH_DTYPE(dt, launch_pdl(embed_gather_k<T>, rows, 256, 0, s, ids, static_cast<const T *>(table), static_cast<T *>(out), hidden));
    check_launch("embed_gather");
}

void add_rmsnorm(DType dt, void * residual, const void * delta, const void * weight, void * out, const int * rows_map,
                 int rows, int hidden, float eps, cudaStream_t s) {
    if (rows <= 0) return;
    // One CTA per row, one 8-element vector per thread where the row allows (small batches are latency-bound).
    const int vecs = hidden / 8;
    TRTD_DISPATCH_DTYPE(dt, {
        auto args = [&](auto kernel, int threads) {
            launch_pdl(kernel, rows, threads, 0, s, static_cast<T *>(residual), static_cast<const T *>(delta),
                       static_cast<const T *>(weight), static_cast<T *>(out), rows_map, hidden, eps);
        };
        if (vecs <= 128) args(add_rmsnorm_k<T, 128>, 128);
        else if (vecs <= 256) args(add_rmsnorm_k<T, 256>, 256);
        else if (vecs <= 512) args(add_rmsnorm_k<T, 512>, 512);
        else args(add_rmsnorm_k<T, 1024>, 1024);
    });
    check_launch("add_rmsnorm");
}

void rope_kv_write(DType dt, void * qkv, const int * positions, const int * slot_mapping, const void * cos_sin,
                   KvPoolView pool, int layer, int rows, int num_heads, cudaStream_t s, const QkvPre & pre) {
    if (rows <= 0) return;
    if (bool(pre.q_norm) != bool(pre.k_norm)) throw std::runtime_error("rope_kv_write: q_norm and k_norm go together");
    if (pre.q_norm && num_heads + pool.num_kv_heads > kQkvPreMaxNormHeads)
        throw std::runtime_error("rope_kv_write: q/k norms over more than " + std::to_string(kQkvPreMaxNormHeads) + " heads");
    TRTD_DISPATCH_DTYPE(dt, launch_pdl(rope_kv_write_k<T>, rows, 256, 0, s, static_cast<T *>(qkv), positions, slot_mapping,
                                       static_cast<const T *>(cos_sin), pool, layer, num_heads, pre));
    check_launch("rope_kv_write");
}

void silu_mul(DType dt, const void * gate_up, void * out, int rows, int inter, cudaStream_t s) {
    if (rows <= 0) return;
    const size_t vecs = size_t(rows) * inter / 8;
    const int blocks = int(std::min<size_t>((vecs + 255) / 256, 132 * 16));
    TRTD_DISPATCH_DTYPE(dt, launch_pdl(silu_mul_k<T>, blocks, 256, 0, s, static_cast<const T *>(gate_up), static_cast<T *>(out), rows, inter));
    check_launch("silu_mul");
}

size_t decode_attention_workspace_bytes(int max_batch, int num_heads, int head_dim, int max_splits) {
    const size_t parts = size_t(max_batch) * num_heads * max_splits;
    // partial outputs, their (max, sum), and one arrival counter per (sequence, kv head) (zeroed once)
    return parts * head_dim * 4 + parts * 2 * 4 + size_t(max_batch) * num_heads * 4 + 256;
}

namespace {
template <typename T, int D>
void decode_attention_g(int G, const T * q, int q_stride, const int * seq_lens, const int * bt_rows, const int * bt,
                        int bt_stride, KvPoolView pool, int layer, int batch, int num_heads, int splits, float scale_log2,
                        float * po, float * pml, unsigned int * counters, T * out, int out_stride, int window, cudaStream_t s) {
    const dim3 grid(batch, pool.num_kv_heads, splits);
    constexpr int GROUPS = kDecodeWarps * (32 / (D / 8));
    const bool deep = batch <= kDecodeDeepMaxBatch;
#define TRTD_DECODE_G(GV)                                                                                                      \
    case GV:                                                                                                                   \
        if (deep)                                                                                                              \
            launch_pdl(decode_attention_k<T, D, GV, decode_deep_tokens_per_lane<GROUPS, GV>()>, grid, kDecodeWarps * 32, 0, s, \
                       q, q_stride, seq_lens, bt_rows, bt, bt_stride, pool, layer, num_heads, splits, scale_log2, po, pml,       \
                       counters, out, out_stride, window);                                                                     \
        else                                                                                                                   \
            launch_pdl(decode_attention_k<T, D, GV, 1>, grid, kDecodeWarps * 32, 0, s, q, q_stride, seq_lens, bt_rows, bt,     \
                       bt_stride, pool, layer, num_heads, splits, scale_log2, po, pml, counters, out, out_stride, window);     \
        break;
    switch (G) {
        TRTD_DECODE_G(1)
        TRTD_DECODE_G(2)
        TRTD_DECODE_G(4)
        TRTD_DECODE_G(8)
        default:
            // Qwen2.5 (7 or 6 query heads per KV head), Qwen3-14B (5): only at the head sizes those models use, to
            // bound the build's instantiations.
            if constexpr (D == 64 || D == 128) {
                switch (G) {
                    TRTD_DECODE_G(3)
                    TRTD_DECODE_G(5)
                    TRTD_DECODE_G(6)
                    TRTD_DECODE_G(7)
                    default: throw std::runtime_error("decode attention: query heads per KV head must be 1 to 8");
                }
            } else {
                throw std::runtime_error("decode attention: query heads per KV head must be 1, 2, 4 or 8 at head_dim " +
                                         std::to_string(D));
            }
    }
#undef TRTD_DECODE_G
}
}  // namespace

void decode_attention(DType dt, const void * q, int q_stride, void * out, int out_stride, const int * seq_lens,
                      const int * bt_rows, const int * block_tables, int bt_stride, KvPoolView pool, int layer, int batch,
                      int num_heads, int splits, float scale, void * work, size_t counters_offset, cudaStream_t s,
                      int window) {
    if (batch <= 0) return;
    const int D = pool.head_dim, G = num_heads / pool.num_kv_heads;
    const float scale_log2 = scale * 1.4426950408889634f;
    // Layout by the workspace's capacity, not this batch: the counters' place never moves.
    float * po = static_cast<float *>(work);
    float * pml = po + size_t(batch) * num_heads * splits * D;
    unsigned int * counters = reinterpret_cast<unsigned int *>(static_cast<unsigned char *>(work) + counters_offset);
    TRTD_DISPATCH_DTYPE(dt, {
        const T * qt = static_cast<const T *>(q);
        switch (D) {
            case 16: decode_attention_g<T, 16>(G, qt, q_stride, seq_lens, bt_rows, block_tables, bt_stride, pool, layer, batch, num_heads, splits, scale_log2, po, pml, counters, static_cast<T *>(out), out_stride, window, s); break;
            case 32: decode_attention_g<T, 32>(G, qt, q_stride, seq_lens, bt_rows, block_tables, bt_stride, pool, layer, batch, num_heads, splits, scale_log2, po, pml, counters, static_cast<T *>(out), out_stride, window, s); break;
            case 64: decode_attention_g<T, 64>(G, qt, q_stride, seq_lens, bt_rows, block_tables, bt_stride, pool, layer, batch, num_heads, splits, scale_log2, po, pml, counters, static_cast<T *>(out), out_stride, window, s); break;
            case 128: decode_attention_g<T, 128>(G, qt, q_stride, seq_lens, bt_rows, block_tables, bt_stride, pool, layer, batch, num_heads, splits, scale_log2, po, pml, counters, static_cast<T *>(out), out_stride, window, s); break;
            case 256: decode_attention_g<T, 256>(G, qt, q_stride, seq_lens, bt_rows, block_tables, bt_stride, pool, layer, batch, num_heads, splits, scale_log2, po, pml, counters, static_cast<T *>(out), out_stride, window, s); break;
            default: throw std::runtime_error("decode attention: head_dim must be 16, 32, 64, 128 or 256");
        }
    });
    check_launch("decode_attention");
}

namespace {
template <typename T, int D>
void prefill_attention_d(const T * q, int q_stride, T * out, int out_stride, const int * tile_seq, const int * tile_row0,
                         const int * q_start, const int * q_len, const int * ctx_len, const int * bt_rows, const int * bt,
                         int bt_stride, KvPoolView pool, int layer, int num_tiles, int num_heads, float scale_log2,
                         int window, cudaStream_t s) {
    // D = 64 and 128 (every Llama-3 shape): the mma.sync kernel; other head sizes (and TRTD_CUDA_PREFILL_WMMA=1,
    // for comparison): the wmma one.
    using Kernel = void (*)(const T *, int, T *, int, const int *, const int *, const int *, const int *, const int *,
                            const int *, const int *, int, KvPoolView, int, int, float, int);
    Kernel kernel = prefill_attention_k<T, D>;
    size_t bytes = prefill_smem_bytes<D>();
    int which = 0;
    if constexpr (D == 64 || D == 128) {
        static const bool wmma = [] { const char * w = std::getenv("TRTD_CUDA_PREFILL_WMMA"); return w && *w == '1'; }();
        if (!wmma) { kernel = prefill_attention_mma_k<T, D>; bytes = fa_smem_bytes<D>(); which = 1; }
    }
    static bool configured[2] = {false, false};  // per instantiation and kernel; the attribute is per function
    if (!configured[which]) {
        if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)) != cudaSuccess)
            throw std::runtime_error("prefill attention: cannot reserve " + std::to_string(bytes) + " bytes of shared memory");
        configured[which] = true;
    }
    launch_pdl(kernel, dim3(num_tiles, num_heads), kPrefillWarps * 32, bytes, s, q, q_stride, out, out_stride, tile_seq,
               tile_row0, q_start, q_len, ctx_len, bt_rows, bt, bt_stride, pool, layer, num_heads, scale_log2, window);
}
}  // namespace

void prefill_attention(DType dt, const void * q, int q_stride, void * out, int out_stride, const int * tile_seq,
                       const int * tile_row0, const int * q_start, const int * q_len, const int * ctx_len,
                       const int * bt_rows, const int * block_tables, int bt_stride, KvPoolView pool, int layer,
                       int num_tiles, int num_heads, float scale, cudaStream_t s, int window) {
    if (num_tiles <= 0) return;
    const float scale_log2 = scale * 1.4426950408889634f;
    TRTD_DISPATCH_DTYPE(dt, {
        const T * qt = static_cast<const T *>(q);
        T * ot = static_cast<T *>(out);
        switch (pool.head_dim) {
            case 16: prefill_attention_d<T, 16>(qt, q_stride, ot, out_stride, tile_seq, tile_row0, q_start, q_len, ctx_len, bt_rows, block_tables, bt_stride, pool, layer, num_tiles, num_heads, scale_log2, window, s); break;
            case 32: prefill_attention_d<T, 32>(qt, q_stride, ot, out_stride, tile_seq, tile_row0, q_start, q_len, ctx_len, bt_rows, block_tables, bt_stride, pool, layer, num_tiles, num_heads, scale_log2, window, s); break;
            case 64: prefill_attention_d<T, 64>(qt, q_stride, ot, out_stride, tile_seq, tile_row0, q_start, q_len, ctx_len, bt_rows, block_tables, bt_stride, pool, layer, num_tiles, num_heads, scale_log2, window, s); break;
            case 128: prefill_attention_d<T, 128>(qt, q_stride, ot, out_stride, tile_seq, tile_row0, q_start, q_len, ctx_len, bt_rows, block_tables, bt_stride, pool, layer, num_tiles, num_heads, scale_log2, window, s); break;
            case 256: prefill_attention_d<T, 256>(qt, q_stride, ot, out_stride, tile_seq, tile_row0, q_start, q_len, ctx_len, bt_rows, block_tables, bt_stride, pool, layer, num_tiles, num_heads, scale_log2, window, s); break;
            default: throw std::runtime_error("prefill attention: head_dim must be 16, 32, 64, 128 or 256");
        }
    });
    check_launch("prefill_attention");
}

void apply_block_table_updates(int * block_tables, const int * idx, const int * val, const int * count, int max_updates,
                               cudaStream_t s) {
    if (max_updates <= 0) return;
    const int blocks = std::min((max_updates + 255) / 256, 64);
    block_table_updates_k<<<blocks, 256, 0, s>>>(block_tables, idx, val, count);
    check_launch("block_table_updates");
}

size_t argmax_workspace_bytes(int max_rows) { return size_t(max_rows) * (sizeof(unsigned long long) + sizeof(unsigned int)); }

void argmax_rows(const float * logits, int vocab, int rows, int * out, void * work, cudaStream_t s) {
    if (rows <= 0) return;
    auto * keys = static_cast<unsigned long long *>(work);
    auto * arrived = reinterpret_cast<unsigned int *>(keys + rows);
    launch_pdl(argmax_k, dim3(rows, kArgmaxCtas), kArgmaxThreads, 0, s, logits, vocab, out, keys, arrived);
    check_launch("argmax");
}

size_t sort_workspace_bytes(int max_rows, int vocab) {
    size_t bytes = 0;
    const int n = max_rows * vocab;
    cub::DeviceSegmentedRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t *>(nullptr), static_cast<uint32_t *>(nullptr),
                                             static_cast<const int *>(nullptr), static_cast<int *>(nullptr), n, max_rows,
                                             static_cast<const int *>(nullptr), static_cast<const int *>(nullptr), 0, 32);
    return bytes;
}

void sort_rows(const float * logits, const SampleParams * params, int nf, const int * filtered_list, int vocab,
               uint32_t * keys, uint32_t * keys_out, int * ids, int * ids_out, void * temp, size_t temp_bytes, int * offsets,
               cudaStream_t s) {
    if (nf <= 0) return;
    sort_keys_k<<<dim3((vocab + 1023) / 1024, nf), 1024, 0, s>>>(logits, params, filtered_list, vocab, keys, ids, offsets, nf);
    check_launch("sort_keys");
    size_t bytes = temp_bytes;
    const cudaError_t e = cub::DeviceSegmentedRadixSort::SortPairs(temp, bytes, keys, keys_out, ids, ids_out, nf * vocab, nf,
                                                                   offsets, offsets + 1, 0, 32, s);
    if (e != cudaSuccess) throw std::runtime_error(std::string("segmented sort: ") + cudaGetErrorString(e));
}

void sample_rows(const float * logits, const SampleParams * params, int num, const int * sorted_ids, int vocab, int * out_tokens,
                 cudaStream_t s) {
    if (num <= 0) return;
    sample_k<<<num, kSampleThreads, 0, s>>>(logits, params, sorted_ids, vocab, out_tokens);
    check_launch("sample");
}

void apply_token_masks(const float * src, float * dst, const MaskRow * rows, const uint32_t * masks, int n, int vocab,
                       cudaStream_t s) {
    if (n <= 0) return;
    const int words = (vocab + 31) / 32;
    const int chunks = std::min((words + kMaskWarps - 1) / kMaskWarps, 64);  // the rest loop: 64 x 8 warps per row
    token_mask_k<<<dim3(chunks, n), kMaskWarps * 32, 0, s>>>(src, dst, rows, masks, vocab);
    check_launch("token masks");
}

void checksum_blocks(const void * base, const int * blocks, int num_blocks, size_t block_bytes, unsigned long long * out,
                     cudaStream_t s) {
    if (num_blocks <= 0) return;
    checksum_k<<<dim3(num_blocks, kCopySlices), 256, 0, s>>>(static_cast<const uint64_t *>(base), blocks, block_bytes / 8, out);
    check_launch("checksum");
}

namespace {
// The checksum mix of 16-byte vector v of the i-th block in the list: its two 8-byte words at positions 2v + 1 and
// 2v + 2 of that block (checksum_k's mix, position-sensitive).
__device__ __forceinline__ uint64_t vec_mix(const uint4 & x, int i, size_t block_words, size_t v) {
    const uint64_t w0 = uint64_t(x.x) | uint64_t(x.y) << 32, w1 = uint64_t(x.z) | uint64_t(x.w) << 32;
    return mix64(w0 ^ ((uint64_t(i) * block_words + 2 * v + 1) * 0x9E3779B97F4A7C15ull)) +
           mix64(w1 ^ ((uint64_t(i) * block_words + 2 * v + 2) * 0x9E3779B97F4A7C15ull));
}

// Copies vectors [lo, hi) of one block from sp to dp, blockDim-strided, and returns this thread's sum of their
// checksum mix: one read, one write. Four 16-byte loads in flight per thread (a short transfer is latency-bound at one).
__device__ uint64_t copy_mix_range(const uint4 * sp, uint4 * dp, int i, size_t block_words, size_t lo, size_t hi) {
    uint64_t h = 0;
    size_t v = lo + threadIdx.x;
    // Eight 16-byte loads in flight per thread before the first store: at a few tens of MiB the copy is latency-bound.
    for (; v + 7 * blockDim.x < hi; v += 8 * blockDim.x) {
        uint4 x[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) x[u] = sp[v + u * blockDim.x];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            dp[v + u * blockDim.x] = x[u];
            h += vec_mix(x[u], i, block_words, v + u * blockDim.x);
        }
    }
    for (; v < hi; v += blockDim.x) {
        const uint4 x = sp[v];
        dp[v] = x;
        h += vec_mix(x, i, block_words, v);
    }
    return h;
}

// The CTA's sum of every thread's h (blockDim <= 256), valid in thread 0: one atomic per CTA afterwards, since
// thousands of CTAs adding to one address per warp serialize in L2.
__device__ uint64_t cta_sum(uint64_t h) {
    __shared__ uint64_t part[8];
    for (int o = 16; o > 0; o >>= 1) h += __shfl_xor_sync(0xffffffffu, h, o);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = h;
    __syncthreads();
    uint64_t t = 0;
    if (threadIdx.x == 0)
        for (int w = 0; w < int(blockDim.x / 32); ++w) t += part[w];
    return t;
}

// Copies block src_blocks[i] to dst_blocks[i] (a slice per blockIdx.y) and adds the checksum mix of what passed.
__global__ void copy_blocks_checksum_k(const uint4 * src, const int * src_blocks, uint4 * dst, const int * dst_blocks,
                                       size_t block_vecs, unsigned long long * sum) {
    const int i = blockIdx.x;
    const size_t per = (block_vecs + gridDim.y - 1) / gridDim.y;
    const size_t lo = blockIdx.y * per, hi = min(block_vecs, lo + per);
    const uint64_t t = cta_sum(copy_mix_range(src + size_t(src_blocks[i]) * block_vecs, dst + size_t(dst_blocks[i]) * block_vecs, i,
                                              block_vecs * 2, lo, hi));
    if (threadIdx.x == 0) atomicAdd(sum, (unsigned long long)t);
}
}  // namespace

namespace {
// copy_blocks_checksum_k for a short block list carried in the kernel's parameters (no upload), whose last CTA to
// finish hands the checksum to mapped host memory and resets the device sum and arrival counter for the next
// import (no memset, no download): one launch and the caller's wait.
__global__ void import_blocks_k(const uint4 * src, uint4 * dst, size_t block_vecs, const __grid_constant__ ImportLists lists,
                                ImportSync sync) {
    const int i = blockIdx.x;
    const size_t per = (block_vecs + gridDim.y - 1) / gridDim.y;
    const size_t lo = blockIdx.y * per, hi = min(block_vecs, lo + per);
    const uint64_t t = cta_sum(copy_mix_range(src + size_t(lists.src[i]) * block_vecs, dst + size_t(lists.dst[i]) * block_vecs, i,
                                              block_vecs * 2, lo, hi));
    if (threadIdx.x == 0) {
        atomicAdd(sync.sum, (unsigned long long)t);
        __threadfence();
        if (atomicAdd(sync.arrived, 1u) == gridDim.x * gridDim.y - 1) {  // the last CTA: every sum is in
            __threadfence();
            *sync.host_sum = atomicExch(sync.sum, 0ull);
            *sync.arrived = 0;
            __threadfence_system();
        }
    }
}
}  // namespace

// ~32 KiB per CTA: a 16 MiB import is then 512 CTAs, four per SM, each thread with its eight loads in flight.
constexpr size_t kImportSliceBytes = 32768;

void import_blocks_checksum(const void * src_base, void * dst_base, const ImportLists & lists, size_t block_bytes, ImportSync sync,
                            cudaStream_t s) {
    if (lists.n <= 0 || lists.n > kImportInlineBlocks) throw std::runtime_error("import_blocks_checksum: 1 to kImportInlineBlocks blocks");
    const int slices = int(std::max<size_t>(1, std::min<size_t>(1024, block_bytes / kImportSliceBytes)));
    import_blocks_k<<<dim3(lists.n, slices), 256, 0, s>>>(static_cast<const uint4 *>(src_base), static_cast<uint4 *>(dst_base),
                                                         block_bytes / 16, lists, sync);
    check_launch("import_blocks_checksum");
}

void copy_blocks_checksum(const void * src_base, const int * src_blocks, void * dst_base, const int * dst_blocks, int num_blocks,
                          size_t block_bytes, unsigned long long * sum, cudaStream_t s) {
    if (num_blocks <= 0) return;
    const int slices = int(std::max<size_t>(1, std::min<size_t>(1024, block_bytes / 65536)));  // ~64 KiB per CTA
    copy_blocks_checksum_k<<<dim3(num_blocks, slices), 256, 0, s>>>(static_cast<const uint4 *>(src_base), src_blocks,
                                                                   static_cast<uint4 *>(dst_base), dst_blocks, block_bytes / 16, sum);
    check_launch("copy_blocks_checksum");
}

namespace {
// CTAs of a small-batch GEMM over `warp_rows` items of a warp each: at most 8 CTAs per SM (the rest loop), on the
// device of the first call.
int gemv_grid(int warp_rows) { return small_gemm_grid(warp_rows, kGemvWarps); }

template <typename T, int MV>
void gemv_launch(const void * w, const void * x, void * y, int out, int in, bool f32_out, int grid, long prefetch_bytes, cudaStream_t s) {
    const T * W = static_cast<const T *>(w);
    const T * X = static_cast<const T *>(x);
    const int pf = gemv_prefetch_elems(in, sizeof(T), prefetch_bytes), early = gemv_early_loads();
    if (f32_out) launch_pdl(gemv_k<T, MV, true>, grid, kGemvWarps * 32, 0, s, W, X, y, out, in, pf, early);
    else launch_pdl(gemv_k<T, MV, false>, grid, kGemvWarps * 32, 0, s, W, X, y, out, in, pf, early);
}
template <typename T>
void gemv_rows(int rows, const void * w, const void * x, void * y, int out, int in, bool f32_out, int grid, long pf, cudaStream_t s) {
    switch (rows) {
        case 1: gemv_launch<T, 1>(w, x, y, out, in, f32_out, grid, pf, s); break;
        case 2: gemv_launch<T, 2>(w, x, y, out, in, f32_out, grid, pf, s); break;
        case 3: gemv_launch<T, 3>(w, x, y, out, in, f32_out, grid, pf, s); break;
        case 4: gemv_launch<T, 4>(w, x, y, out, in, f32_out, grid, pf, s); break;
        case 5: gemv_launch<T, 5>(w, x, y, out, in, f32_out, grid, pf, s); break;
        case 6: gemv_launch<T, 6>(w, x, y, out, in, f32_out, grid, pf, s); break;
        case 7: gemv_launch<T, 7>(w, x, y, out, in, f32_out, grid, pf, s); break;
        default: gemv_launch<T, 8>(w, x, y, out, in, f32_out, grid, pf, s); break;
    }
}
}  // namespace

bool gemv(DType dt, const void * w, const void * x, void * y, int out, int in, int rows, bool f32_out, cudaStream_t s,
          long prefetch_bytes) {
    if (rows < 1 || rows > 8 || in % 8) return false;
    const int grid = gemv_grid(out);
    if (dt == DType::BF16) gemv_rows<__nv_bfloat16>(rows, w, x, y, out, in, f32_out, grid, prefetch_bytes, s);
    else gemv_rows<__half>(rows, w, x, y, out, in, f32_out, grid, prefetch_bytes, s);
    check_launch("gemv");
    return true;
}

namespace {
template <typename T, int EPI>
void gemv_pair_rows(int rows, const T * W, const T * X, T * Y, int pairs, int in, int y_stride, const GemvRope & rp,
                    const GemvNorm * norm, cudaStream_t s) {
    const int grid = gemv_grid(pairs);
    const GemvNorm nm = norm ? *norm : GemvNorm{};
    const int pf = gemv_prefetch_elems(in, sizeof(T)), early = gemv_early_loads();
    const size_t smem = norm ? size_t(rows) * in * sizeof(T) : 0;
#define TRTD_PAIR(MV)                                                                                                        \
    case MV:                                                                                                                 \
        if (norm) launch_pdl(gemv_pair_k<T, MV, EPI, true>, grid, kGemvWarps * 32, smem, s, W, X, Y, pairs, in, pf, early, y_stride, rp, nm); \
        else launch_pdl(gemv_pair_k<T, MV, EPI, false>, grid, kGemvWarps * 32, 0, s, W, X, Y, pairs, in, pf, early, y_stride, rp, nm); \
        break;
    switch (rows) {
        TRTD_PAIR(1) TRTD_PAIR(2) TRTD_PAIR(3) TRTD_PAIR(4) TRTD_PAIR(5) TRTD_PAIR(6) TRTD_PAIR(7) TRTD_PAIR(8)
    }
#undef TRTD_PAIR
}

// Rows of the folded norm stay in the default 48 KB of shared memory, with room for several CTAs per SM.
constexpr size_t kNormFoldBytes = 32 << 10;
bool norm_foldable(const GemvNorm * norm, int rows, int in) {
    return !norm || (size_t(rows) * in * 2 <= kNormFoldBytes && norm_threads(in) / (kGemvWarps * 32) <= 4);
}
}  // namespace

bool gemv_silu(DType dt, const void * w_gate_up, const void * x, void * out, int inter, int in, int rows, cudaStream_t s,
               const GemvNorm * norm) {
    if (rows < 1 || rows > 8 || in % 8 || !norm_foldable(norm, rows, in)) return false;
    TRTD_DISPATCH_DTYPE(dt, gemv_pair_rows<T, EPI_SILU>(rows, static_cast<const T *>(w_gate_up), static_cast<const T *>(x),
                                                        static_cast<T *>(out), inter, in, inter, GemvRope{}, norm, s));
    check_launch("gemv_silu");
    return true;
}

bool gemv_rope_kv_write(DType dt, const void * w_qkv, const void * x, void * qkv, int in, int rows, const int * positions,
                        const int * slot_mapping, const void * cos_sin, KvPoolView pool, int layer, int num_heads, cudaStream_t s,
                        const GemvNorm * norm) {
    if (rows < 1 || rows > 8 || in % 8 || pool.head_dim % 2 || !norm_foldable(norm, rows, in)) return false;
    const int D = pool.head_dim, total = (num_heads + 2 * pool.num_kv_heads) * D;
    const GemvRope rp{positions, slot_mapping, cos_sin, pool, layer, num_heads};
    TRTD_DISPATCH_DTYPE(dt, gemv_pair_rows<T, EPI_ROPE>(rows, static_cast<const T *>(w_qkv), static_cast<const T *>(x),
                                                        static_cast<T *>(qkv), total / 2, in, total, rp, norm, s));
    check_launch("gemv_rope_kv_write");
    return true;
}

void copy_blocks(const void * src_base, const int * src_blocks, void * dst_base, const int * dst_blocks, int num_blocks,
                 size_t block_bytes, cudaStream_t s) {
    if (num_blocks <= 0) return;
    copy_blocks_k<<<dim3(num_blocks, kCopySlices), 256, 0, s>>>(static_cast<const uint4 *>(src_base), src_blocks,
                                                                 static_cast<uint4 *>(dst_base), dst_blocks, block_bytes / 16);
    check_launch("copy_blocks");
}

}  // namespace trtd::cuda
