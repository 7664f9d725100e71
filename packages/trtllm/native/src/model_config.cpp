#include "model_config.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <fstream>
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

// rope_scaling (older layout) or rope_parameters (transformers 5): {rope_type|type, factor, ...}, resolved as
// transformers' _compute_*_parameters do. top_original: the config's top-level original_max_position_embeddings
// (0 when absent), which transformers prefers to the dict's.
void read_rope(const Json & rs, const std::string & where, double max_pos, double top_original, ModelConfig & c) {
    static const char * known[] = {"rope_type", "type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor",
                                   "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow",
                                   "mscale", "mscale_all_dim", "truncate", "partial_rotary_factor"};
    for (const auto & kv : rs.object) {
        bool ok = false;
        for (const char * k : known) ok = ok || kv.first == k;
        if (!ok) fail("config.json: " + where + "." + kv.first + " is not supported (it would change the RoPE math)");
    }
    const Json * rt = rs.get("rope_type");
    if (!rt) rt = rs.get("type");
    const std::string type = rt && rt->is_string() ? rt->string : "default";
    auto num = [&](const char * key, bool required, double fallback) {
        const Json * v = rs.get(key);
        if (!v || v->is_null()) {
            if (required) fail("config.json: " + where + " of rope_type \"" + type + "\" needs \"" + key + "\"");
            return fallback;
        }
        if (!v->is_number() || !(v->number > 0)) fail("config.json: " + where + "." + key + " must be a positive number");
        return v->number;
    };
    RopeScaling r;
    r.type = type;
    const double original = top_original > 0 ? top_original : num("original_max_position_embeddings", false, max_pos);
    if (type == "default") {
    } else if (type == "linear" || type == "dynamic") {
        r.factor = num("factor", true, 1);
    } else if (type == "llama3") {
        r.factor = num("factor", true, 1);
        r.low_freq_factor = num("low_freq_factor", true, 1);
        r.high_freq_factor = num("high_freq_factor", true, 4);
        r.original_max_position_embeddings = original;
        if (r.high_freq_factor <= r.low_freq_factor) fail("config.json: " + where + ".high_freq_factor must be above low_freq_factor");
    } else if (type == "yarn") {
        r.original_max_position_embeddings = original;
        r.factor = num("factor", false, max_pos / original);  // transformers: null -> max_position_embeddings / original
        if (const Json * bf = rs.get("beta_fast"); bf && bf->is_number() && bf->number != 0) r.beta_fast = bf->number;  // `or 32`
        if (const Json * bs = rs.get("beta_slow"); bs && bs->is_number() && bs->number != 0) r.beta_slow = bs->number;
        if (const Json * t = rs.get("truncate"); t && t->type == Json::Type::Bool) r.truncate = t->boolean;
        auto mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
        const Json * af = rs.get("attention_factor");
        const Json * ms = rs.get("mscale");
        const Json * msa = rs.get("mscale_all_dim");
        if (af && af->is_number()) r.attention_factor = af->number;
        else if (ms && ms->is_number() && ms->number != 0 && msa && msa->is_number() && msa->number != 0)
            r.attention_factor = mscale(r.factor, ms->number) / mscale(r.factor, msa->number);
        else r.attention_factor = mscale(r.factor, 1);
    } else {
        fail("config.json: " + where + " rope_type \"" + type + "\" is not supported (default, linear, dynamic, llama3 and yarn are)");
    }
    if (const Json * pf = rs.get("partial_rotary_factor"); pf && pf->is_number() && pf->number != 1.0)
        fail("config.json: " + where + ".partial_rotary_factor is not supported");
    c.rope_scaling = r;
}

}  // namespace

