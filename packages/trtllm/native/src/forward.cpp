#include "forward.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace trtd {

namespace {

// Dot product with a fixed summation order (16 lanes, then a fixed reduction), so the compiler can
// vectorize it without -ffast-math and the result does not depend on batch composition.
inline float dot(const float * __restrict a, const float * __restrict b, int n) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; ++l) acc[l] += a[i + l] * b[i + l];
    for (int l = 0; i < n; ++i, ++l) acc[l & 15] += a[i] * b[i];
    float s0 = (acc[0] + acc[8]) + (acc[4] + acc[12]), s1 = (acc[1] + acc[9]) + (acc[5] + acc[13]);
    float s2 = (acc[2] + acc[10]) + (acc[6] + acc[14]), s3 = (acc[3] + acc[11]) + (acc[7] + acc[15]);
    return (s0 + s2) + (s1 + s3);
}

void rmsnorm(const float * x, const float * w, int n, double eps, float * out) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
    const float inv = float(1.0 / std::sqrt(ss / n + eps));
    for (int i = 0; i < n; ++i) out[i] = x[i] * inv * w[i];
}

// HF rotate_half convention: dimension i pairs with i + d/2.
void rope(float * v, int d, const float * cs, const float * sn) {
    const int h = d / 2;
    for (int i = 0; i < h; ++i) {
        const float a = v[i], b = v[i + h];
        v[i] = a * cs[i] - b * sn[i];
        v[i + h] = b * cs[i] + a * sn[i];
    }
}

}  // namespace

Forward::Forward(const Model & model, ThreadPool & pool, KvGeometry geometry) : m_(model), pool_(pool), g_(geometry) {}

#if defined(__AVX2__) && defined(__FMA__)
namespace {

inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// NR input rows x NJ weight rows of outputs. Every output is computed the same way whatever the tile
// (one 8-lane FMA accumulator over K, a fixed horizontal sum, then the K % 8 tail), so a row's result does not
// depend on the batch it is in.
template <int NR, int NJ>
inline void tile(const float * x, size_t ldx, const float * w, size_t ldw, int k, float * y, size_t ldy) {
    __m256 acc[NR][NJ];
    for (int r = 0; r < NR; ++r)
        for (int j = 0; j < NJ; ++j) acc[r][j] = _mm256_setzero_ps();
    const int k8 = k & ~7;
    for (int i = 0; i < k8; i += 8) {
        __m256 wv[NJ];
        for (int j = 0; j < NJ; ++j) wv[j] = _mm256_loadu_ps(w + size_t(j) * ldw + size_t(i));
        for (int r = 0; r < NR; ++r) {
            const __m256 xv = _mm256_loadu_ps(x + size_t(r) * ldx + size_t(i));
            for (int j = 0; j < NJ; ++j) acc[r][j] = _mm256_fmadd_ps(wv[j], xv, acc[r][j]);
        }
    }
    for (int r = 0; r < NR; ++r)
        for (int j = 0; j < NJ; ++j) {
            float s = hsum8(acc[r][j]);
            const float * wr = w + size_t(j) * ldw;
            const float * xr = x + size_t(r) * ldx;
            for (int i = k8; i < k; ++i) s = std::fma(wr[i], xr[i], s);
            y[size_t(r) * ldy + size_t(j)] = s;
        }
}

}  // namespace
#endif

void Forward::matmul(const float * x, int rows, int in, const float * w, int out, float * y) {
    // Parallel over output features in groups of 8 weight rows; each group is read once from memory and
    // applied to every row of the batch while it is in cache (weights are read once per step).
    const int groups = (out + 7) / 8;
    // Rows in blocks of 64 (prefill chunks): a block of inputs stays in L2 while this thread's weight groups
    // stream past it. Decode batches are one block, so there every weight is read once per step.
    constexpr int kRowBlock = 64;
    auto body = [&](int g0, int g1) {
        for (int rb = 0; rb < rows; rb += kRowBlock) {
            const int re = std::min(rows, rb + kRowBlock);
            for (int g = g0; g < g1; ++g) {
                const int j0 = g * 8, j1 = std::min(out, j0 + 8);
#if defined(__AVX2__) && defined(__FMA__)
                const size_t ldx = size_t(in), ldw = size_t(in), ldy = size_t(out);
                int r = rb;
                for (; r + 4 <= re; r += 4) {
                    int j = j0;
                    for (; j + 2 <= j1; j += 2) tile<4, 2>(x + r * ldx, ldx, w + j * ldw, ldw, in, y + r * ldy + j, ldy);
                    if (j < j1) tile<4, 1>(x + r * ldx, ldx, w + j * ldw, ldw, in, y + r * ldy + j, ldy);
                }
                for (; r < re; ++r) {
                    int j = j0;
                    for (; j + 2 <= j1; j += 2) tile<1, 2>(x + r * ldx, ldx, w + j * ldw, ldw, in, y + r * ldy + j, ldy);
                    if (j < j1) tile<1, 1>(x + r * ldx, ldx, w + j * ldw, ldw, in, y + r * ldy + j, ldy);
                }
#else
                for (int r = rb; r < re; ++r) {
                    const float * xr = x + size_t(r) * size_t(in);
                    float * yr = y + size_t(r) * size_t(out);
                    for (int j = j0; j < j1; ++j) yr[j] = dot(w + size_t(j) * size_t(in), xr, in);
                }
#endif
            }
        }
    };
    if (double(rows) * out * in < 65536.0) body(0, groups);
    else pool_.parallel_for(groups, body);
}

