// Llama model directory: config.json + safetensors (single file or sharded with an index), weights as fp32.
#pragma once
#include <cstdint>
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
    std::string torch_dtype;
};

struct LayerWeights {
    const float * input_norm;  // [hidden]
    const float * wqkv;        // [(heads + 2 kv_heads) * head_dim][hidden]: q, k, v projections stacked
    const float * wo;          // [hidden][heads * head_dim]
    const float * post_norm;   // [hidden]
    const float * wgate_up;    // [2 * intermediate][hidden]: gate then up
    const float * wdown;       // [hidden][intermediate]
};

struct Model {
    ModelConfig cfg;
    std::vector<std::vector<float>> storage;  // owns every weight array
    const float * embed = nullptr;            // [vocab][hidden]
    const float * lm_head = nullptr;          // [vocab][hidden] (== embed when tied)
    const float * final_norm = nullptr;       // [hidden]
    std::vector<LayerWeights> layers;
    std::vector<double> inv_freq;             // [head_dim / 2], Llama-3 scaling applied
    std::string fingerprint;                  // hex digest of config + weights
    uint64_t weight_bytes_fp32 = 0;           // bytes of distinct fp32 weights
};

// Loads and validates a model directory; throws std::runtime_error with a clear message.
void load_model(const std::string & dir, Model & out);

uint64_t hash_bytes(const void * data, size_t n, uint64_t seed);
std::string hex64(uint64_t v);

}  // namespace trtd