// quantization_config: FP8 in the compressed-tensors "float-quantized" format is read; anything else that would
// change the math (another method or format, integer or grouped weights, a quantized KV cache, quantized layers
// beyond the decoder's linear ones) is refused by name.
void read_quantization(const Json & cfg, ModelConfig & c) {
    const Json * q = cfg.get("quantization_config");
    if (!q || q->is_null()) return;
    const std::string where = "config.json: quantization_config";
    if (!q->is_object()) fail(where + " must be an object");
    const Json * method = q->get("quant_method");
    const std::string m = method && method->is_string() ? method->string : "";
    if (m != "compressed-tensors")
        fail(where + ".quant_method \"" + m + "\" is not supported (FP8 weights in the compressed-tensors float-quantized format are)");
    const Json * format = q->get("format");
    if (!format || !format->is_string() || format->string != "float-quantized")
        fail(where + ".format \"" + (format && format->is_string() ? format->string : "") + "\" is not supported (\"float-quantized\" is)");
    if (const Json * kv = q->get("kv_cache_scheme"); kv && !kv->is_null()) fail(where + ".kv_cache_scheme (a quantized KV cache) is not supported");
    const Json * groups = q->get("config_groups");
    if (!groups || !groups->is_object() || groups->object.size() != 1) fail(where + ".config_groups must hold exactly one group");
    const auto & [gname, g] = *groups->object.begin();
    const std::string gw = where + ".config_groups." + gname;
    const Json * targets = g.get("targets");
    if (!targets || !targets->is_array() || targets->array.size() != 1 || !targets->array[0].is_string() || targets->array[0].string != "Linear")
        fail(gw + ".targets must be [\"Linear\"]");
    if (const Json * o = g.get("output_activations"); o && !o->is_null()) fail(gw + ".output_activations is not supported");
    auto check_float8 = [&](const Json & a, const std::string & w) {
        const Json * bits = a.get("num_bits");
        const Json * type = a.get("type");
        if (!bits || !bits->is_number() || bits->number != 8 || !type || !type->is_string() || type->string != "float")
            fail(w + ": only 8-bit float (FP8 E4M3) is supported");
        if (const Json * sym = a.get("symmetric"); sym && sym->type == Json::Type::Bool && !sym->boolean) fail(w + ".symmetric false is not supported");
        for (const char * key : {"group_size", "block_structure", "actorder"})
            if (const Json * v = a.get(key); v && !v->is_null()) fail(w + "." + key + " is not supported");
    };
    const Json * wts = g.get("weights");
    if (!wts || !wts->is_object()) fail(gw + ".weights is missing");
    check_float8(*wts, gw + ".weights");
    if (const Json * d = wts->get("dynamic"); d && d->type == Json::Type::Bool && d->boolean) fail(gw + ".weights.dynamic true is not supported");
    const Json * strategy = wts->get("strategy");
    const std::string st = strategy && strategy->is_string() ? strategy->string : "";
    if (st != "tensor" && st != "channel") fail(gw + ".weights.strategy \"" + st + "\" is not supported (\"tensor\" and \"channel\" are)");
    c.fp8.on = true;
    c.fp8.per_channel = st == "channel";
    if (const Json * a = g.get("input_activations"); a && !a->is_null()) {
        if (!a->is_object()) fail(gw + ".input_activations must be an object or null");
        check_float8(*a, gw + ".input_activations");
        const Json * as = a->get("strategy");
        c.fp8.activations = as && as->is_string() ? as->string : "";
        if (c.fp8.activations != "tensor" && c.fp8.activations != "token")
            fail(gw + ".input_activations.strategy \"" + c.fp8.activations + "\" is not supported (\"tensor\" and \"token\" are)");
    }
    // Only lm_head may stay unquantized (the embedding and norms are not Linear layers).
    bool lm_head_ignored = false;
    if (const Json * ig = q->get("ignore"); ig && ig->is_array())
        for (const Json & e : ig->array) {
            if (e.is_string() && (e.string == "lm_head" || e.string == "re:.*lm_head")) lm_head_ignored = true;
            else fail(where + ".ignore entry " + (e.is_string() ? "\"" + e.string + "\"" : "?") + " is not supported (only lm_head may stay unquantized)");
        }
    if (!lm_head_ignored) fail(where + ": a quantized lm_head is not supported (list it in ignore)");
}

