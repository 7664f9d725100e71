#include "model.hpp"

#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.hpp"

namespace trtd {

namespace {

[[noreturn]] void fail(const std::string & msg) { throw std::runtime_error(msg); }

bool read_text(const std::string & path, std::string & out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    std::ostringstream ss;
    ss << f.rdbuf();
    out = ss.str();
    return true;
}

int get_int(const Json & cfg, const char * key, int fallback, bool required) {
    const Json * v = cfg.get(key);
    if (!v || v->is_null()) {
        if (required) fail(std::string("config.json: missing \"") + key + "\"");
        return fallback;
    }
    if (!v->is_number() || v->number != std::floor(v->number) || v->number < 0 || v->number > 1e9)
        fail(std::string("config.json: \"") + key + "\" must be a non-negative integer");
    return int(v->number);
}

double get_num(const Json & cfg, const char * key, double fallback) {
    const Json * v = cfg.get(key);
    if (!v || v->is_null()) return fallback;
    if (!v->is_number()) fail(std::string("config.json: \"") + key + "\" must be a number");
    return v->number;
}

// One memory-mapped safetensors file.
struct Mapped {
    void * base = MAP_FAILED;
    size_t size = 0;
    ~Mapped() { if (base != MAP_FAILED) munmap(base, size); }
};

struct TensorRef {
    int file = -1;
    std::string dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // absolute byte offsets in the file
};

float bf16_to_f32(uint16_t h) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = uint32_t(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else {  // subnormal: normalize
            int e = -1;
            do { man <<= 1; ++e; } while (!(man & 0x400));
            u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3FF) << 13;
        }
    } else if (exp == 31) u = sign | 0x7F800000u | man << 13;
    else u = sign | (exp + 127 - 15) << 23 | man << 13;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

}  // namespace

uint64_t hash_bytes(const void * data, size_t n, uint64_t h) {
    // 64-bit multiply-xor over 8-byte words; identity check, not cryptographic.
    const unsigned char * p = static_cast<const unsigned char *>(data);
    const uint64_t m = 0x9E3779B97F4A7C15ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = (h ^ w) * m;
        h ^= h >> 29;
    }
    for (; i < n; ++i) { h = (h ^ p[i]) * m; h ^= h >> 29; }
    h ^= n;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    return h;
}

std::string hex64(uint64_t v) {
    static const char * d = "0123456789abcdef";
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i) { s[size_t(i)] = d[v & 15]; v >>= 4; }
    return s;
}

