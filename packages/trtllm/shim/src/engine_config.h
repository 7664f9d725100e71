// engine_config.h: what the shim needs to know about a TensorRT-LLM engine directory, read from the
// config.json that trtllm-build writes (pretrained_config + build_config), plus the Hugging Face config.json
// beside it for the EOS ids. Pure C++17; no TensorRT-LLM dependency, so it is tested on machines without it.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace trtd_shim
{

struct EngineConfigError : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

struct EngineInfo
{
    std::string engineDir;            // the folder the Executor loads (rank*.engine + config.json)
    std::string architecture;         // pretrained_config.architecture, e.g. "LlamaForCausalLM"
    int32_t vocabSize = 0;
    int32_t numLayers = 0;
    int32_t hiddenSize = 0;
    int32_t numHeads = 0;
    int32_t numKvHeads = 0;
    int32_t headDim = 0;
    int32_t maxSeqLen = 0;            // build_config.max_seq_len (prompt + generated)
    int32_t maxBatchSize = 0;         // build_config.max_batch_size (0 = unknown)
    int32_t maxNumTokens = 0;         // build_config.max_num_tokens (0 = unknown)
    int32_t tokensPerBlock = 0;       // KV tokens per block (0 = unknown until the first iteration stats)
    int32_t kvDtype = -1;             // trtd_kv_dtype, -1 if not representable (e.g. INT8 KV)
    int32_t kvElementBytes = 0;
    std::vector<int32_t> eosTokenIds; // from the HF config.json beside the engine, if any
    std::string modelFingerprint;     // hex; same for every engine built from the same model and KV dtype
};

// Finds the engine for model_dir: model_dir itself when it holds an engine config.json (one with
// "build_config"), else model_dir/trtllm_engine (the trtd convention: the HF model folder, with the tokenizer
// the apps need, holds its engine in a subfolder). Throws EngineConfigError naming the missing piece.
EngineInfo readEngineInfo(std::string const& modelDir);

// The parsing step of readEngineInfo, on file contents (hfConfigJson may be empty).
EngineInfo parseEngineInfo(std::string const& engineConfigJson, std::string const& hfConfigJson);

// 64-bit FNV-1a as 16 lowercase hex digits (fingerprints; not a security hash).
std::string fnv1aHex(std::string const& bytes);

} // namespace trtd_shim