ModelConfig read_model_config(const std::string & dir) {
    struct stat st;
    if (dir.empty() || stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) fail("model directory not found: " + dir);
    ModelConfig c;
    if (!read_text(dir + "/config.json", c.text)) fail("missing config.json in " + dir);
    Json cfg;
    try { cfg = parse_json(c.text); } catch (const std::exception & e) { fail(std::string("config.json: ") + e.what()); }
    if (!cfg.is_object()) fail("config.json: not an object");
    if (const Json * mt = cfg.get("model_type"); mt && mt->is_string()) {
        if (mt->string != "llama" && mt->string != "qwen2" && mt->string != "qwen3" && mt->string != "mistral")
            fail("config.json: model_type \"" + mt->string + "\" is not supported (\"llama\", \"qwen2\", \"qwen3\" and \"mistral\" are)");
        c.model_type = mt->string;
    }
    if (c.model_type == "mistral") {
        // Mistral: Llama's layer, every layer with sliding_window (absent: transformers' default 4096; null: none).
        const Json * sw = cfg.get("sliding_window");
        if (!sw) c.sliding_window = 4096;
        else if (!sw->is_null()) c.sliding_window = get_int(cfg, "sliding_window", 0, true);
        if (sw && !sw->is_null() && c.sliding_window < 1) fail("config.json: \"sliding_window\" must be a positive integer or null");
        if (const Json * lt = cfg.get("layer_types"); lt && lt->is_array())
            fail("config.json: layer_types (alternating attention) is not supported for mistral");
    }
    if (c.model_type == "qwen2" || c.model_type == "qwen3") {
        // Qwen2: Llama's layer with biases on q, k and v; Qwen3: no biases (attention_bias false), q and k
        // RMS-normalized per head. Their sliding window (use_sliding_window, or a "sliding_attention" entry in
        // layer_types) changes which keys a query sees: refused, not ignored.
        c.qkv_bias = c.model_type == "qwen2";
        c.qk_norm = c.model_type == "qwen3";
        if (const Json * sw = cfg.get("use_sliding_window"); sw && sw->type == Json::Type::Bool && sw->boolean)
            fail("config.json: \"use_sliding_window\": true is not supported");
        if (const Json * lt = cfg.get("layer_types"); lt && lt->is_array())
            for (const Json & t : lt->array)
                if (!t.is_string() || t.string != "full_attention")
                    fail("config.json: layer_types other than \"full_attention\" are not supported");
    }
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
    if (const Json * d = cfg.get("dtype"); d && d->is_string()) c.torch_dtype = d->string;
    else if (const Json * d2 = cfg.get("torch_dtype"); d2 && d2->is_string()) c.torch_dtype = d2->string;
    if (const Json * e = cfg.get("eos_token_id"); e) {
        if (e->is_number()) c.eos_token_ids.push_back(int(e->number));
        else if (e->is_array())
            for (const Json & x : e->array) if (x.is_number()) c.eos_token_ids.push_back(int(x.number));
    }
    if (const Json * pf = cfg.get("partial_rotary_factor"); pf && pf->is_number() && pf->number != 1.0)
        fail("config.json: \"partial_rotary_factor\" is not supported");
    const double top_original = get_num(cfg, "original_max_position_embeddings", 0);
    if (const Json * rs = cfg.get("rope_scaling"); rs && rs->is_object())
        read_rope(*rs, "rope_scaling", c.max_position_embeddings, top_original, c);
    if (const Json * rp = cfg.get("rope_parameters"); rp && rp->is_object()) {  // transformers 5: takes precedence
        c.rope_theta = get_num(*rp, "rope_theta", c.rope_theta);
        read_rope(*rp, "rope_parameters", c.max_position_embeddings, top_original, c);
    }
    if (!(c.rope_theta > 1)) fail("config.json: rope_theta must be above 1");
    read_quantization(cfg, c);
    for (const char * key : {"attention_bias", "mlp_bias"})
        if (const Json * b = cfg.get(key); b && b->type == Json::Type::Bool && b->boolean)
            fail(std::string("config.json: \"") + key + "\": true is not supported");
    if (c.vocab_size < 1 || c.hidden_size < 1 || c.intermediate_size < 1 || c.num_layers < 1 || c.num_heads < 1 ||
        c.num_kv_heads < 1 || c.head_dim < 2 || c.head_dim % 2 || c.num_heads % c.num_kv_heads ||
        c.max_position_embeddings < 2)
        fail("config.json: inconsistent dimensions");
    return c;
}

