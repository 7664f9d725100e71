// Each kernel of kernels.cuh against a plain CPU reference on random data (needs a GPU). Prints one line per
// check and "kernel checks: N passed, N failed" last; exits 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <cuda_bf16.h>

#include "fp8.cuh"
#include "kernels.cuh"
#include "tests/cuda_check.cuh"

using namespace trtd::cuda;

namespace {

int passed = 0, failed = 0;

void check(bool ok, const std::string & what, double err) {
    std::printf("%-4s %-60s max err %.3g\n", ok ? "ok" : "FAIL", what.c_str(), err);
    (ok ? passed : failed)++;
}

uint16_t to_bf(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float from_bf(uint16_t h) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
float rbf(float f) { return from_bf(to_bf(f)); }

std::mt19937 rng(1234);
std::vector<uint16_t> rand_bf(size_t n, float scale = 1.f) {
    std::normal_distribution<float> d(0.f, scale);
    std::vector<uint16_t> v(n);
    for (auto & x : v) x = to_bf(d(rng));
    return v;
}
template <typename T> T * up(const std::vector<T> & v) {
    T * p;
    CK(cudaMalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(T)));
    CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
}
template <typename T> std::vector<T> down(const T * p, size_t n) {
    std::vector<T> v(n);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}

void check_rmsnorm() {
    const int rows = 7, H = 4096;
    auto res = rand_bf(size_t(rows) * H), delta = rand_bf(size_t(rows) * H), w = rand_bf(H, 0.5f);
    auto *dr = up(res), *dd = up(delta), *dw = up(w);
    uint16_t * out;
    CK(cudaMalloc(&out, size_t(rows) * H * 2));
    add_rmsnorm(DType::BF16, dr, dd, dw, out, nullptr, rows, H, 1e-5f, 0);
    auto o = down(out, size_t(rows) * H), r2 = down(dr, size_t(rows) * H);
    double err = 0, rerr = 0;
    for (int r = 0; r < rows; ++r) {
        double ss = 0;
        std::vector<float> x(H);
        for (int i = 0; i < H; ++i) { x[i] = rbf(from_bf(res[size_t(r) * H + i]) + from_bf(delta[size_t(r) * H + i])); ss += double(x[i]) * x[i]; }
        const float inv = float(1.0 / std::sqrt(ss / H + 1e-5));
        for (int i = 0; i < H; ++i) {
            const float want = rbf(from_bf(w[i]) * rbf(x[i] * inv));
            err = std::max(err, double(std::fabs(from_bf(o[size_t(r) * H + i]) - want)) / (std::fabs(want) + 1e-2));
            rerr = std::max(rerr, double(std::fabs(from_bf(r2[size_t(r) * H + i]) - x[i])));
        }
    }
    check(err < 1e-2, "add_rmsnorm output (bf16, HF rounding order)", err);
    check(rerr == 0, "add_rmsnorm residual written back", rerr);
}

struct Pool {
    KvPoolView v;
    std::vector<uint16_t> host;
    size_t k_index(int block, int layer, int kv, int t, int h, int d) const {
        return size_t(block) * v.block_elems() + size_t(layer) * v.layer_elems() + size_t(kv) * v.kv_elems() +
               (size_t(t) * v.num_kv_heads + h) * v.head_dim + d;
    }
};

// CPU attention for one query against keys [lo, L) of a sequence in the pool (blocks via table).
void cpu_attention(const Pool & p, const std::vector<int> & table, int layer, int kvh, const float * q, int L, float scale, float * out,
                   int lo = 0) {
    const int D = p.v.head_dim, T = p.v.tokens_per_block;
    std::vector<double> s(static_cast<size_t>(L));
    double m = -1e300;
    for (int t = lo; t < L; ++t) {
        double acc = 0;
        for (int d = 0; d < D; ++d) acc += double(q[d]) * from_bf(p.host[p.k_index(table[t / T], layer, 0, t % T, kvh, d)]);
        s[size_t(t)] = acc * scale;
        m = std::max(m, s[size_t(t)]);
    }
    double den = 0;
    std::vector<double> o(static_cast<size_t>(D), 0.0);
    for (int t = lo; t < L; ++t) {
        const double w = std::exp(s[size_t(t)] - m);
        den += w;
        for (int d = 0; d < D; ++d) o[size_t(d)] += w * from_bf(p.host[p.k_index(table[t / T], layer, 1, t % T, kvh, d)]);
    }
    for (int d = 0; d < D; ++d) out[d] = float(o[size_t(d)] / den);
}

// copies: the sequence lengths repeated, so that batches over kDecodeDeepMaxBatch (8) take the shallow decode path.
// window > 0: Mistral's sliding window (a query at position p sees keys (p - window, p]).
void check_attention(int D, int G, int copies = 1, int window = 0) {
    const std::string wtag = window ? " window=" + std::to_string(window) : "";
    const int layers = 2, nkv = 2, nq = nkv * G, T = 32, layer = 1;
    std::vector<int> lens;
    for (int c = 0; c < copies; ++c) lens.insert(lens.end(), {1, 33, 700, 64, 129});
    int blocks_total = 0;
    for (int L : lens) blocks_total += (L + T - 1) / T;
    Pool p;
    p.v.num_layers = layers;
    p.v.num_kv_heads = nkv;
    p.v.head_dim = D;
    p.v.tokens_per_block = T;
    const int nb = blocks_total + 3;
    p.host = rand_bf(size_t(nb) * p.v.block_elems());
    uint16_t * dpool = up(p.host);
    p.v.base = dpool;
    // shuffled block ids
    std::vector<int> perm(static_cast<size_t>(nb));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    const int B = int(lens.size()), stride = 32;
    std::vector<int> bt(size_t(B) * stride, 0), rows(static_cast<size_t>(B));
    std::vector<std::vector<int>> tables(static_cast<size_t>(B));
    int next = 0;
    for (int b = 0; b < B; ++b) {
        rows[size_t(b)] = b;
        for (int k = 0; k < (lens[size_t(b)] + T - 1) / T; ++k) {
            tables[size_t(b)].push_back(perm[size_t(next)]);
            bt[size_t(b) * stride + k] = perm[size_t(next++)];
        }
    }
    const float scale = 1.f / std::sqrt(float(D));
    // decode: one query per sequence
    {
        const int qstride = (nq + 2 * nkv) * D;
        auto q = rand_bf(size_t(B) * qstride);
        uint16_t * dq = up(q);
        auto *dlens = up(lens), *drows = up(rows), *dbt = up(bt);
        uint16_t * out;
        CK(cudaMalloc(&out, size_t(B) * nq * D * 2));
        const size_t ws = decode_attention_workspace_bytes(B, nq, D, 16);
        void * work;
        CK(cudaMalloc(&work, ws));
        CK(cudaMemset(work, 0, ws));
        const size_t counters = decode_attention_counters_offset(B, nq, D, 16);
        for (int splits : {1, 3, 16, 16}) {  // 16 twice: the arrival counters must be reset by the last CTA
            decode_attention(DType::BF16, dq, qstride, out, nq * D, dlens, drows, dbt, stride, p.v, layer, B, nq, splits, scale, work, counters, 0,
                             window);
            auto o = down(out, size_t(B) * nq * D);
            double err = 0;
            std::vector<float> qf(static_cast<size_t>(D)), want(static_cast<size_t>(D));
            for (int b = 0; b < B; ++b)
                for (int h = 0; h < nq; ++h) {
                    for (int d = 0; d < D; ++d) qf[size_t(d)] = from_bf(q[size_t(b) * qstride + size_t(h) * D + d]);
                    const int L = lens[size_t(b)];
                    cpu_attention(p, tables[size_t(b)], layer, h / G, qf.data(), L, scale, want.data(), window ? std::max(0, L - window) : 0);
                    for (int d = 0; d < D; ++d)
                        err = std::max(err, double(std::fabs(from_bf(o[(size_t(b) * nq + h) * D + d]) - want[size_t(d)])));
                }
            check(err < 2e-2, "decode attention D=" + std::to_string(D) + " G=" + std::to_string(G) + " batch=" + std::to_string(B) +
                                  " splits=" + std::to_string(splits) + wtag, err);
        }
        cudaFree(dq); cudaFree(dlens); cudaFree(drows); cudaFree(dbt); cudaFree(out); cudaFree(work);
    }
    // prefill: sequence b has q_len = min(L, 100) queries at its last positions
    {
        const int qstride = (nq + 2 * nkv) * D;
        std::vector<int> qs, ql, ctx, tseq, trow;
        int rows_total = 0;
        for (int b = 0; b < B; ++b) {
            const int L = lens[size_t(b)], n = std::min(L, 100);
            qs.push_back(rows_total);
            ql.push_back(n);
            ctx.push_back(L);
            for (int r = 0; r < n; r += 64) { tseq.push_back(b); trow.push_back(rows_total + r); }
            rows_total += n;
        }
        auto q = rand_bf(size_t(rows_total) * qstride);
        uint16_t * dq = up(q);
        int *dqs = up(qs), *dql = up(ql), *dctx = up(ctx), *dts = up(tseq), *dtr = up(trow), *drows = up(rows), *dbt = up(bt);
        uint16_t * out;
        CK(cudaMalloc(&out, size_t(rows_total) * nq * D * 2));
        prefill_attention(DType::BF16, dq, qstride, out, nq * D, dts, dtr, dqs, dql, dctx, drows, dbt, stride, p.v, layer,
                          int(tseq.size()), nq, scale, 0, window);
        auto o = down(out, size_t(rows_total) * nq * D);
        double err = 0;
        std::vector<float> qf(static_cast<size_t>(D)), want(static_cast<size_t>(D));
        for (int b = 0; b < B; ++b)
            for (int i = 0; i < ql[size_t(b)]; ++i) {
                const int row = qs[size_t(b)] + i, pos = ctx[size_t(b)] - ql[size_t(b)] + i;
                for (int h = 0; h < nq; ++h) {
                    for (int d = 0; d < D; ++d) qf[size_t(d)] = from_bf(q[size_t(row) * qstride + size_t(h) * D + d]);
                    cpu_attention(p, tables[size_t(b)], layer, h / G, qf.data(), pos + 1, scale, want.data(), window ? std::max(0, pos + 1 - window) : 0);
                    for (int d = 0; d < D; ++d) err = std::max(err, double(std::fabs(from_bf(o[(size_t(row) * nq + h) * D + d]) - want[size_t(d)])));
                }
            }
        check(err < 3e-2, "prefill attention D=" + std::to_string(D) + " G=" + std::to_string(G) + " (causal, prefix in cache)" + wtag, err);
        cudaFree(dq); cudaFree(dqs); cudaFree(dql); cudaFree(dctx); cudaFree(dts); cudaFree(dtr); cudaFree(drows); cudaFree(dbt); cudaFree(out);
    }
    cudaFree(dpool);
}

// The engine's RoPE table layout, [pos][D/2][cos, sin] in bf16, at theta 10000.
std::vector<uint16_t> rope_table(int max_pos, int D) {
    std::vector<uint16_t> cs(size_t(max_pos) * D);
    for (int p = 0; p < max_pos; ++p)
        for (int i = 0; i < D / 2; ++i) {
            const float a = float(p) * float(std::pow(10000.0, -2.0 * i / D));
            cs[(size_t(p) * D / 2 + i) * 2] = to_bf(float(std::cos(a)));
            cs[(size_t(p) * D / 2 + i) * 2 + 1] = to_bf(float(std::sin(a)));
        }
    return cs;
}

// with_pre: Qwen's additions before RoPE (QkvPre): a bias on q, k and v and the per-head q/k RMSNorm.
void check_rope_kv(int D, bool with_pre = false) {
    const int nq = 8, nkv = 2, rows = 5, T = 16, layers = 3, layer = 2, max_pos = 300;
    KvPoolView v;
    v.num_layers = layers; v.num_kv_heads = nkv; v.head_dim = D; v.tokens_per_block = T;
    const int nb = 4;
    std::vector<uint16_t> pool(size_t(nb) * v.block_elems(), 0);
    uint16_t * dpool = up(pool);
    v.base = dpool;
    const std::vector<uint16_t> cs = rope_table(max_pos, D);
    const int W = (nq + 2 * nkv) * D;
    auto qkv = rand_bf(size_t(rows) * W);
    std::vector<int> pos = {0, 1, 17, 250, 3}, slots = {5, 6, -1, 63, 17};
    auto *dqkv = up(qkv), *dcs = up(cs);
    auto *dpos = up(pos), *dsl = up(slots);
    const auto bias = rand_bf(size_t(W), 0.5f), qn = rand_bf(size_t(D)), kn = rand_bf(size_t(D));
    QkvPre pre;
    uint16_t *dbias = nullptr, *dqn = nullptr, *dkn = nullptr;
    const float eps = 1e-6f;
    if (with_pre) {
        dbias = up(bias); dqn = up(qn); dkn = up(kn);
        pre.bias = dbias; pre.q_norm = dqn; pre.k_norm = dkn; pre.eps = eps;
    }
    rope_kv_write(DType::BF16, dqkv, dpos, dsl, dcs, v, layer, rows, nq, 0, pre);
    auto o = down(dqkv, qkv.size()), pl = down(dpool, pool.size());
    double err = 0;
    Pool P;
    P.v = v;
    // The input as the kernel should see it: biased (rounded), then each q/k head normalized, rounded, scaled, rounded.
    std::vector<float> in(qkv.size());
    for (int r = 0; r < rows; ++r)
        for (int h = 0; h < nq + 2 * nkv; ++h) {
            const size_t at = size_t(r) * W + size_t(h) * D;
            double ss = 0;
            for (int i = 0; i < D; ++i) {
                const float x = with_pre ? rbf(from_bf(qkv[at + i]) + from_bf(bias[size_t(h) * D + i])) : from_bf(qkv[at + i]);
                in[at + i] = x;
                ss += double(x) * x;
            }
            if (!with_pre || h >= nq + nkv) continue;
            const float inv = float(1.0 / std::sqrt(ss / D + eps));
            const std::vector<uint16_t> & w = h < nq ? qn : kn;
            for (int i = 0; i < D; ++i) in[at + i] = rbf(from_bf(w[size_t(i)]) * rbf(in[at + i] * inv));
        }
    for (int r = 0; r < rows; ++r)
        for (int h = 0; h < nq + 2 * nkv; ++h)
            for (int i = 0; i < D; ++i) {
                const size_t at = size_t(r) * W + size_t(h) * D;
                float want;
                if (h < nq + nkv) {
                    const int j = i % (D / 2);
                    const float c = from_bf(cs[(size_t(pos[r]) * D / 2 + j) * 2]), s = from_bf(cs[(size_t(pos[r]) * D / 2 + j) * 2 + 1]);
                    const float x1 = in[at + j], x2 = in[at + j + D / 2];
                    want = i < D / 2 ? rbf(rbf(x1 * c) + rbf(-x2 * s)) : rbf(rbf(x2 * c) + rbf(x1 * s));
                } else {
                    want = in[at + i];
                }
                float got;
                if (h < nq) got = from_bf(o[at + i]);
                else if (slots[r] < 0) continue;
                else {
                    const int kv = h < nq + nkv ? 0 : 1, kh = kv ? h - nq - nkv : h - nq;
                    got = from_bf(pl[P.k_index(slots[r] / T, layer, kv, slots[r] % T, kh, i)]);
                }
                err = std::max(err, double(std::fabs(got - want)));
            }
    // padding row (slot -1) wrote nothing: count non-zero entries == written rows' K and V
    size_t nonzero = 0;
    for (uint16_t x : pl) nonzero += x != 0;
    // With the norm, rsqrtf against the CPU's exact root may move a rounding by one bf16 step (2^-8 relative).
    const double tol = with_pre ? 2e-2 : 0;
    check(err <= tol && nonzero <= size_t(4) * 2 * nkv * D,
          "rope + KV write D=" + std::to_string(D) + (with_pre ? " with q/k/v bias and q/k norm (Qwen)" : " (rotate-half, bf16 cos/sin)"), err);
    cudaFree(dpool); cudaFree(dqkv); cudaFree(dcs); cudaFree(dpos); cudaFree(dsl);
    if (dbias) { cudaFree(dbias); cudaFree(dqn); cudaFree(dkn); }
}

void check_silu() {
    const int rows = 3, I = 1000 * 8;
    auto gu = rand_bf(size_t(rows) * 2 * I, 2.f);
    auto * d = up(gu);
    uint16_t * out;
    CK(cudaMalloc(&out, size_t(rows) * I * 2));
    silu_mul(DType::BF16, d, out, rows, I, 0);
    auto o = down(out, size_t(rows) * I);
    double err = 0;
    for (int r = 0; r < rows; ++r)
        for (int i = 0; i < I; ++i) {
            const float g = from_bf(gu[size_t(r) * 2 * I + i]), u = from_bf(gu[size_t(r) * 2 * I + I + i]);
            const float want = rbf(rbf(g / (1.f + std::exp(-g))) * u);
            err = std::max(err, double(std::fabs(from_bf(o[size_t(r) * I + i]) - want)) / (std::fabs(want) + 1e-3));
        }
    check(err < 1e-2, "silu * up", err);
    cudaFree(d); cudaFree(out);
}

uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
double counter_uniform(uint64_t seed, uint64_t n) {
    const uint64_t z = mix64(mix64(seed ^ 0x6A09E667F3BCC909ull) + (n + 1) * 0x9E3779B97F4A7C15ull);
    return double(z >> 11) * (1.0 / 9007199254740992.0);
}
int cpu_sample(const std::vector<float> & l, const SampleParams & p) {
    const int V = int(l.size());
    std::vector<int> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    const bool filtered = p.top_k > 0 || p.top_p < 1.f;
    if (filtered) std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
    const double mx = filtered ? l[order[0]] : *std::max_element(l.begin(), l.end());
    const int k = filtered && p.top_k > 0 ? std::min(p.top_k, V) : V;
    std::vector<double> pr(static_cast<size_t>(k));
    double total = 0;
    for (int i = 0; i < k; ++i) total += (pr[size_t(i)] = std::exp((double(l[order[i]]) - mx) / p.temperature));
    int keep = k;
    double kept = total;
    if (filtered && p.top_p < 1.f) {
        double acc = 0;
        for (int i = 0; i < k; ++i) { acc += pr[size_t(i)]; if (acc >= p.top_p * total) { keep = i + 1; kept = acc; break; } }
    }
    const double target = counter_uniform(p.seed, p.n) * kept;
    double acc = 0;
    for (int i = 0; i < keep; ++i) { acc += pr[size_t(i)]; if (acc > target) return order[i]; }
    return order[keep - 1];
}

// Rows the greedy rule has to get right at the edges: NaN never wins, -0.0 ties with +0.0 (the lower id wins), a row
// of -inf (or NaN) gives id 0, and a maximum in the last CTA's slice.
// The device sampler over R rows of V logits: each row's parameters (seed seed0 + r, draw n = r * n_step, the row's
// temperature / top-k / top-p), the sort's buffers, all owned here; draw() advances every row's n and draws once.
struct SamplerHarness {
    const int R, V;
    std::vector<SampleParams> ps;
    std::vector<int> filtered;  // rows with top-k or top-p: the sort's row list
    SampleParams * dp = nullptr;
    int * dfl = nullptr;
    uint32_t *k1 = nullptr, *k2 = nullptr;
    int *i1 = nullptr, *i2 = nullptr, *offs = nullptr;
    void * temp = nullptr;
    size_t tb = 0;
    SamplerHarness(int rows, int vocab, uint64_t seed0, uint64_t n_step, const float * temps, const int * topk, const float * topp)
        : R(rows), V(vocab) {
        for (int r = 0; r < R; ++r) {
            SampleParams p{};
            p.seed = seed0 + uint64_t(r);
            p.n = uint64_t(r) * n_step;
            p.temperature = temps[r];
            p.top_k = topk[r];
            p.top_p = topp[r];
            p.logits_row = r;
            p.filtered = p.top_k > 0 || p.top_p < 1.f;
            p.sorted_row = p.filtered ? int(filtered.size()) : 0;
            if (p.filtered) filtered.push_back(r);
            ps.push_back(p);
        }
        dp = up(ps);
        dfl = up(filtered);
        CK(cudaMalloc(&k1, size_t(R) * V * 4)); CK(cudaMalloc(&k2, size_t(R) * V * 4));
        CK(cudaMalloc(&i1, size_t(R) * V * 4)); CK(cudaMalloc(&i2, size_t(R) * V * 4));
        CK(cudaMalloc(&offs, (R + 1) * 4));
        tb = sort_workspace_bytes(R, V);
        CK(cudaMalloc(&temp, tb));
    }
    SamplerHarness(const SamplerHarness &) = delete;
    SamplerHarness & operator=(const SamplerHarness &) = delete;
    ~SamplerHarness() {
        cudaFree(dp); cudaFree(dfl); cudaFree(k1); cudaFree(k2); cudaFree(i1); cudaFree(i2); cudaFree(offs); cudaFree(temp);
    }
    // One draw of every row from the logits at dl (tokens through dout, R ints on the device).
    std::vector<int> draw(const float * dl, int * dout) {
        for (auto & p : ps) p.n += 1;
        CK(cudaMemcpy(dp, ps.data(), ps.size() * sizeof(SampleParams), cudaMemcpyHostToDevice));
        sort_rows(dl, dp, int(filtered.size()), dfl, V, k1, k2, i1, i2, temp, tb, offs, 0);
        sample_rows(dl, dp, R, i2, V, dout, 0);
        return down(dout, size_t(R));
    }
};

void check_argmax_edges() {
    const int V = 5000, R = 4;
    std::vector<float> l(size_t(R) * V, -1.f);
    l[3] = std::nanf("");
    l[10] = 2.f;
    l[size_t(V) + 2] = -0.0f;
    l[size_t(V) + 7] = 0.0f;
    for (int i = 0; i < V; ++i) l[size_t(2) * V + i] = i % 2 ? -INFINITY : std::nanf("");
    l[size_t(3) * V + V - 1] = 1.f;
    float * dl = up(l);
    int * dout;
    CK(cudaMalloc(&dout, R * 4));
    void * aw;
    CK(cudaMalloc(&aw, argmax_workspace_bytes(R)));
    CK(cudaMemset(aw, 0, argmax_workspace_bytes(R)));
    argmax_rows(dl, V, R, dout, aw, 0);
    auto am = down(dout, R);
    check(am[0] == 10 && am[1] == 2 && am[2] == 0 && am[3] == V - 1, "argmax edges (NaN, -0.0, no candidate, last slice)", 0);
    cudaFree(dl); cudaFree(dout); cudaFree(aw);
}

void check_sampling() {
    const int V = 128256, R = 6;
    std::vector<float> logits(size_t(R) * V);
    std::normal_distribution<float> d(0.f, 3.f);
    for (auto & x : logits) x = d(rng);
    logits[size_t(2) * V + 77] = logits[size_t(2) * V + 5] = 50.f;  // tie: lowest id wins greedy
    float * dl = up(logits);
    int * dout;
    CK(cudaMalloc(&dout, 64 * 4));
    void * aw;
    CK(cudaMalloc(&aw, argmax_workspace_bytes(R)));
    CK(cudaMemset(aw, 0, argmax_workspace_bytes(R)));
    std::vector<int> am;
    for (int rep = 0; rep < 2; ++rep) {  // twice: the workspace must come back zeroed
        argmax_rows(dl, V, R, dout, aw, 0);
        auto got = down(dout, R);
        if (rep && got != am) am.assign(size_t(R), -1);
        else am = got;
    }
    bool ok = true;
    for (int r = 0; r < R; ++r) {
        const float * row = &logits[size_t(r) * V];
        ok &= am[size_t(r)] == int(std::max_element(row, row + V) - row);
    }
    check(ok && am[2] == 5, "argmax (lowest id on ties)", 0);
    const float temps[] = {1.0f, 0.7f, 1.3f, 0.9f, 2.0f, 0.5f};
    const int topk[] = {0, 40, 0, 50000, 0, 1};
    const float topp[] = {1.f, 1.f, 0.9f, 0.95f, 0.5f, 1.f};
    int mism = 0;
    {
        SamplerHarness sampler(R, V, 1000, 3, temps, topk, topp);
        for (int trial = 0; trial < 20; ++trial) {
            auto got = sampler.draw(dl, dout);
            for (int r = 0; r < R; ++r) {
                std::vector<float> row(logits.begin() + long(r) * V, logits.begin() + long(r + 1) * V);
                if (got[size_t(r)] != cpu_sample(row, sampler.ps[size_t(r)])) ++mism;
            }
        }
    }
    check(mism == 0, "sampling: temperature / top-k / top-p, 120 draws vs CPU walk", mism);
    cudaFree(dl); cudaFree(dout); cudaFree(aw);
}

// Token masks (apply_token_masks) against the host rule: an id keeps its logit where its mask bit is set, else -inf.
// A vocabulary of 1000 (31 full words and a last word of 8 ids, whose 24 bits past the vocabulary are set in some
// masks and must be ignored), masks with all-zero words, all-ones words and single ids; in place (rows not listed
// untouched) and copied from held rows into other rows (rows not listed, and the row past the last, untouched).
// Then the sampler over masked rows: greedy = the host's masked argmax, temperature / top-k / top-p draws = the
// CPU walk over the masked row (a masked id never drawn).
void check_token_masks() {
    const int V = 1000, W = (V + 31) / 32, R = 5;
    std::vector<float> logits(size_t(R) * V);
    std::normal_distribution<float> d(0.f, 2.f);
    for (auto & x : logits) x = d(rng);
    std::uniform_int_distribution<uint32_t> bits;
    std::vector<uint32_t> masks(size_t(R) * W);
    for (int w = 0; w < W; ++w) masks[size_t(w)] = bits(rng);                      // 0: random, partial last word
    for (int w = 0; w < W; ++w) masks[size_t(W) + w] = w % 3 == 0 ? 0u : w % 3 == 1 ? 0xffffffffu : bits(rng);  // 1: zero / ones words
    for (int w = 0; w < W; ++w) masks[size_t(2) * W + w] = 0xffffffffu;             // 2: all ones, bits past V set
    masks[size_t(3) * W + W - 1] = 1u << ((V - 1) % 32);                            // 3: the last id only
    masks[size_t(4) * W + 5] = 1u << 7;                                             // 4: id 167 only
    auto allowed = [&](int m, int v) { return (masks[size_t(m) * W + size_t(v / 32)] >> (v % 32)) & 1u; };
    auto same = [](float a, float b) { return std::memcmp(&a, &b, 4) == 0; };
    float *dl, *dsrc;
    CK(cudaMalloc(&dl, size_t(R + 1) * V * 4));
    CK(cudaMemcpy(dl, logits.data(), size_t(R) * V * 4, cudaMemcpyHostToDevice));
    // in place: masks 0, 1 and 2 on rows 0, 2 and 3 (rows 1 and 4 are not listed)
    {
        const std::vector<MaskRow> rows = {{0, 0}, {2, 2}, {3, 3}};
        std::vector<uint32_t> m(masks.begin(), masks.begin() + long(3) * W);
        auto * drows = up(rows);
        auto * dm = up(m);
        apply_token_masks(dl, dl, drows, dm, 3, V, 0);
        auto got = down(dl, size_t(R) * V);
        size_t bad = 0;
        for (int r = 0; r < R; ++r) {
            const int mi = r == 0 ? 0 : r == 2 ? 1 : r == 3 ? 2 : -1;
            for (int v = 0; v < V; ++v) {
                const float orig = logits[size_t(r) * V + v];
                const float want = mi < 0 || allowed(mi, v) ? orig : -INFINITY;
                bad += !same(got[size_t(r) * V + v], want);
            }
        }
        check(bad == 0, "token masks in place (partial last word, zero and ones words, rows not listed kept)", double(bad));
        cudaFree(drows); cudaFree(dm);
        CK(cudaMemcpy(dl, logits.data(), size_t(R) * V * 4, cudaMemcpyHostToDevice));
    }
    // copied: held rows 4, 1, 0 under masks 3, 4, 0 into rows 0, 1, 3 of a NaN-filled buffer
    {
        CK(cudaMalloc(&dsrc, size_t(R) * V * 4));
        CK(cudaMemcpy(dsrc, logits.data(), size_t(R) * V * 4, cudaMemcpyHostToDevice));
        std::vector<float> nan(size_t(R + 1) * V, std::nanf(""));
        CK(cudaMemcpy(dl, nan.data(), nan.size() * 4, cudaMemcpyHostToDevice));
        const std::vector<MaskRow> rows = {{4, 0}, {1, 1}, {0, 3}};
        std::vector<uint32_t> m;
        for (int mi : {3, 4, 0}) m.insert(m.end(), masks.begin() + long(mi) * W, masks.begin() + long(mi + 1) * W);
        auto * drows = up(rows);
        auto * dm = up(m);
        apply_token_masks(dsrc, dl, drows, dm, 3, V, 0);
        auto got = down(dl, size_t(R + 1) * V);
        auto held = down(dsrc, size_t(R) * V);
        size_t bad = 0;
        const int src_of[R + 1] = {4, 1, -1, 0, -1, -1}, mask_of[R + 1] = {3, 4, -1, 0, -1, -1};
        for (int r = 0; r <= R; ++r)
            for (int v = 0; v < V; ++v) {
                const float g = got[size_t(r) * V + v];
                if (src_of[r] < 0) { bad += !std::isnan(g); continue; }
                const float want = allowed(mask_of[r], v) ? logits[size_t(src_of[r]) * V + v] : -INFINITY;
                bad += !same(g, want);
            }
        bad += held != logits;  // the held rows are read, never written
        check(bad == 0 && got[size_t(V) - 1] == logits[size_t(4) * V + V - 1] && got[size_t(V) + 167] == logits[size_t(V) + 167],
              "token masks copied from held rows (single ids, other rows and the row past untouched)", double(bad));
        cudaFree(drows); cudaFree(dm); cudaFree(dsrc);
    }
    cudaFree(dl);

    // The sampler over masked rows, at a vocabulary of 50 021 (not a multiple of 32): ~5% of the ids removed at random
    // (as a grammar's mask inside a string), or all but 10.
    const int V2 = 50021, W2 = (V2 + 31) / 32, R2 = 6;
    std::vector<float> l2(size_t(R2) * V2);
    std::normal_distribution<float> d3(0.f, 3.f);
    for (auto & x : l2) x = d3(rng);
    std::vector<uint32_t> m2(size_t(R2) * W2, 0u);
    std::uniform_real_distribution<float> coin(0.f, 1.f);
    std::uniform_int_distribution<int> pick(0, V2 - 1);
    for (int r = 0; r < R2; ++r) {
        if (r % 2 == 0) {
            for (int v = 0; v < V2; ++v)
                if (coin(rng) > 0.05f) m2[size_t(r) * W2 + size_t(v / 32)] |= 1u << (v % 32);
        } else {
            for (int k = 0; k < 10; ++k) { const int v = pick(rng); m2[size_t(r) * W2 + size_t(v / 32)] |= 1u << (v % 32); }
        }
    }
    std::vector<float> masked = l2;
    for (int r = 0; r < R2; ++r)
        for (int v = 0; v < V2; ++v)
            if (!((m2[size_t(r) * W2 + size_t(v / 32)] >> (v % 32)) & 1u)) masked[size_t(r) * V2 + v] = -INFINITY;
    std::vector<MaskRow> rows2;
    for (int r = 0; r < R2; ++r) rows2.push_back({r, r});
    float * dl2 = up(l2);
    auto * drows2 = up(rows2);
    auto * dm2 = up(m2);
    apply_token_masks(dl2, dl2, drows2, dm2, R2, V2, 0);
    int * dout;
    CK(cudaMalloc(&dout, 64 * 4));
    void * aw;
    CK(cudaMalloc(&aw, argmax_workspace_bytes(R2)));
    CK(cudaMemset(aw, 0, argmax_workspace_bytes(R2)));
    argmax_rows(dl2, V2, R2, dout, aw, 0);
    auto am = down(dout, R2);
    bool greedy_ok = true;
    for (int r = 0; r < R2; ++r) {
        const float * row = &masked[size_t(r) * V2];
        greedy_ok &= am[size_t(r)] == int(std::max_element(row, row + V2) - row);
    }
    check(greedy_ok, "greedy over masked rows = host masked argmax", 0);
    const float temps[] = {1.0f, 0.7f, 1.3f, 0.9f, 2.0f, 1.0f};
    const int topk[] = {0, 40, 0, 50, 0, 0};
    const float topp[] = {1.f, 1.f, 0.9f, 0.95f, 0.5f, 1.f};
    int mism = 0, outside = 0;
    {
        SamplerHarness sampler(R2, V2, 2000, 1, temps, topk, topp);
        for (int trial = 0; trial < 20; ++trial) {
            auto got = sampler.draw(dl2, dout);
            for (int r = 0; r < R2; ++r) {
                std::vector<float> row(masked.begin() + long(r) * V2, masked.begin() + long(r + 1) * V2);
                const int t = got[size_t(r)];
                outside += t < 0 || t >= V2 || !((m2[size_t(r) * W2 + size_t(t / 32)] >> (t % 32)) & 1u);
                if (t != cpu_sample(row, sampler.ps[size_t(r)])) ++mism;
            }
        }
    }
    check(mism == 0 && outside == 0, "sampling over masked rows: 120 draws vs CPU walk, none outside the mask", mism + outside);
    cudaFree(dl2); cudaFree(drows2); cudaFree(dm2); cudaFree(dout); cudaFree(aw);
}

void check_blocks() {
    const size_t bb = size_t(1) << 20;
    const int nb = 12;
    std::vector<uint16_t> a = rand_bf(nb * bb / 2);
    auto * src = up(a);
    uint16_t * dst;
    CK(cudaMalloc(&dst, nb * bb));
    CK(cudaMemset(dst, 0, nb * bb));
    std::vector<int> sb = {3, 7, 1, 0}, db = {11, 2, 5, 6};
    auto *dsb = up(sb), *ddb = up(db);
    copy_blocks(src, dsb, dst, ddb, 4, bb, 0);
    auto out = down(dst, nb * bb / 2);
    bool ok = true;
    for (int i = 0; i < 4; ++i) ok &= std::memcmp(&out[size_t(db[i]) * bb / 2], &a[size_t(sb[i]) * bb / 2], bb) == 0;
    unsigned long long *h1, *h2;
    CK(cudaMalloc(&h1, 8)); CK(cudaMalloc(&h2, 8));
    CK(cudaMemset(h1, 0, 8)); CK(cudaMemset(h2, 0, 8));
    checksum_blocks(src, dsb, 4, bb, h1, 0);
    checksum_blocks(dst, ddb, 4, bb, h2, 0);
    auto c1 = down(h1, 1), c2 = down(h2, 1);
    std::vector<int> swapped = {11, 5, 2, 6};  // same bytes, other order: must differ
    auto * dsw = up(swapped);
    CK(cudaMemset(h2, 0, 8));
    checksum_blocks(dst, dsw, 4, bb, h2, 0);
    auto c3 = down(h2, 1);
    check(ok && c1[0] == c2[0] && c3[0] != c1[0], "block gather copy + position-sensitive checksum", 0);
    // bandwidth of the gather copy vs cudaMemcpy of the same bytes
    const size_t big_bb = size_t(4) << 20;
    const int big_n = 128;
    uint8_t *bs, *bd;
    CK(cudaMalloc(&bs, big_bb * big_n)); CK(cudaMalloc(&bd, big_bb * big_n));
    std::vector<int> ids(big_n);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    auto * dids = up(ids);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0); cudaEventCreate(&e1);
    float ms_copy = 1e9f, ms_mc = 1e9f;
    for (int it = 0; it < 5; ++it) {
        cudaEventRecord(e0);
        copy_blocks(bs, dids, bd, dids, big_n, big_bb, 0);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        float ms; cudaEventElapsedTime(&ms, e0, e1); ms_copy = std::min(ms_copy, ms);
        cudaEventRecord(e0);
        cudaMemcpyAsync(bd, bs, big_bb * big_n, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1); ms_mc = std::min(ms_mc, ms);
    }
    const double gb = 2.0 * big_bb * big_n / 1e9;
    std::printf("     block gather 512 MiB: %.0f GB/s (read+write) vs cudaMemcpy %.0f GB/s: ratio %.2f\n", gb / ms_copy * 1e3,
                gb / ms_mc * 1e3, ms_mc / ms_copy);
    cudaFree(src); cudaFree(dst); cudaFree(dsb); cudaFree(ddb); cudaFree(h1); cudaFree(h2); cudaFree(dsw); cudaFree(bs); cudaFree(bd); cudaFree(dids);
}