void load_model(const std::string & dir, Model & m) {
    struct stat st;
    if (dir.empty() || stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        fail("model directory not found: " + dir);
    std::string cfg_text;
    if (!read_text(dir + "/config.json", cfg_text)) fail("missing config.json in " + dir);
    Json cfg;
    try { cfg = parse_json(cfg_text); } catch (const std::exception & e) { fail(std::string("config.json: ") + e.what()); }
    if (!cfg.is_object()) fail("config.json: not an object");
    if (const Json * mt = cfg.get("model_type"); mt && mt->is_string() && mt->string != "llama")
        fail("config.json: model_type \"" + mt->string + "\" is not supported (only \"llama\")");

    ModelConfig & c = m.cfg;
    c.vocab_size = get_int(cfg, "vocab_size", 0, true);
    c.hidden_size = get_int(cfg, "hidden_size", 0, true);
    c.intermediate_size = get_int(cfg, "intermediate_size", 0, true);
    c.num_layers = get_int(cfg, "num_hidden_layers", 0, true);
    c.num_heads = get_int(cfg, "num_attention_heads", 0, true);
    c.num_kv_heads = get_int(cfg, "num_key_value_heads", c.num_heads, false);
    c.head_dim = get_int(cfg, "head_dim", c.num_heads ? c.hidden_size / c.num_heads : 0, false);
    c.max_position_embeddings = get_int(cfg, "max_position_embeddings", 2048, false);
    c.rms_norm_eps = get_num(cfg, "rms_norm_eps", 1e-5);
    c.rope_theta = get_num(cfg, "rope_theta", 10000);
    if (const Json * t = cfg.get("tie_word_embeddings"); t && t->type == Json::Type::Bool) c.tie_word_embeddings = t->boolean;
    if (const Json * d = cfg.get("torch_dtype"); d && d->is_string()) c.torch_dtype = d->string;
    if (const Json * e = cfg.get("eos_token_id"); e) {
        if (e->is_number()) c.eos_token_ids.push_back(int(e->number));
        else if (e->is_array())
            for (const Json & x : e->array) if (x.is_number()) c.eos_token_ids.push_back(int(x.number));
    }
    if (const Json * rs = cfg.get("rope_scaling"); rs && rs->is_object()) {
        const Json * rt = rs->get("rope_type");
        if (!rt) rt = rs->get("type");
        if (rt && rt->is_string()) {
            if (rt->string == "llama3") {
                c.rope_scaling.llama3 = true;
                c.rope_scaling.factor = get_num(*rs, "factor", 8);
                c.rope_scaling.low_freq_factor = get_num(*rs, "low_freq_factor", 1);
                c.rope_scaling.high_freq_factor = get_num(*rs, "high_freq_factor", 4);
                c.rope_scaling.original_max_position_embeddings = get_num(*rs, "original_max_position_embeddings", 8192);
            } else if (rt->string != "default") {
                fail("config.json: rope_scaling type \"" + rt->string + "\" is not supported");
            }
        }
    }
    if (c.vocab_size < 1 || c.hidden_size < 1 || c.intermediate_size < 1 || c.num_layers < 1 || c.num_heads < 1 ||
        c.num_kv_heads < 1 || c.head_dim < 2 || c.head_dim % 2 || c.num_heads % c.num_kv_heads ||
        c.max_position_embeddings < 2)
        fail("config.json: inconsistent dimensions");

    // Tensor index: single model.safetensors or shards listed in model.safetensors.index.json.
    std::vector<std::string> files;
    std::map<std::string, int> file_of_tensor_hint;
    std::string idx_text;
    if (read_text(dir + "/model.safetensors.index.json", idx_text)) {
        Json idx;
        try { idx = parse_json(idx_text); } catch (const std::exception & e) { fail(std::string("model.safetensors.index.json: ") + e.what()); }
        const Json * wm = idx.get("weight_map");
        if (!wm || !wm->is_object()) fail("model.safetensors.index.json: missing weight_map");
        std::map<std::string, int> file_ids;
        for (const auto & kv : wm->object) {
            if (!kv.second.is_string() || kv.second.string.find('/') != std::string::npos)
                fail("model.safetensors.index.json: bad file name for " + kv.first);
            auto it = file_ids.find(kv.second.string);
            if (it == file_ids.end()) {
                it = file_ids.emplace(kv.second.string, int(files.size())).first;
                files.push_back(kv.second.string);
            }
        }
    } else {
        files.push_back("model.safetensors");
    }

    std::vector<Mapped> maps(files.size());
    std::map<std::string, TensorRef> tensors;
    for (size_t fi = 0; fi < files.size(); ++fi) {
        std::string path = dir + "/" + files[fi];
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail("cannot open " + path);
        struct stat fst;
        if (fstat(fd, &fst) != 0 || fst.st_size < 8) { close(fd); fail(path + ": not a safetensors file (too short)"); }
        maps[fi].size = size_t(fst.st_size);
        maps[fi].base = mmap(nullptr, maps[fi].size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (maps[fi].base == MAP_FAILED) fail("cannot map " + path);
        const unsigned char * b = static_cast<const unsigned char *>(maps[fi].base);
        uint64_t hlen = 0;
        for (int k = 7; k >= 0; --k) hlen = (hlen << 8) | b[k];
        if (hlen == 0 || hlen > maps[fi].size - 8 || hlen > (100u << 20)) fail(path + ": bad safetensors header length");
        Json header;
        try { header = parse_json(std::string(reinterpret_cast<const char *>(b + 8), size_t(hlen))); }
        catch (const std::exception & e) { fail(path + ": header: " + e.what()); }
        if (!header.is_object()) fail(path + ": header is not an object");
        uint64_t data_start = 8 + hlen;
        for (const auto & kv : header.object) {
            if (kv.first == "__metadata__") continue;
            const Json & t = kv.second;
            const Json * dt = t.get("dtype");
            const Json * sh = t.get("shape");
            const Json * off = t.get("data_offsets");
            if (!dt || !dt->is_string() || !sh || !sh->is_array() || !off || !off->is_array() || off->array.size() != 2)
                fail(path + ": malformed entry for " + kv.first);
            TensorRef r;
            r.file = int(fi);
            r.dtype = dt->string;
            for (const Json & d : sh->array) r.shape.push_back(int64_t(d.number));
            r.begin = data_start + uint64_t(off->array[0].number);
            r.end = data_start + uint64_t(off->array[1].number);
            if (r.end < r.begin || r.end > maps[fi].size) fail(path + ": data offsets out of range for " + kv.first);
            tensors[kv.first] = r;
        }
    }

    uint64_t fp = hash_bytes(cfg_text.data(), cfg_text.size(), 0x7472746431ull);
    auto load = [&](const std::string & name, std::vector<int64_t> shape) -> std::vector<float> {
        auto it = tensors.find(name);
        if (it == tensors.end()) fail("missing tensor " + name);
        const TensorRef & r = it->second;
        if (r.shape != shape) {
            std::string want, got;
            for (auto d : shape) want += std::to_string(d) + ",";
            for (auto d : r.shape) got += std::to_string(d) + ",";
            fail("tensor " + name + " has shape [" + got + "], expected [" + want + "]");
        }
        size_t n = 1;
        for (auto d : shape) n *= size_t(d);
        size_t esize = r.dtype == "F32" ? 4 : (r.dtype == "BF16" || r.dtype == "F16") ? 2 : 0;
        if (!esize) fail("tensor " + name + ": dtype " + r.dtype + " is not supported (F32, F16, BF16)");
        if (r.end - r.begin != n * esize) fail("tensor " + name + ": byte size does not match its shape");
        const unsigned char * src = static_cast<const unsigned char *>(maps[size_t(r.file)].base) + r.begin;
        std::vector<float> out(n);
        if (esize == 4) std::memcpy(out.data(), src, n * 4);
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
    m.storage.reserve(size_t(c.num_layers) * 6 + 4);
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
    if (!c.tie_word_embeddings && tensors.count("lm_head.weight")) m.lm_head = keep(load("lm_head.weight", {c.vocab_size, H}));
    else if (!c.tie_word_embeddings) fail("missing tensor lm_head.weight (tie_word_embeddings is false)");
    else m.lm_head = m.embed;
    m.fingerprint = hex64(fp);

    // RoPE inverse frequencies (HF convention), with Llama-3 frequency-dependent scaling.
    m.inv_freq.resize(size_t(D / 2));
    const RopeScaling & rs = c.rope_scaling;
    for (int64_t i = 0; i < D / 2; ++i) {
        double f = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(D));
        if (rs.llama3) {
            const double low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor;
            const double high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor;
            const double wavelen = 2 * M_PI / f;
            if (wavelen > low_wavelen) f = f / rs.factor;
            else if (wavelen >= high_wavelen) {
                const double smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) /
                                      (rs.high_freq_factor - rs.low_freq_factor);
                f = (1 - smooth) * f / rs.factor + smooth * f;
            }
        }
        m.inv_freq[size_t(i)] = f;
    }
}

}  // namespace trtd
