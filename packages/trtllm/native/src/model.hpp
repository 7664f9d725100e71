// Llama model directory: config.json + safetensors (single file or sharded with an index), weights as fp32.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model_config.hpp"

namespace trtd {

struct LayerWeights {
    const float * input_norm;  // [hidden]
    const float * wqkv;        // [(heads + 2 kv_heads) * head_dim][hidden]: q, k, v projections stacked
    const float * bqkv;        // [(heads + 2 kv_heads) * head_dim]: their biases (Qwen2), or null
    const float * q_norm;      // [head_dim]: per-head RMSNorm of q and k before RoPE (Qwen3), or null
    const float * k_norm;
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


}  // namespace trtd