// Prefill attention speed on an 8B-shaped layer (32 q heads, 8 kv heads, head_dim 128), causal, one sequence.
void bench_prefill_attention(int n) {
    const int D = 128, nkv = 8, nq = 32, T = 32, nb = (n + T - 1) / T;
    KvPoolView v;
    v.num_layers = 1; v.num_kv_heads = nkv; v.head_dim = D; v.tokens_per_block = T;
    std::vector<uint16_t> pool = rand_bf(size_t(nb) * v.block_elems());
    uint16_t * dpool = up(pool);
    v.base = dpool;
    const int qstride = (nq + 2 * nkv) * D;
    std::vector<uint16_t> q = rand_bf(size_t(n) * qstride);
    uint16_t * dq = up(q);
    uint16_t * out;
    CK(cudaMalloc(&out, size_t(n) * nq * D * 2));
    std::vector<int> bt(static_cast<size_t>(nb)), tseq, trow, qs{0}, ql{n}, ctx{n}, rows{0};
    std::iota(bt.begin(), bt.end(), 0);
    for (int r = 0; r < n; r += 64) { tseq.push_back(0); trow.push_back(r); }
    int *dbt = up(bt), *dts = up(tseq), *dtr = up(trow), *dqs = up(qs), *dql = up(ql), *dctx = up(ctx), *drows = up(rows);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0); cudaEventCreate(&e1);
    float best = 1e9f;
    for (int it = 0; it < 4; ++it) {
        cudaEventRecord(e0);
        prefill_attention(DType::BF16, dq, qstride, out, nq * D, dts, dtr, dqs, dql, dctx, drows, dbt, nb, v, 0, int(tseq.size()), nq,
                          1.f / std::sqrt(float(D)), 0);
        cudaEventRecord(e1);
        CK(cudaEventSynchronize(e1));
        float ms; cudaEventElapsedTime(&ms, e0, e1); best = std::min(best, ms);
    }
    const double flop = 4.0 * double(n) * double(n) / 2 * D * nq;  // QK^T and PV, causal half
    std::printf("     prefill attention %d tokens (8B layer): %.3f ms = %.0f TFLOP/s\n", n, best, flop / best / 1e9);
    cudaFree(dpool); cudaFree(dq); cudaFree(out); cudaFree(dbt); cudaFree(dts); cudaFree(dtr); cudaFree(dqs); cudaFree(dql); cudaFree(dctx); cudaFree(drows);
}

