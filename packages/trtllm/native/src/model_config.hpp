// config.json and safetensors index of a model directory: one reader for every executor.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace trtd {

// The RoPE scaling of config.json, resolved as transformers resolves it (modeling_rope_utils: the older top-level
// rope_theta / rope_scaling, or transformers 5's rope_parameters; original_max_position_embeddings from the config's
// top level first, then the scaling dict, else max_position_embeddings).
struct RopeScaling {
    std::string type = "default";  // default, linear, dynamic, llama3, yarn
    double factor = 1;
    double low_freq_factor = 1, high_freq_factor = 4;  // llama3
    double original_max_position_embeddings = 0;       // llama3, yarn
    double beta_fast = 32, beta_slow = 1;              // yarn
    bool truncate = true;                              // yarn
    double attention_factor = 1;  // cos and sin are multiplied by it (yarn's mscale; 1 otherwise)
};

// FP8 weights: compressed-tensors "float-quantized" checkpoints (as published for Llama-3.1-8B FP8). Every linear
// layer of the decoder (q, k, v, o, gate, up, down) holds F8_E4M3 weights with a float scale per tensor or per
// output channel (weight = fp8 * scale); the embedding, the norms and lm_head keep the model dtype. The checkpoint's
// activation scheme is recorded (a static input_scale is not used: executors that quantize activations do it per
// token at run time, which is at least as close to the dequantized forward pass).
struct Fp8Weights {
    bool on = false;
    bool per_channel = false;        // weight_scale [out, 1]; else one scale ([1] or [])
    std::string activations;         // the checkpoint's input_activations strategy ("" when weight-only)
};

struct ModelConfig {
    std::string model_type = "llama";  // "llama", "qwen2" (biases on the q, k and v projections) or "qwen3"
    bool qkv_bias = false;
    bool qk_norm = false;  // qwen3: each q and k head RMS-normalized (q_norm, k_norm over head_dim) before RoPE
    int sliding_window = 0;  // mistral: a query sees the last sliding_window positions (itself included); 0: all
    int vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0;
    int num_heads = 0, num_kv_heads = 0, head_dim = 0, max_position_embeddings = 0;
    double rms_norm_eps = 1e-5, rope_theta = 10000;
    bool tie_word_embeddings = false;
    RopeScaling rope_scaling;
    Fp8Weights fp8;
    std::vector<int> eos_token_ids;
    std::string torch_dtype;  // "dtype" (transformers 5) or "torch_dtype"; "" when absent
    std::string text;         // config.json as read (part of the model fingerprint)
};

// Reads and validates dir/config.json. RoPE settings come from the older top-level layout (rope_theta,
// rope_scaling) or transformers 5's rope_parameters; rope types default, linear, dynamic, llama3 and yarn are read
// (dynamic equals default up to max_position_embeddings, which caps the context), any other type, any unknown key
// of the scaling dict and a partial_rotary_factor other than 1 are refused by name, never ignored. Throws
// std::runtime_error with a message naming the field.
ModelConfig read_model_config(const std::string & dir);

// RoPE inverse frequencies (HF convention: pairs i and i + head_dim/2), with the config's scaling applied; the
// cos/sin tables are then multiplied by rope_scaling.attention_factor.
std::vector<double> rope_inv_freq(const ModelConfig & c);

// The tensors of a model directory: model.safetensors, or the shards of model.safetensors.index.json,
// memory-mapped read-only until destruction.
struct TensorRef {
    int file = -1;
    std::string dtype;  // "BF16", "F16", "F32", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // absolute byte offsets in the file
};
class SafetensorsDir {
public:
    explicit SafetensorsDir(const std::string & dir);
    ~SafetensorsDir();
    SafetensorsDir(const SafetensorsDir &) = delete;
    SafetensorsDir & operator=(const SafetensorsDir &) = delete;
    const TensorRef * find(const std::string & name) const;
    // The tensor's bytes; throws when missing or when its shape differs from `shape`.
    const TensorRef & expect(const std::string & name, const std::vector<int64_t> & shape) const;
    const unsigned char * data(const TensorRef & t) const;
    const std::map<std::string, TensorRef> & tensors() const { return tensors_; }

private:
    struct Mapped { void * base; size_t size; };
    std::vector<Mapped> maps_;
    std::map<std::string, TensorRef> tensors_;
};

// BF16 and F16 bits to float, exactly (F16 subnormals, infinities and NaN included).
float bf16_to_f32(uint16_t h);
float f16_to_f32(uint16_t h);
// F8_E4M3 (OCP FP8, no infinities, 0x7f/0xff NaN) to float, exactly.
float fp8_e4m3_to_f32(uint8_t b);
// The decoder's linear layers, by tensor name prefix ("model.layers.N.self_attn.q_proj" ...): the ones an FP8
// checkpoint quantizes.
bool is_quantized_linear(const std::string & weight_name);
// The per-output-channel scales of an FP8 linear layer `prefix` ([out] floats; a per-tensor scale repeated), read
// from prefix + ".weight_scale" (F32, BF16 or F16; shape [out, 1] per channel, [1] or [] per tensor). Throws with the
// tensor's name when it is missing or its shape does not match the config's strategy.
std::vector<float> fp8_weight_scales(const SafetensorsDir & st, const std::string & prefix, int64_t out, const Fp8Weights & q);

uint64_t hash_bytes(const void * data, size_t n, uint64_t seed);
std::string hex64(uint64_t v);

}  // namespace trtd