std::vector<double> rope_inv_freq(const ModelConfig & c) {
    const int D = c.head_dim, half = D / 2;
    std::vector<double> inv(static_cast<size_t>(half));
    const RopeScaling & rs = c.rope_scaling;
    const double base = c.rope_theta;
    for (int i = 0; i < half; ++i) inv[size_t(i)] = 1.0 / std::pow(base, double(2 * i) / double(D));
    if (rs.type == "linear") {
        for (double & f : inv) f /= rs.factor;
    } else if (rs.type == "llama3") {
        const double low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor;
        const double high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor;
        for (double & f : inv) {
            const double wavelen = 2 * M_PI / f;
            if (wavelen > low_wavelen) f = f / rs.factor;
            else if (wavelen >= high_wavelen) {
                const double smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) /
                                      (rs.high_freq_factor - rs.low_freq_factor);
                f = (1 - smooth) * f / rs.factor + smooth * f;
            }
        }
    } else if (rs.type == "yarn") {
        // Dimensions rotating fewer than beta_slow times over the original context are interpolated (divided by
        // factor), more than beta_fast times extrapolated (kept), with a linear ramp between (transformers' yarn).
        auto correction_dim = [&](double rotations) {
            return double(D) * std::log(rs.original_max_position_embeddings / (rotations * 2 * M_PI)) / (2 * std::log(base));
        };
        double low = correction_dim(rs.beta_fast), high = correction_dim(rs.beta_slow);
        if (rs.truncate) { low = std::floor(low); high = std::ceil(high); }
        low = std::max(low, 0.0);
        high = std::min(high, double(D - 1));
        if (low == high) high += 0.001;
        for (int i = 0; i < half; ++i) {
            const double ramp = std::min(1.0, std::max(0.0, (double(i) - low) / (high - low)));
            const double extrapolation = 1 - ramp;
            const double f = inv[size_t(i)];
            inv[size_t(i)] = (f / rs.factor) * (1 - extrapolation) + f * extrapolation;
        }
    }  // default and dynamic (dynamic differs from default only past max_position_embeddings, the context's cap)
    return inv;
}

SafetensorsDir::SafetensorsDir(const std::string & dir) {
    std::vector<std::string> files;
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
            if (!file_ids.count(kv.second.string)) {
                file_ids.emplace(kv.second.string, int(files.size()));
                files.push_back(kv.second.string);
            }
        }
    } else {
        files.push_back("model.safetensors");
    }
    try {
        for (size_t fi = 0; fi < files.size(); ++fi) {
            const std::string path = dir + "/" + files[fi];
            const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) fail("cannot open " + path);
            struct stat fst;
            if (fstat(fd, &fst) != 0 || fst.st_size < 8) { close(fd); fail(path + ": not a safetensors file (too short)"); }
            Mapped m{mmap(nullptr, size_t(fst.st_size), PROT_READ, MAP_PRIVATE, fd, 0), size_t(fst.st_size)};
            close(fd);
            if (m.base == MAP_FAILED) fail("cannot map " + path);
            maps_.push_back(m);
            const unsigned char * b = static_cast<const unsigned char *>(m.base);
            uint64_t hlen = 0;
            for (int k = 7; k >= 0; --k) hlen = (hlen << 8) | b[k];
            if (hlen == 0 || hlen > m.size - 8 || hlen > (100u << 20)) fail(path + ": bad safetensors header length");
            Json header;
            try { header = parse_json(std::string(reinterpret_cast<const char *>(b + 8), size_t(hlen))); }
            catch (const std::exception & e) { fail(path + ": header: " + e.what()); }
            if (!header.is_object()) fail(path + ": header is not an object");
            const uint64_t data_start = 8 + hlen;
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
                if (r.end < r.begin || r.end > m.size) fail(path + ": data offsets out of range for " + kv.first);
                tensors_[kv.first] = r;
            }
        }
    } catch (...) {
        for (const Mapped & m : maps_) munmap(m.base, m.size);
        throw;
    }
}