void check_gemv() {
    for (int in : {4096, 4104, 2056}) {
        const int out = 1000;
        auto w = rand_bf(size_t(out) * in, 0.05f), x = rand_bf(size_t(8) * in);
        uint16_t *dw = up(w), *dx = up(x);
        float * y32;
        uint16_t * y16;
        CK(cudaMalloc(&y32, size_t(8) * out * 4));
        CK(cudaMalloc(&y16, size_t(8) * out * 2));
        for (int m : {1, 3, 8}) {
            gemv(DType::BF16, dw, dx, y32, out, in, m, true, 0);
            gemv(DType::BF16, dw, dx, y16, out, in, m, false, 0);
            auto a = down(y32, size_t(m) * out);
            auto b = down(y16, size_t(m) * out);
            double err = 0, err16 = 0;
            for (int i = 0; i < m; ++i)
                for (int r = 0; r < out; ++r) {
                    double ref = 0;
                    for (int c = 0; c < in; ++c) ref += double(from_bf(w[size_t(r) * in + c])) * from_bf(x[size_t(i) * in + c]);
                    err = std::max(err, std::fabs(a[size_t(i) * out + r] - ref) / (std::fabs(ref) + 1.0));
                    err16 = std::max(err16, std::fabs(from_bf(b[size_t(i) * out + r]) - ref) / (std::fabs(ref) + 1.0));
                }
            check(err < 1e-4 && err16 < 1e-2, "small-batch GEMM in=" + std::to_string(in) + " rows=" + std::to_string(m) + " (fp32 / bf16 out)", err16);
        }
        cudaFree(dw); cudaFree(dx); cudaFree(y32); cudaFree(y16);
    }
}

