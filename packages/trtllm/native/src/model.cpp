#include "model.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>

namespace trtd {

namespace {

[[noreturn]] void fail(const std::string & msg) { throw std::runtime_error(msg); }

}  // namespace

void load_model(const std::string & dir, Model & m) {
    m.cfg = read_model_config(dir);
    const ModelConfig & c = m.cfg;
    const SafetensorsDir st(dir);
    const std::string & cfg_text = c.text;
    uint64_t fp = hash_bytes(cfg_text.data(), cfg_text.size(), 0x7472746431ull);
    auto load = [&](const std::string & name, std::vector<int64_t> shape) -> std::vector<float> {
        const TensorRef & r = st.expect(name, shape);
        size_t n = 1;
        for (auto d : shape) n *= size_t(d);
        const size_t esize = r.dtype == "F32" ? 4 : r.dtype == "F8_E4M3" ? 1 : 2;
        const unsigned char * src = st.data(r);
        std::vector<float> out(n);
        const bool quantized = c.fp8.on && is_quantized_linear(name);
        if (quantized != (esize == 1))
            fail("tensor " + name + (quantized ? " must be F8_E4M3 (config.json's quantization_config quantizes it), not " + r.dtype
                                               : ": F8_E4M3 needs an FP8 quantization_config in config.json and a linear layer"));
        if (quantized) {  // dequantized once at load: the reference computes the dequantized forward pass
            const std::vector<float> scale = fp8_weight_scales(st, name.substr(0, name.size() - 7), shape[0], c.fp8);
            const size_t cols = size_t(shape[1]);
            for (size_t k = 0; k < n; ++k) out[k] = fp8_e4m3_to_f32(src[k]) * scale[k / cols];
        } else if (esize == 4) std::memcpy(out.data(), src, n * 4);
        else {
            bool bf = r.dtype == "BF16";
            for (size_t k = 0; k < n; ++k) {
                uint16_t h;
                std::memcpy(&h, src + 2 * k, 2);
                out[k] = bf ? bf16_to_f32(h) : f16_to_f32(h);
            }
        }
        fp = hash_bytes(name.data(), name.size(), fp);
        fp = hash_bytes(out.data(), n * 4, fp);
        return out;
    };
    auto keep = [&](std::vector<float> && v) -> const float * {
        m.weight_bytes_fp32 += v.size() * 4;
        m.storage.push_back(std::move(v));
        return m.storage.back().data();
    };

    const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
    const int64_t QD = int64_t(c.num_heads) * D, KD = int64_t(c.num_kv_heads) * D;
    m.storage.reserve(size_t(c.num_layers) * 9 + 4);
    m.embed = keep(load("model.embed_tokens.weight", {c.vocab_size, H}));
    for (int l = 0; l < c.num_layers; ++l) {
        std::string p = "model.layers." + std::to_string(l) + ".";
        LayerWeights w;
        w.input_norm = keep(load(p + "input_layernorm.weight", {H}));
        auto q = load(p + "self_attn.q_proj.weight", {QD, H});
        auto k = load(p + "self_attn.k_proj.weight", {KD, H});
        auto v = load(p + "self_attn.v_proj.weight", {KD, H});
        q.insert(q.end(), k.begin(), k.end());
        q.insert(q.end(), v.begin(), v.end());
        w.wqkv = keep(std::move(q));
        w.bqkv = nullptr;
        w.q_norm = w.k_norm = nullptr;
        if (c.qk_norm) {
            w.q_norm = keep(load(p + "self_attn.q_norm.weight", {D}));
            w.k_norm = keep(load(p + "self_attn.k_norm.weight", {D}));
        }
        if (c.qkv_bias) {
            auto bq = load(p + "self_attn.q_proj.bias", {QD});
            auto bk = load(p + "self_attn.k_proj.bias", {KD});
            auto bv = load(p + "self_attn.v_proj.bias", {KD});
            bq.insert(bq.end(), bk.begin(), bk.end());
            bq.insert(bq.end(), bv.begin(), bv.end());
            w.bqkv = keep(std::move(bq));
        }
        w.wo = keep(load(p + "self_attn.o_proj.weight", {H, QD}));
        w.post_norm = keep(load(p + "post_attention_layernorm.weight", {H}));
        auto g = load(p + "mlp.gate_proj.weight", {I, H});
        auto u = load(p + "mlp.up_proj.weight", {I, H});
        g.insert(g.end(), u.begin(), u.end());
        w.wgate_up = keep(std::move(g));
        w.wdown = keep(load(p + "mlp.down_proj.weight", {H, I}));
        m.layers.push_back(w);
    }
    m.final_norm = keep(load("model.norm.weight", {H}));
    if (!c.tie_word_embeddings && st.find("lm_head.weight")) m.lm_head = keep(load("lm_head.weight", {c.vocab_size, H}));
    else if (!c.tie_word_embeddings) fail("missing tensor lm_head.weight (tie_word_embeddings is false)");
    else m.lm_head = m.embed;
    m.fingerprint = hex64(fp);

    m.inv_freq = rope_inv_freq(c);
}

}  // namespace trtd