void Forward::attention(const std::vector<ForwardRow> & rows, int layer) {
    const auto & c = m_.cfg;
    const int D = c.head_dim, Hq = c.num_heads, Hkv = c.num_kv_heads, T = g_.tokens_per_block;
    const int qkv_width = (Hq + 2 * Hkv) * D, group = Hq / Hkv;
    const float scale = float(1.0 / std::sqrt(double(D)));
    const size_t tok = g_.token_stride(), kv = g_.kv_stride(), lay = size_t(layer) * g_.layer_stride();
    const int tasks = int(rows.size()) * Hq;
    double work = 0;
    for (const auto & r : rows) work += double(r.pos + 1) * D * Hq;
    auto body = [&](int t0, int t1) {
        std::vector<float> scores;
        for (int t = t0; t < t1; ++t) {
            const int ri = t / Hq, h = t % Hq, kh = h / group;
            const ForwardRow & r = rows[size_t(ri)];
            const float * q = qkv_.data() + size_t(ri) * qkv_width + size_t(h) * D;
            float * out = attn_.data() + size_t(ri) * (size_t(Hq) * D) + size_t(h) * D;
            const int n = r.pos + 1;
            // Mistral's sliding window: the last sliding_window positions, this one included (HF: kv > q - W)
            const int p0 = c.sliding_window > 0 ? std::max(0, n - c.sliding_window) : 0;
            scores.resize(size_t(n));
            float mx = -INFINITY;
            for (int p = p0; p < n; ++p) {
                const float * k = r.blocks[p / T] + lay + size_t(p % T) * tok + size_t(kh) * D;
                scores[size_t(p)] = dot(q, k, D) * scale;
                mx = std::max(mx, scores[size_t(p)]);
            }
            double sum = 0;
            for (int p = p0; p < n; ++p) {
                scores[size_t(p)] = std::exp(scores[size_t(p)] - mx);
                sum += scores[size_t(p)];
            }
            const float inv = float(1.0 / sum);
            std::fill(out, out + D, 0.0f);
            for (int p = p0; p < n; ++p) {
                const float * v = r.blocks[p / T] + lay + kv + size_t(p % T) * tok + size_t(kh) * D;
                const float wgt = scores[size_t(p)] * inv;
                for (int d = 0; d < D; ++d) out[d] += wgt * v[d];
            }
        }
    };
    if (work < 65536.0) body(0, tasks);
    else pool_.parallel_for(tasks, body);
}

