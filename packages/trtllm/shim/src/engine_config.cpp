#include "engine_config.h"

#include "mini_json.h"
#include "trtd_executor.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace trtd_shim
{
namespace
{

namespace fs = std::filesystem;

std::string readFile(fs::path const& p)
{
    std::ifstream in(p, std::ios::binary);
    if (!in)
    {
        throw EngineConfigError("cannot read " + p.string());
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

int32_t intAt(json::Value const& root, std::initializer_list<char const*> path, bool required, char const* name)
{
    json::Value const* v = root.path(path);
    if (v == nullptr || v->kind == json::Value::Kind::Null)
    {
        if (required)
        {
            throw EngineConfigError(std::string("engine config.json lacks ") + name);
        }
        return 0;
    }
    if (!v->isNumber() || v->number < 0 || v->number > 2147483647.0 || std::floor(v->number) != v->number)
    {
        throw EngineConfigError(std::string("engine config.json: ") + name + " is not a non-negative integer");
    }
    return static_cast<int32_t>(v->number);
}

std::string stringAt(json::Value const& root, std::initializer_list<char const*> path)
{
    json::Value const* v = root.path(path);
    return (v != nullptr && v->isString()) ? v->string : std::string();
}

} // namespace

std::string fnv1aHex(std::string const& bytes)
{
    uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : bytes)
    {
        h ^= c;
        h *= 1099511628211ULL;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

EngineInfo parseEngineInfo(std::string const& engineConfigJson, std::string const& hfConfigJson)
{
    json::Value root;
    try
    {
        root = json::parse(engineConfigJson);
    }
    catch (std::exception const& e)
    {
        throw EngineConfigError(std::string("engine config.json: ") + e.what());
    }
    if (root.get("pretrained_config") == nullptr || root.get("build_config") == nullptr)
    {
        throw EngineConfigError(
            "engine config.json has no pretrained_config/build_config (is this a trtllm-build output folder?)");
    }

    EngineInfo info;
    info.architecture = stringAt(root, {"pretrained_config", "architecture"});
    info.vocabSize = intAt(root, {"pretrained_config", "vocab_size"}, true, "pretrained_config.vocab_size");
    info.numLayers = intAt(root, {"pretrained_config", "num_hidden_layers"}, true, "pretrained_config.num_hidden_layers");
    info.hiddenSize = intAt(root, {"pretrained_config", "hidden_size"}, true, "pretrained_config.hidden_size");
    info.numHeads
        = intAt(root, {"pretrained_config", "num_attention_heads"}, true, "pretrained_config.num_attention_heads");
    info.numKvHeads = intAt(root, {"pretrained_config", "num_key_value_heads"}, false, "num_key_value_heads");
    if (info.numKvHeads == 0)
    {
        info.numKvHeads = info.numHeads; // MHA checkpoints may omit it
    }
    info.headDim = intAt(root, {"pretrained_config", "head_size"}, false, "head_size");
    if (info.headDim == 0)
    {
        if (info.numHeads == 0 || info.hiddenSize % info.numHeads != 0)
        {
            throw EngineConfigError("engine config.json: no head_size and hidden_size % num_attention_heads != 0");
        }
        info.headDim = info.hiddenSize / info.numHeads;
    }
    if (info.vocabSize < 1 || info.numLayers < 1 || info.numHeads < 1 || info.numKvHeads < 1)
    {
        throw EngineConfigError("engine config.json: vocab_size, layers and heads must be >= 1");
    }

    info.maxSeqLen = intAt(root, {"build_config", "max_seq_len"}, false, "build_config.max_seq_len");
    if (info.maxSeqLen == 0)
    {
        info.maxSeqLen = intAt(root, {"pretrained_config", "max_position_embeddings"}, true,
            "build_config.max_seq_len or pretrained_config.max_position_embeddings");
    }
    info.maxBatchSize = intAt(root, {"build_config", "max_batch_size"}, false, "max_batch_size");
    info.maxNumTokens = intAt(root, {"build_config", "max_num_tokens"}, false, "max_num_tokens");
    // The key moved between releases; try the places it has lived.
    info.tokensPerBlock = intAt(root, {"build_config", "plugin_config", "tokens_per_block"}, false, "tokens_per_block");
    if (info.tokensPerBlock == 0)
    {
        info.tokensPerBlock = intAt(root, {"build_config", "tokens_per_block"}, false, "tokens_per_block");
    }

    std::string const dtype = stringAt(root, {"pretrained_config", "dtype"});
    std::string const kvQuant = stringAt(root, {"pretrained_config", "quantization", "kv_cache_quant_algo"});
    if (kvQuant == "FP8")
    {
        info.kvDtype = TRTD_KV_FP8_E4M3;
        info.kvElementBytes = 1;
    }
    else if (!kvQuant.empty())
    {
        info.kvDtype = -1; // INT8 and others have no trtd_kv_dtype; the layout is informational here
        info.kvElementBytes = 1;
    }
    else if (dtype == "float16")
    {
        info.kvDtype = TRTD_KV_FLOAT16;
        info.kvElementBytes = 2;
    }
    else if (dtype == "bfloat16")
    {
        info.kvDtype = TRTD_KV_BFLOAT16;
        info.kvElementBytes = 2;
    }
    else if (dtype == "float32")
    {
        info.kvDtype = TRTD_KV_FLOAT32;
        info.kvElementBytes = 4;
    }
    else
    {
        throw EngineConfigError("engine config.json: unknown pretrained_config.dtype '" + dtype + "'");
    }

    if (!hfConfigJson.empty())
    {
        json::Value hf;
        try
        {
            hf = json::parse(hfConfigJson);
        }
        catch (std::exception const& e)
        {
            throw EngineConfigError(std::string("model config.json: ") + e.what());
        }
        json::Value const* eos = hf.get("eos_token_id");
        if (eos != nullptr && eos->isNumber())
        {
            info.eosTokenIds.push_back(static_cast<int32_t>(eos->number));
        }
        else if (eos != nullptr && eos->kind == json::Value::Kind::Array)
        {
            for (auto const& e : eos->array)
            {
                if (e.isNumber())
                {
                    info.eosTokenIds.push_back(static_cast<int32_t>(e.number));
                }
            }
        }
    }

    // Model identity only (not batch or parallelism settings): context and generation engines may be built
    // differently (TensorRT-LLM allows other TP/PP on each side) yet must agree on these.
    std::ostringstream id;
    id << info.architecture << '|' << info.vocabSize << '|' << info.numLayers << '|' << info.hiddenSize << '|'
       << info.numHeads << '|' << info.numKvHeads << '|' << info.headDim << '|' << dtype << '|' << kvQuant;
    info.modelFingerprint = fnv1aHex(id.str());
    return info;
}

EngineInfo readEngineInfo(std::string const& modelDir)
{
    fs::path const dir(modelDir);
    fs::path engineDir;
    fs::path hfConfig;
    if (fs::exists(dir / "trtllm_engine" / "config.json"))
    {
        engineDir = dir / "trtllm_engine";
        hfConfig = dir / "config.json";
    }
    else if (fs::exists(dir / "config.json"))
    {
        engineDir = dir;
    }
    else
    {
        throw EngineConfigError("no engine in " + modelDir + " (expected config.json or trtllm_engine/config.json)");
    }
    bool hasEngine = false;
    for (auto const& entry : fs::directory_iterator(engineDir))
    {
        if (entry.path().extension() == ".engine")
        {
            hasEngine = true;
            break;
        }
    }
    if (!hasEngine)
    {
        throw EngineConfigError("no *.engine file in " + engineDir.string() + " (run trtllm-build first)");
    }
    std::string const hfText = (!hfConfig.empty() && fs::exists(hfConfig)) ? readFile(hfConfig) : std::string();
    EngineInfo info = parseEngineInfo(readFile(engineDir / "config.json"), hfText);
    info.engineDir = engineDir.string();
    return info;
}

} // namespace trtd_shim
