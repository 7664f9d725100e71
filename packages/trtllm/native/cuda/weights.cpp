// Weights from safetensors straight to the device: the files are memory-mapped, each tensor is copied (and
// converted to the model dtype when the file holds another) into one of two pinned staging buffers, and the
// staging buffer goes to its place in one device allocation while the other one fills. q/k/v and gate/up are
// concatenated on the way ([q;k;v], [gate;up]), so each needs one GEMM. An FP8 checkpoint's linear weights stay
// E4M3 (one byte each, copied as they are) and their per-channel scales go to a float array (fp8.cuh).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "engine.hpp"

namespace trtd::cuda {

namespace {

uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

uint16_t f32_to_f16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);
    if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow to inf
    const int exp = int(a >> 23) - 127 + 15;
    uint32_t man = a & 0x7fffffu;
    if (exp <= 0) {
        if (exp < -10) return uint16_t(sign);
        man |= 0x800000u;
        const int shift = 14 - exp;
        uint32_t h = man >> shift;
        const uint32_t rem = man & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
        return uint16_t(sign | h);
    }
    uint32_t h = (uint32_t(exp) << 10) | (man >> 13);
    const uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return uint16_t(sign | h);
}

}  // namespace

void Engine::load_weights(const std::string & dir) {
    const SafetensorsDir st(dir);
    const ModelConfig & c = cfg_;
    const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim, V = c.vocab_size;
    const int64_t QD = int64_t(c.num_heads) * D, KD = int64_t(c.num_kv_heads) * D;
    const bool untied = !c.tie_word_embeddings;
    if (untied && !st.find("lm_head.weight")) throw std::runtime_error("missing tensor lm_head.weight (tie_word_embeddings is false)");

    // Where each tensor goes: byte offsets in the one allocation; esize 1 for FP8 weights, else 2 (the model dtype).
    struct Piece { std::string name; std::vector<int64_t> shape; size_t dst; size_t esize; };
    std::vector<Piece> pieces;
    size_t total = 0;  // bytes placed so far
    auto align = [](size_t b) { return (b + 127) / 128 * 128; };  // 128-byte aligned starts
    auto numel = [](const std::vector<int64_t> & shape) { size_t n = 1; for (auto d : shape) n *= size_t(d); return n; };
    auto place = [&](const std::string & name, std::vector<int64_t> shape, size_t esize = 2) {
        pieces.push_back({name, shape, total, esize});
        const size_t at = total;
        total = align(total + numel(shape) * esize);
        return at;
    };
    // A matrix made of row blocks ([q;k;v], [gate;up]): the parts back to back, one allocation slot.
    auto place_rows = [&](const std::vector<std::pair<std::string, std::vector<int64_t>>> & parts, size_t esize) {
        const size_t at = total;
        size_t b = at;
        for (const auto & [name, shape] : parts) {
            pieces.push_back({name, shape, b, esize});
            b += numel(shape) * esize;
        }
        total = align(b);
        return at;
    };
    const size_t lin = c.fp8.on ? 1 : 2;  // bytes per element of the decoder's linear weights
    struct LayerOffsets { size_t in_norm, qkv, o, post, gu, down, bias = 0, q_norm = 0, k_norm = 0; };
    const size_t embed_at = place("model.embed_tokens.weight", {V, H});
    std::vector<LayerOffsets> lo;
    for (int l = 0; l < c.num_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        LayerOffsets o{};
        o.in_norm = place(p + "input_layernorm.weight", {H});
        o.qkv = place_rows({{p + "self_attn.q_proj.weight", {QD, H}}, {p + "self_attn.k_proj.weight", {KD, H}},
                            {p + "self_attn.v_proj.weight", {KD, H}}}, lin);
        if (c.qkv_bias) {  // Qwen2: one [q;k;v] bias vector
            o.bias = place_rows({{p + "self_attn.q_proj.bias", {QD}}, {p + "self_attn.k_proj.bias", {KD}},
                                 {p + "self_attn.v_proj.bias", {KD}}}, 2);
        }
        if (c.qk_norm) {  // Qwen3
            o.q_norm = place(p + "self_attn.q_norm.weight", {D});
            o.k_norm = place(p + "self_attn.k_norm.weight", {D});
        }
        o.o = place(p + "self_attn.o_proj.weight", {H, QD}, lin);
        o.post = place(p + "post_attention_layernorm.weight", {H});
        o.gu = place_rows({{p + "mlp.gate_proj.weight", {I, H}}, {p + "mlp.up_proj.weight", {I, H}}}, lin);
        o.down = place(p + "mlp.down_proj.weight", {H, I}, lin);
        lo.push_back(o);
    }
    const size_t norm_at = place("model.norm.weight", {H});
    const size_t head_at = untied ? place("lm_head.weight", {V, H}) : embed_at;

    weight_bytes_ = 0;
    std::vector<const TensorRef *> refs;
    for (const Piece & p : pieces) {
        const TensorRef & r = st.expect(p.name, p.shape);
        if ((r.dtype == "F8_E4M3") != (p.esize == 1))
            throw std::invalid_argument("tensor " + p.name + (p.esize == 1 ? " must be F8_E4M3 (config.json's quantization_config quantizes it), not " + r.dtype
                                                                           : ": F8_E4M3 needs an FP8 quantization_config in config.json and a linear layer"));
        refs.push_back(&r);
        weight_bytes_ += numel(p.shape) * p.esize;
    }
    // FP8: each linear matrix's per-output-channel scales, in the matrix's row order ([q;k;v] and [gate;up] too).
    std::vector<float> scales;
    struct ScaleOffsets { size_t qkv, o, gu, down; };
    std::vector<ScaleOffsets> so;
    if (c.fp8.on) {
        auto add = [&](const std::vector<std::pair<std::string, int64_t>> & parts) {
            const size_t at = scales.size();
            for (const auto & [prefix, out] : parts) {
                const std::vector<float> s = fp8_weight_scales(st, prefix, out, c.fp8);
                scales.insert(scales.end(), s.begin(), s.end());
            }
            return at;
        };
        for (int l = 0; l < c.num_layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            ScaleOffsets o{};
            o.qkv = add({{p + "self_attn.q_proj", QD}, {p + "self_attn.k_proj", KD}, {p + "self_attn.v_proj", KD}});
            o.o = add({{p + "self_attn.o_proj", H}});
            o.gu = add({{p + "mlp.gate_proj", I}, {p + "mlp.up_proj", I}});
            o.down = add({{p + "mlp.down_proj", H}});
            so.push_back(o);
        }
        weight_bytes_ += scales.size() * 4;
        scales_ = static_cast<float *>(nullptr);
        cuda_check(cudaMalloc(reinterpret_cast<void **>(&scales_), scales.size() * 4), "FP8 scales allocation");
        cuda_check(cudaMemcpy(scales_, scales.data(), scales.size() * 4, cudaMemcpyHostToDevice), "FP8 scales upload");
    }
    cuda_check(cudaMalloc(&weights_, total), "weights allocation");
    auto at = [&](size_t b) { return static_cast<void *>(static_cast<unsigned char *>(weights_) + b); };
    embed_ = at(embed_at);
    lm_head_ = at(head_at);
    final_norm_ = at(norm_at);
    for (size_t l = 0; l < lo.size(); ++l) {
        const LayerOffsets & o = lo[l];
        QkvPre pre;
        if (c.qkv_bias) pre.bias = at(o.bias);
        if (c.qk_norm) { pre.q_norm = at(o.q_norm); pre.k_norm = at(o.k_norm); }
        pre.eps = float(c.rms_norm_eps);
        Layer layer{at(o.in_norm), at(o.qkv), at(o.o), at(o.post), at(o.gu), at(o.down), pre, {}};
        if (c.fp8.on) layer.fp8 = {scales_ + so[l].qkv, scales_ + so[l].o, scales_ + so[l].gu, scales_ + so[l].down};
        layers_.push_back(layer);
    }

    // Two pinned staging buffers, alternating; each one's event says when its last copy has left it.
    constexpr size_t kStage = size_t(64) << 20;
    void * stage[2] = {nullptr, nullptr};
    cudaEvent_t freed[2] = {nullptr, nullptr};
    const char * want = dt_ == DType::BF16 ? "BF16" : "F16";
    uint64_t fp = hash_bytes(c.text.data(), c.text.size(), 0x7472746443ull);
    const auto t0 = std::chrono::steady_clock::now();
    size_t done = 0;
    int next_report = 25;
    try {
        for (int k = 0; k < 2; ++k) {
            cuda_check(cudaHostAlloc(&stage[k], kStage, cudaHostAllocDefault), "pinned staging buffer");
            cuda_check(cudaEventCreateWithFlags(&freed[k], cudaEventDisableTiming), "cudaEventCreate");
        }
        int k = 0;
        for (size_t pi = 0; pi < pieces.size(); ++pi) {
            const TensorRef & r = *refs[pi];
            const unsigned char * src = st.data(r);
            const size_t esize = r.dtype == "F32" ? 4 : r.dtype == "F8_E4M3" ? 1 : 2, n = (r.end - r.begin) / esize;
            fp = hash_bytes(pieces[pi].name.data(), pieces[pi].name.size(), fp);
            fp = hash_bytes(r.dtype.data(), r.dtype.size(), fp);
            // Identity, not integrity: the first and last 64 KiB of each tensor and every 16th MiB are hashed.
            const size_t bytes = r.end - r.begin, probe = std::min<size_t>(bytes, 65536);
            fp = hash_bytes(src, probe, fp);
            fp = hash_bytes(src + bytes - probe, probe, fp);
            for (size_t m = size_t(16) << 20; m + 4096 <= bytes; m += size_t(16) << 20) fp = hash_bytes(src + m, 4096, fp);
            const size_t dst_esize = pieces[pi].esize;
            for (size_t e0 = 0; e0 < n; e0 += kStage / 2) {
                const size_t ne = std::min(kStage / 2, n - e0);
                cuda_check(cudaEventSynchronize(freed[k]), "staging");
                uint16_t * s16 = static_cast<uint16_t *>(stage[k]);
                if (dst_esize == 1) {  // E4M3 as it is
                    std::memcpy(stage[k], src + e0, ne);
                } else if (r.dtype == want) {
                    std::memcpy(s16, src + e0 * 2, ne * 2);
                } else {
                    for (size_t e = 0; e < ne; ++e) {
                        float f;
                        if (esize == 4) std::memcpy(&f, src + (e0 + e) * 4, 4);
                        else {
                            uint16_t h;
                            std::memcpy(&h, src + (e0 + e) * 2, 2);
                            f = r.dtype == "BF16" ? bf16_to_f32(h) : f16_to_f32(h);
                        }
                        s16[e] = dt_ == DType::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
                    }
                }
                cuda_check(cudaMemcpyAsync(static_cast<unsigned char *>(weights_) + pieces[pi].dst + e0 * dst_esize, stage[k], ne * dst_esize,
                                           cudaMemcpyHostToDevice, stream_), "weights upload");
                cuda_check(cudaEventRecord(freed[k], stream_), "cudaEventRecord");
                k ^= 1;
                done += ne * dst_esize;
            }
            const int pct = int(100.0 * double(done) / double(weight_bytes_));
            if (pct >= next_report) {
                const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                std::fprintf(stderr, "trtd-cuda: weights %.2f / %.2f GB (%d%%), %.1f s\n", double(done) / 1e9,
                             double(weight_bytes_) / 1e9, pct, s);
                while (next_report <= pct) next_report += 25;
            }
        }
        cuda_check(cudaStreamSynchronize(stream_), "weights upload");
    } catch (...) {
        cudaStreamSynchronize(stream_);
        for (int k = 0; k < 2; ++k) {
            if (stage[k]) cudaFreeHost(stage[k]);
            if (freed[k]) cudaEventDestroy(freed[k]);
        }
        throw;
    }
    for (int k = 0; k < 2; ++k) {
        cudaFreeHost(stage[k]);
        cudaEventDestroy(freed[k]);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "trtd-cuda: loaded %.2f GB of %s%s weights to GPU %d in %.2f s (%.1f GB/s)\n", double(weight_bytes_) / 1e9,
                 c.fp8.on ? "fp8 (linear layers) + " : "", dt_ == DType::BF16 ? "bf16" : "fp16", ec_.device, s, double(weight_bytes_) / 1e9 / std::max(s, 1e-9));
    fingerprint_ = hex64(fp);
}

}  // namespace trtd::cuda