void Forward::run(const std::vector<ForwardRow> & rows, float * logits) {
    const auto & c = m_.cfg;
    const int R = int(rows.size());
    if (R == 0) return;
    const int H = c.hidden_size, D = c.head_dim, Hq = c.num_heads, Hkv = c.num_kv_heads, I = c.intermediate_size;
    const int qkv_width = (Hq + 2 * Hkv) * D;
    x_.resize(size_t(R) * H);
    xn_.resize(size_t(R) * H);
    qkv_.resize(size_t(R) * qkv_width);
    attn_.resize(size_t(R) * Hq * D);
    gu_.resize(size_t(R) * 2 * I);
    tmp_.resize(size_t(R) * std::max(H, I));

    for (int r = 0; r < R; ++r)
        std::memcpy(&x_[size_t(r) * H], m_.embed + size_t(rows[size_t(r)].token) * H, size_t(H) * 4);

    // Rotary tables per row (angles in double: positions can be large).
    const int half = D / 2;
    std::vector<float> cs(size_t(R) * half), sn(size_t(R) * half);
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < half; ++i) {
            const double a = double(rows[size_t(r)].pos) * m_.inv_freq[size_t(i)];
            cs[size_t(r) * half + i] = float(std::cos(a) * c.rope_scaling.attention_factor);
            sn[size_t(r) * half + i] = float(std::sin(a) * c.rope_scaling.attention_factor);
        }

    const int T = g_.tokens_per_block;
    const size_t tok = g_.token_stride(), kvs = g_.kv_stride();
    std::vector<float> head(c.qk_norm ? static_cast<size_t>(D) : 0);  // one head's q/k norm output (Qwen3)
    for (int l = 0; l < c.num_layers; ++l) {
        const LayerWeights & w = m_.layers[size_t(l)];
        for (int r = 0; r < R; ++r) rmsnorm(&x_[size_t(r) * H], w.input_norm, H, c.rms_norm_eps, &xn_[size_t(r) * H]);
        matmul(xn_.data(), R, H, w.wqkv, qkv_width, qkv_.data());
        if (w.bqkv)
            for (int r = 0; r < R; ++r)
                for (int j = 0; j < qkv_width; ++j) qkv_[size_t(r) * qkv_width + j] += w.bqkv[j];
        const size_t lay = size_t(l) * g_.layer_stride();
        for (int r = 0; r < R; ++r) {
            const ForwardRow & row = rows[size_t(r)];
            float * q = &qkv_[size_t(r) * qkv_width];
            float * k = q + size_t(Hq) * D;
            const float * v = k + size_t(Hkv) * D;
            if (w.q_norm) {  // Qwen3: each head RMS-normalized over head_dim before RoPE
                for (int h = 0; h < Hq; ++h) {
                    rmsnorm(q + size_t(h) * D, w.q_norm, D, c.rms_norm_eps, head.data());
                    std::memcpy(q + size_t(h) * D, head.data(), size_t(D) * 4);
                }
                for (int h = 0; h < Hkv; ++h) {
                    rmsnorm(k + size_t(h) * D, w.k_norm, D, c.rms_norm_eps, head.data());
                    std::memcpy(k + size_t(h) * D, head.data(), size_t(D) * 4);
                }
            }
            for (int h = 0; h < Hq; ++h) rope(q + size_t(h) * D, D, &cs[size_t(r) * half], &sn[size_t(r) * half]);
            for (int h = 0; h < Hkv; ++h) rope(k + size_t(h) * D, D, &cs[size_t(r) * half], &sn[size_t(r) * half]);
            float * blk = row.blocks[row.pos / T] + lay + size_t(row.pos % T) * tok;
            std::memcpy(blk, k, tok * 4);
            std::memcpy(blk + kvs, v, tok * 4);
        }
        attention(rows, l);
        matmul(attn_.data(), R, Hq * D, w.wo, H, tmp_.data());
        for (size_t i = 0; i < size_t(R) * H; ++i) x_[i] += tmp_[i];
        for (int r = 0; r < R; ++r) rmsnorm(&x_[size_t(r) * H], w.post_norm, H, c.rms_norm_eps, &xn_[size_t(r) * H]);
        matmul(xn_.data(), R, H, w.wgate_up, 2 * I, gu_.data());
        for (int r = 0; r < R; ++r) {
            const float * g = &gu_[size_t(r) * 2 * I];
            const float * u = g + I;
            float * h = &tmp_[size_t(r) * I];
            for (int i = 0; i < I; ++i) h[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
        }
        // down projection reads tmp_ as [R][I]; write into xn_ as scratch [R][H]
        matmul(tmp_.data(), R, I, w.wdown, H, xn_.data());
        for (size_t i = 0; i < size_t(R) * H; ++i) x_[i] += xn_[i];
    }

    // Final norm + LM head only for rows that want logits.
    std::vector<int> want;
    for (int r = 0; r < R; ++r) if (rows[size_t(r)].logits_index >= 0) want.push_back(r);
    if (want.empty()) return;
    final_.resize(want.size() * size_t(H));
    for (size_t k = 0; k < want.size(); ++k)
        rmsnorm(&x_[size_t(want[k]) * H], m_.final_norm, H, c.rms_norm_eps, &final_[k * H]);
    // Callers number logit rows 0..n-1 in row order, so the LM head writes straight into `logits`.
    for (size_t k = 0; k < want.size(); ++k)
        if (rows[size_t(want[k])].logits_index != int(k)) throw std::logic_error("logits_index must follow row order");
    matmul(final_.data(), int(want.size()), H, m_.lm_head, c.vocab_size, logits);
}

}  // namespace trtd