// The fused small-batch GEMMs equal the small-batch GEMM followed by the separate kernel, bit for bit, on a
// non-default stream (so the kernels run with programmatic dependent launch where the GPU has it).
void check_fused_gemv(int D, int m) {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const int nq = 8, nkv = 2, H = 1024 + 8, I = 1000, T = 16, layers = 2, layer = 1, max_pos = 300;
    const int QKV = (nq + 2 * nkv) * D;
    KvPoolView v;
    v.num_layers = layers; v.num_kv_heads = nkv; v.head_dim = D; v.tokens_per_block = T;
    const int nb = 6;
    std::vector<uint16_t> pool(size_t(nb) * v.block_elems(), 0);
    uint16_t *pa = up(pool), *pb = up(pool);
    const std::vector<uint16_t> cs = rope_table(max_pos, D);
    std::vector<int> pos(m), slots(m);
    for (int r = 0; r < m; ++r) { pos[r] = (r * 37 + 5) % max_pos; slots[r] = r == 1 ? -1 : (r * 13 + 2) % (nb * T); }
    auto wqkv = rand_bf(size_t(QKV) * H, 0.05f), wgu = rand_bf(size_t(2) * I * H, 0.05f), x = rand_bf(size_t(m) * H);
    auto *dwqkv = up(wqkv), *dwgu = up(wgu), *dx = up(x), *dcs = up(cs);
    auto *dpos = up(pos), *dsl = up(slots);
    uint16_t *qa, *qb, *gu, *act_a, *act_b;
    CK(cudaMalloc(&qa, size_t(m) * QKV * 2)); CK(cudaMalloc(&qb, size_t(m) * QKV * 2));
    CK(cudaMalloc(&gu, size_t(m) * 2 * I * 2)); CK(cudaMalloc(&act_a, size_t(m) * I * 2)); CK(cudaMalloc(&act_b, size_t(m) * I * 2));
    // unfused
    v.base = pa;
    gemv(DType::BF16, dwqkv, dx, qa, QKV, H, m, false, st);
    rope_kv_write(DType::BF16, qa, dpos, dsl, dcs, v, layer, m, nq, st);
    gemv(DType::BF16, dwgu, dx, gu, 2 * I, H, m, false, st);
    silu_mul(DType::BF16, gu, act_a, m, I, st);
    // fused
    v.base = pb;
    const bool ok1 = gemv_rope_kv_write(DType::BF16, dwqkv, dx, qb, H, m, dpos, dsl, dcs, v, layer, nq, st);
    const bool ok2 = gemv_silu(DType::BF16, dwgu, dx, act_b, I, H, m, st);
    CK(cudaStreamSynchronize(st));
    auto A = down(qa, size_t(m) * QKV), B = down(qb, size_t(m) * QKV);
    auto PA = down(pa, pool.size()), PB = down(pb, pool.size());
    auto SA = down(act_a, size_t(m) * I), SB = down(act_b, size_t(m) * I);
    size_t written = 0;
    for (uint16_t h : PB) written += h != 0;
    const size_t want_written = size_t(m - (m > 1 ? 1 : 0)) * 2 * nkv * D;  // every row but the padding one
    const bool same = A == B && PA == PB && SA == SB && written + 8 > want_written && written <= want_written;
    check(ok1 && ok2 && same, "fused gemv = gemv + rope/KV write, gemv + silu*up, D=" + std::to_string(D) + " rows=" + std::to_string(m) +
                                  " (bitwise; PDL stream)", same ? 0 : 1);
    cudaFree(pa); cudaFree(pb); cudaFree(dwqkv); cudaFree(dwgu); cudaFree(dx); cudaFree(dcs); cudaFree(dpos); cudaFree(dsl);
    cudaFree(qa); cudaFree(qb); cudaFree(gu); cudaFree(act_a); cudaFree(act_b);
    cudaStreamDestroy(st);
}