SafetensorsDir::~SafetensorsDir() {
    for (const Mapped & m : maps_) munmap(m.base, m.size);
}

const TensorRef * SafetensorsDir::find(const std::string & name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

const TensorRef & SafetensorsDir::expect(const std::string & name, const std::vector<int64_t> & shape) const {
    const TensorRef * r = find(name);
    if (!r) fail("missing tensor " + name);
    if (r->shape != shape) {
        std::string want, got;
        for (auto d : shape) want += std::to_string(d) + ",";
        for (auto d : r->shape) got += std::to_string(d) + ",";
        fail("tensor " + name + " has shape [" + got + "], expected [" + want + "]");
    }
    size_t n = 1;
    for (auto d : shape) n *= size_t(d);
    const size_t esize = r->dtype == "F32" ? 4 : (r->dtype == "BF16" || r->dtype == "F16") ? 2 : r->dtype == "F8_E4M3" ? 1 : 0;
    if (!esize) fail("tensor " + name + ": dtype " + r->dtype + " is not supported (F32, F16, BF16, F8_E4M3)");
    if (r->end - r->begin != n * esize) fail("tensor " + name + ": byte size does not match its shape");
    return *r;
}

const unsigned char * SafetensorsDir::data(const TensorRef & t) const {
    return static_cast<const unsigned char *>(maps_[size_t(t.file)].base) + t.begin;
}

float bf16_to_f32(uint16_t h) {
    const uint32_t u = uint32_t(h) << 16;
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

float fp8_e4m3_to_f32(uint8_t b) {
    const int sign = b >> 7, exp = (b >> 3) & 15, man = b & 7;
    float v;
    if (exp == 15 && man == 7) v = NAN;
    else if (exp == 0) v = std::ldexp(float(man), -9);  // subnormal: man/8 * 2^-6
    else v = std::ldexp(1.0f + float(man) / 8.0f, exp - 7);
    return sign ? -v : v;
}

bool is_quantized_linear(const std::string & name) {
    if (name.rfind("model.layers.", 0) != 0) return false;
    for (const char * p : {".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight", ".self_attn.o_proj.weight",
                           ".mlp.gate_proj.weight", ".mlp.up_proj.weight", ".mlp.down_proj.weight"}) {
        const size_t n = std::strlen(p);
        if (name.size() > n && name.compare(name.size() - n, n, p) == 0) return true;
    }
    return false;
}

std::vector<float> fp8_weight_scales(const SafetensorsDir & st, const std::string & prefix, int64_t out, const Fp8Weights & q) {
    const std::string name = prefix + ".weight_scale";
    const TensorRef * r = st.find(name);
    if (!r) fail("missing tensor " + name + " (an FP8 checkpoint's weight scale)");
    size_t n = 1;
    for (auto d : r->shape) n *= size_t(d);
    const bool channel_shape = r->shape.size() == 2 && r->shape[0] == out && r->shape[1] == 1;
    const bool tensor_shape = n == 1 && r->shape.size() <= 1;
    if (q.per_channel ? !channel_shape : !tensor_shape)
        fail("tensor " + name + " has the wrong shape for the config's weights.strategy \"" + (q.per_channel ? "channel" : "tensor") + "\"");
    const size_t esize = r->dtype == "F32" ? 4 : (r->dtype == "BF16" || r->dtype == "F16") ? 2 : 0;
    if (!esize || r->end - r->begin != n * esize) fail("tensor " + name + ": dtype " + r->dtype + " is not supported (F32, F16, BF16)");
    const unsigned char * src = st.data(*r);
    std::vector<float> s(n);
    for (size_t i = 0; i < n; ++i) {
        if (esize == 4) { std::memcpy(&s[i], src + 4 * i, 4); continue; }
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        s[i] = r->dtype == "BF16" ? bf16_to_f32(h) : f16_to_f32(h);
    }
    for (float x : s)
        if (!(x > 0) || !std::isfinite(x)) fail("tensor " + name + ": scales must be positive and finite");
    if (!q.per_channel) s.assign(size_t(out), s[0]);
    return s;
}

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

}  // namespace trtd
