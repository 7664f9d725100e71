// config.json and safetensors index of a model directory: one reader for every executor.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace trtd {

struct RopeScaling {
    bool llama3 = false;
    double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
    double original_max_position_embeddings = 8192;
};

struct ModelConfig {
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
// rope_scaling) or transformers 5's rope_parameters; rope types other than default and llama3 are refused by
// name, never ignored. Throws std::runtime_error with a message naming the field.
ModelConfig read_model_config(const std::string & dir);

// RoPE inverse frequencies (HF convention: pairs i and i + head_dim/2), llama3 scaling applied.
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