// The RMSNorm folded into the fused GEMMs' prologue against add_rmsnorm + the fused GEMM, bitwise, for hidden sizes
// whose add_rmsnorm launch is 128, 256, 512 and 1024 threads wide (the prologue's 256 threads play 1/2 to 4 each):
// the rope/KV-write outputs and pool, the silu outputs, and the summed residual written to the second buffer.
void check_norm_fold(int H, int m) {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const int D = 64, nq = 4, nkv = 2, I = 520, T = 16, layers = 1, max_pos = 64, nb = 2;
    const int QKV = (nq + 2 * nkv) * D;
    const float eps = 1e-5f;
    KvPoolView v;
    v.num_layers = layers; v.num_kv_heads = nkv; v.head_dim = D; v.tokens_per_block = T;
    std::vector<uint16_t> pool(size_t(nb) * v.block_elems(), 0);
    uint16_t *pa = up(pool), *pb = up(pool);
    const std::vector<uint16_t> cs = rope_table(max_pos, D);
    std::vector<int> pos(m), slots(m);
    for (int r = 0; r < m; ++r) { pos[r] = (r * 7 + 3) % max_pos; slots[r] = r; }
    auto wqkv = rand_bf(size_t(QKV) * H, 0.05f), wgu = rand_bf(size_t(2) * I * H, 0.05f);
    auto res = rand_bf(size_t(m) * H), delta = rand_bf(size_t(m) * H), g = rand_bf(H, 0.5f);
    auto *dwqkv = up(wqkv), *dwgu = up(wgu), *dcs = up(cs), *dres = up(res), *ddelta = up(delta), *dg = up(g);
    auto *dpos = up(pos), *dsl = up(slots);
    uint16_t *ra = up(res), *xn, *qa, *qb, *act_a, *act_b, *out1, *out2, *act_c, *act_d, *out3;
    for (uint16_t ** p : {&xn, &out1, &out2, &out3}) CK(cudaMalloc(p, size_t(m) * H * 2));
    for (uint16_t ** p : {&qa, &qb}) CK(cudaMalloc(p, size_t(m) * QKV * 2));
    for (uint16_t ** p : {&act_a, &act_b, &act_c, &act_d}) CK(cudaMalloc(p, size_t(m) * I * 2));
    // separate: add_rmsnorm in place on a copy of the residual, then the fused GEMMs on its output
    v.base = pa;
    add_rmsnorm(DType::BF16, ra, ddelta, dg, xn, nullptr, m, H, eps, st);
    bool ok = gemv_rope_kv_write(DType::BF16, dwqkv, xn, qa, H, m, dpos, dsl, dcs, v, 0, nq, st);
    ok &= gemv_silu(DType::BF16, dwgu, xn, act_a, I, H, m, st);
    // folded
    v.base = pb;
    const GemvNorm n1{dres, ddelta, out1, dg, eps}, n2{dres, ddelta, out2, dg, eps};
    ok &= gemv_rope_kv_write(DType::BF16, dwqkv, nullptr, qb, H, m, dpos, dsl, dcs, v, 0, nq, st, &n1);
    ok &= gemv_silu(DType::BF16, dwgu, nullptr, act_b, I, H, m, st, &n2);
    // no delta (layer 0): the norm of the residual itself, and the residual copied to res_out
    add_rmsnorm(DType::BF16, dres, nullptr, dg, xn, nullptr, m, H, eps, st);
    ok &= gemv_silu(DType::BF16, dwgu, xn, act_c, I, H, m, st);
    const GemvNorm n3{dres, nullptr, out3, dg, eps};
    ok &= gemv_silu(DType::BF16, dwgu, nullptr, act_d, I, H, m, st, &n3);
    CK(cudaStreamSynchronize(st));
    const auto RA = down(ra, size_t(m) * H);
    bool same = down(qa, size_t(m) * QKV) == down(qb, size_t(m) * QKV) && down(pa, pool.size()) == down(pb, pool.size()) &&
                down(act_a, size_t(m) * I) == down(act_b, size_t(m) * I) && down(out1, size_t(m) * H) == RA &&
                down(out2, size_t(m) * H) == RA && RA != res && down(act_c, size_t(m) * I) == down(act_d, size_t(m) * I) &&
                down(out3, size_t(m) * H) == res;
    check(ok && same, "norm folded into the fused gemv = add_rmsnorm + fused gemv, H=" + std::to_string(H) + " rows=" + std::to_string(m) +
                          " (bitwise; PDL stream)", same ? 0 : 1);
    for (void * p : std::initializer_list<void *>{pa, pb, dwqkv, dwgu, dcs, dres, ddelta, dg, dpos, dsl, ra, xn, qa, qb, act_a, act_b,
                                                  out1, out2, act_c, act_d, out3})
        cudaFree(p);
    cudaStreamDestroy(st);
}

