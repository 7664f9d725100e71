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

uint64_t hash_bytes(const void * data, size_t n, uint64_t seed);
std::string hex64(uint64_t v);

}  // namespace trtd