// The short import path: block lists in the kernel's parameters, the checksum through mapped host memory; the same
// bytes and sum as copy_blocks_checksum, twice in a row (the device sum and counter reset themselves).
void check_import_blocks() {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const size_t bb = size_t(256) << 10;
    const int nb = 10;
    std::vector<uint16_t> a = rand_bf(nb * bb / 2);
    auto * src = up(a);
    uint8_t *d1, *d2;
    CK(cudaMalloc(&d1, nb * bb)); CK(cudaMalloc(&d2, nb * bb));
    CK(cudaMemset(d1, 0, nb * bb)); CK(cudaMemset(d2, 0, nb * bb));
    std::vector<int> sb = {3, 7, 1, 0, 9}, db = {8, 2, 5, 6, 4};
    auto *dsb = up(sb), *ddb = up(db);
    unsigned long long * ref;
    CK(cudaMalloc(&ref, 8)); CK(cudaMemset(ref, 0, 8));
    copy_blocks_checksum(src, dsb, d1, ddb, 5, bb, ref, st);
    ImportSync sync{};
    CK(cudaMalloc(&sync.sum, 8)); CK(cudaMemset(sync.sum, 0, 8));
    CK(cudaMalloc(&sync.arrived, 4)); CK(cudaMemset(sync.arrived, 0, 4));
    unsigned long long * host;
    CK(cudaHostAlloc(&host, 8, cudaHostAllocMapped));
    void * hd;
    CK(cudaHostGetDevicePointer(&hd, host, 0));
    sync.host_sum = static_cast<volatile unsigned long long *>(hd);
    auto lists = std::make_unique<ImportLists>();
    lists->n = 5;
    std::copy(sb.begin(), sb.end(), lists->src);
    std::copy(db.begin(), db.end(), lists->dst);
    unsigned long long got[2];
    for (int k = 0; k < 2; ++k) {
        *host = 0;
        import_blocks_checksum(src, d2, *lists, bb, sync, st);
        CK(cudaStreamSynchronize(st));
        got[k] = *static_cast<volatile unsigned long long *>(host);
    }
    auto r = down(ref, 1);
    auto o1 = down(d1, nb * bb), o2 = down(d2, nb * bb);
    check(got[0] == r[0] && got[1] == r[0] && o1 == o2 && r[0] != 0, "short KV import: inline block lists, checksum to mapped host memory", 0);
    cudaFree(src); cudaFree(d1); cudaFree(d2); cudaFree(dsb); cudaFree(ddb); cudaFree(ref); cudaFree(sync.sum); cudaFree(sync.arrived);
    cudaFreeHost(host);
    cudaStreamDestroy(st);
}

}  // namespace

// E4M3 to float (exact), as model_config.cpp decodes it.
float e4m3(uint8_t b) {
    const int sign = b >> 7, exp = (b >> 3) & 15, man = b & 7;
    float v = exp == 0 ? std::ldexp(float(man), -9) : std::ldexp(1.0f + float(man) / 8.0f, exp - 7);
    if (exp == 15 && man == 7) v = NAN;
    return sign ? -v : v;
}

// FP8 linear layers (fp8.cuh): the small-batch kernel and cuBLASLt's outer-vector-scaled FP8 GEMM against the
// double-precision product of the dequantized operands, and the per-row activation quantization's error bound.
void check_fp8() {
    const int out = 1000 + 24, in = 2048 + 64;
    std::vector<uint8_t> w(size_t(out) * in);
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto & b : w) { do b = uint8_t(byte(rng)); while (((b >> 3) & 15) == 15 && (b & 7) == 7); }  // no NaN codes
    std::vector<float> ws(static_cast<size_t>(out));
    std::uniform_real_distribution<float> sc(0.5e-3f, 2e-3f);
    for (auto & v : ws) v = sc(rng);
    uint8_t * dw = up(w);
    float * dws = up(ws);
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    void * lt_ws;
    CK(cudaMalloc(&lt_ws, size_t(32) << 20));
    // cuBLASLt's scaling where this GPU has it (else the fallback, one block), and the fp32-scratch fallback always
    // with a 1 MiB scratch: 256 rows of 1,024 products per GEMM, so 300 rows take two blocks.
    Fp8Gemm auto_gemm(DType::BF16, st, lt_ws, size_t(32) << 20);
    Fp8Gemm scratch_gemm(DType::BF16, st, lt_ws, size_t(32) << 20, Fp8Gemm::Scaling::Scratch, size_t(1) << 20);
    std::printf("  FP8 GEMM scaling on this GPU: %s\n", auto_gemm.outer_vector() ? "cuBLASLt outer-vector" : "fp32 scratch (no outer-vector FP8 GEMM)");
    for (Fp8Gemm * gemm : {&auto_gemm, &scratch_gemm}) {
        const std::string path = gemm->outer_vector() ? "cuBLASLt outer-vector GEMM" : "cuBLASLt GEMM into fp32 + scaling pass";
        for (int rows : {1, 5, 8, 37, 300}) {
            if (gemm == &scratch_gemm && rows <= 8) continue;
            auto x = rand_bf(size_t(rows) * in, 2.f);
            uint16_t * dx = up(x);
            uint16_t * dy;
            CK(cudaMalloc(&dy, size_t(rows) * out * 2));
            uint8_t * xq;
            float * xs;
            CK(cudaMalloc(&xq, size_t(rows) * in));
            CK(cudaMalloc(&xs, size_t(rows) * 4));
            const bool small = gemv_fp8(DType::BF16, dw, dws, dx, dy, out, in, rows, st);
            if (!small) {
                quantize_rows_fp8(DType::BF16, dx, xq, xs, rows, in, st);
                gemm->run(dw, dws, xq, xs, dy, out, in, rows);
            }
            CK(cudaStreamSynchronize(st));
            auto y = down(dy, size_t(rows) * out);
            // quantization: every element within half an E4M3 step (relative 2^-4) of x, or the subnormal spacing
            double qerr = 0;
            std::vector<float> xd(x.size());
            if (!small) {
                auto q = down(xq, size_t(rows) * in);
                auto s = down(xs, size_t(rows));
                for (int r = 0; r < rows; ++r)
                    for (int c = 0; c < in; ++c) {
                        const float xv = from_bf(x[size_t(r) * in + c]), d = e4m3(q[size_t(r) * in + c]) * s[size_t(r)];
                        xd[size_t(r) * in + c] = d;
                        qerr = std::max(qerr, double(std::fabs(d - xv)) / (std::fabs(xv) * 0.0625 + s[size_t(r)] * std::ldexp(1.0, -9)));
                    }
            } else {
                for (size_t i = 0; i < x.size(); ++i) xd[i] = from_bf(x[i]);
            }
            // err: against the element's own value; err_abs_sum: against the sum of |products|, the scale of an
            // accumulation error. The small-batch kernel accumulates in fp32 on CUDA cores: err < 1.6e-2. The tensor-core
            // paths accumulate FP8 products in the MMA's own accumulator, which keeps fewer bits than fp32 (about 14,
            // DeepSeek-V3's technical report, section 3.3.2), so an element whose products cancel can be off by far more
            // than its own size: there each element must be within 1.6e-2 of its value plus kMmaAccum of its
            // sum |products| (measured on an H100, run 18: at most 8.7e-4 over 2,112 products).
            constexpr double kMmaAccum = 2e-3;
            double err = 0, err_abs_sum = 0, ref_rms = 0;
            bool within = true;
            for (int r = 0; r < rows; ++r)
                for (int o = 0; o < out; ++o) {
                    double acc = 0, abs_sum = 0;
                    for (int c = 0; c < in; ++c) {
                        const double p = double(xd[size_t(r) * in + c]) * e4m3(w[size_t(o) * in + c]);
                        acc += p;
                        abs_sum += std::fabs(p);
                    }
                    acc *= ws[size_t(o)];
                    abs_sum *= ws[size_t(o)];
                    const double e = std::fabs(double(from_bf(y[size_t(r) * out + o])) - acc);
                    err = std::max(err, e / (std::fabs(acc) + 1e-2));
                    err_abs_sum = std::max(err_abs_sum, e / (abs_sum + 1e-30));
                    within = within && e <= 1.6e-2 * (std::fabs(acc) + 1e-2) + (small ? 0.0 : kMmaAccum * abs_sum);
                    ref_rms += acc * acc;
                }
            if (!small) std::printf("  %s rows=%d: max error / sum|x*w| = %.3g (bound %.3g)\n", path.c_str(), rows, err_abs_sum, kMmaAccum);
            check(within && qerr <= 1.0 && ref_rms > 0,
                  std::string(small ? "FP8 small-batch GEMM" : "FP8 rows quantized + " + path) + " rows=" + std::to_string(rows) +
                      (small ? "" : " (quantization within half a step: " + std::to_string(qerr) + ")"),
                  err);
            cudaFree(dx); cudaFree(dy); cudaFree(xq); cudaFree(xs);
        }
    }
    cudaFree(dw); cudaFree(dws); cudaFree(lt_ws);
    cudaStreamDestroy(st);
}

int main() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        std::printf("no CUDA device: kernel checks skipped\n");
        return 0;
    }
    check_rmsnorm();
    check_silu();
    for (int D : {64, 128}) check_rope_kv(D);
    for (int D : {64, 128}) check_rope_kv(D, true);
    check_attention(64, 4);
    check_attention(128, 4);
    check_attention(128, 4, 2);
    check_attention(64, 8, 2);
    check_attention(16, 2);
    check_attention(128, 8);
    check_attention(128, 7);          // Qwen2.5-7B's grouping
    check_attention(64, 6, 2);        // Qwen2.5-1.5B's, shallow path
    check_attention(128, 4, 1, 100);  // Mistral's sliding window: decode and prefill (the 700-token sequence spans it)
    check_attention(128, 4, 2, 40);
    check_attention(64, 8, 1, 64);
    check_attention(32, 2, 1, 100);   // the wmma prefill kernel's window
    check_gemv();
    for (int D : {64, 128})
        for (int m : {1, 3, 8}) check_fused_gemv(D, m);
    for (int H : {1024, 2048, 4096, 8192}) check_norm_fold(H, 1);
    check_norm_fold(2048, 3);
    check_norm_fold(2048, 8);
    check_import_blocks();
    check_fp8();
    check_argmax_edges();
    check_sampling();
    check_token_masks();
    check_blocks();
    bench_prefill_attention(1024);
    bench_prefill_attention(8192);
    std::printf("kernel checks: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
