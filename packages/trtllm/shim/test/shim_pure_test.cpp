// Tests for the parts of the TensorRT-LLM shim that need no TensorRT-LLM: the engine config reader, the
// context-phase blob codec and the JSON reader. Built and run on any machine:
//   cmake -S packages/trtllm/shim -B build/trtllm-shim && cmake --build build/trtllm-shim && ctest --test-dir build/trtllm-shim
// Ends with "N passed, N failed"; exit status 1 on any failure.
#include "src/context_phase_blob.h"
#include "src/engine_config.h"
#include "src/mini_json.h"
#include "trtd_executor.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace
{

int gPassed = 0;
int gFailed = 0;

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        if (cond)                                                                                                      \
        {                                                                                                              \
            ++gPassed;                                                                                                 \
        }                                                                                                              \
        else                                                                                                           \
        {                                                                                                              \
            ++gFailed;                                                                                                 \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                      \
        }                                                                                                              \
    } while (0)

template <typename E>
bool throwsWith(std::function<void()> const& f, std::string const& fragment)
{
    try
    {
        f();
    }
    catch (E const& e)
    {
        if (std::string(e.what()).find(fragment) != std::string::npos)
        {
            return true;
        }
        std::fprintf(stderr, "  (message was: %s)\n", e.what());
        return false;
    }
    return false;
}

// Shaped like trtllm-build's output for a Llama-3-8B-style checkpoint (GQA 32/8, head 128).
std::string const kLlamaEngineConfig = R"({
  "version": "1.2.0",
  "pretrained_config": {
    "architecture": "LlamaForCausalLM", "dtype": "bfloat16", "vocab_size": 128256, "hidden_size": 4096,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_size": 128,
    "max_position_embeddings": 8192, "rotary_base": 500000.0, "norm_epsilon": 1e-05,
    "quantization": {"quant_algo": null, "kv_cache_quant_algo": null},
    "mapping": {"world_size": 1, "tp_size": 1, "pp_size": 1}
  },
  "build_config": {
    "max_input_len": 4096, "max_seq_len": 8192, "max_batch_size": 64, "max_beam_width": 1,
    "max_num_tokens": 8192, "opt_num_tokens": null,
    "plugin_config": {"gpt_attention_plugin": "auto", "paged_kv_cache": true, "tokens_per_block": 32,
                      "remove_input_padding": true, "use_paged_context_fmha": true, "name": "a \"quoted\" \u0041"}
  }
})";

void testBlobRoundTrip()
{
    trtd_shim::ContextPhaseBlob in;
    in.firstGenTokens = {128000, 7};
    in.contextRequestId = 0x0102030405060708ULL;
    in.modelFingerprint = "0123456789abcdef";
    for (int i = 0; i < 3000; ++i)
    {
        in.serializedState.push_back(static_cast<char>(i * 31));
    }
    std::vector<uint8_t> bytes = trtd_shim::encodeContextPhaseBlob(in);
    trtd_shim::ContextPhaseBlob out;
    std::string error;
    CHECK(trtd_shim::decodeContextPhaseBlob(bytes.data(), bytes.size(), out, error));
    CHECK(out.firstGenTokens == in.firstGenTokens);
    CHECK(out.contextRequestId == in.contextRequestId);
    CHECK(out.modelFingerprint == in.modelFingerprint);
    CHECK(out.serializedState == in.serializedState);
    // Header bytes are fixed: magic then version 1, little-endian.
    CHECK(std::string(bytes.begin(), bytes.begin() + 8) == "TRTDCPS1");
    CHECK(bytes[8] == 1 && bytes[9] == 0 && bytes[10] == 0 && bytes[11] == 0);

    // Every truncation is refused, and decoding never touches bytes past the size it is given.
    int truncationsRefused = 0;
    for (size_t n = 0; n < bytes.size(); ++n)
    {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<long>(n));
        trtd_shim::ContextPhaseBlob junk;
        if (!trtd_shim::decodeContextPhaseBlob(cut.data(), cut.size(), junk, error))
        {
            ++truncationsRefused;
        }
    }
    CHECK(truncationsRefused == static_cast<int>(bytes.size()));

    std::vector<uint8_t> trailing = bytes;
    trailing.push_back(0);
    CHECK(!trtd_shim::decodeContextPhaseBlob(trailing.data(), trailing.size(), out, error));
    CHECK(error.find("does not match") != std::string::npos);

    std::vector<uint8_t> badMagic = bytes;
    badMagic[0] = 'X';
    CHECK(!trtd_shim::decodeContextPhaseBlob(badMagic.data(), badMagic.size(), out, error));
    CHECK(error.find("bad magic") != std::string::npos);

    std::vector<uint8_t> badVersion = bytes;
    badVersion[8] = 2;
    CHECK(!trtd_shim::decodeContextPhaseBlob(badVersion.data(), badVersion.size(), out, error));
    CHECK(error.find("version 2") != std::string::npos);

    CHECK(!trtd_shim::decodeContextPhaseBlob(nullptr, 10, out, error));

    trtd_shim::ContextPhaseBlob noTokens = in;
    noTokens.firstGenTokens.clear();
    std::vector<uint8_t> nt = trtd_shim::encodeContextPhaseBlob(noTokens);
    CHECK(!trtd_shim::decodeContextPhaseBlob(nt.data(), nt.size(), out, error));

    trtd_shim::ContextPhaseBlob noState = in;
    noState.serializedState.clear();
    std::vector<uint8_t> ns = trtd_shim::encodeContextPhaseBlob(noState);
    CHECK(!trtd_shim::decodeContextPhaseBlob(ns.data(), ns.size(), out, error));
}

void testEngineConfig()
{
    trtd_shim::EngineInfo info = trtd_shim::parseEngineInfo(kLlamaEngineConfig, R"({"eos_token_id": [128001, 128009]})");
    CHECK(info.architecture == "LlamaForCausalLM");
    CHECK(info.vocabSize == 128256);
    CHECK(info.numLayers == 32);
    CHECK(info.numHeads == 32);
    CHECK(info.numKvHeads == 8);
    CHECK(info.headDim == 128);
    CHECK(info.maxSeqLen == 8192);
    CHECK(info.maxBatchSize == 64);
    CHECK(info.maxNumTokens == 8192);
    CHECK(info.tokensPerBlock == 32);
    CHECK(info.kvDtype == TRTD_KV_BFLOAT16);
    CHECK(info.kvElementBytes == 2);
    CHECK((info.eosTokenIds == std::vector<int32_t>{128001, 128009}));
    CHECK(info.modelFingerprint.size() == 16);

    trtd_shim::EngineInfo single = trtd_shim::parseEngineInfo(kLlamaEngineConfig, R"({"eos_token_id": 2})");
    CHECK((single.eosTokenIds == std::vector<int32_t>{2}));
    CHECK(trtd_shim::parseEngineInfo(kLlamaEngineConfig, "").eosTokenIds.empty());

    // The fingerprint names the model, not the build: another batch size keeps it, FP8 KV changes it.
    std::string rebuilt = kLlamaEngineConfig;
    rebuilt.replace(rebuilt.find("\"max_batch_size\": 64"), 20, "\"max_batch_size\": 8 ");
    CHECK(trtd_shim::parseEngineInfo(rebuilt, "").modelFingerprint == info.modelFingerprint);
    std::string fp8 = kLlamaEngineConfig;
    fp8.replace(fp8.find("\"kv_cache_quant_algo\": null"), 27, "\"kv_cache_quant_algo\": \"FP8\"");
    trtd_shim::EngineInfo fp8Info = trtd_shim::parseEngineInfo(fp8, "");
    CHECK(fp8Info.kvDtype == TRTD_KV_FP8_E4M3);
    CHECK(fp8Info.kvElementBytes == 1);
    CHECK(fp8Info.modelFingerprint != info.modelFingerprint);

    // head_size and num_key_value_heads may be absent (MHA); tokens_per_block may sit in build_config.
    std::string const mha = R"({"pretrained_config": {"architecture": "GPT2LMHeadModel", "dtype": "float16",
        "vocab_size": 50257, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "max_position_embeddings": 1024}, "build_config": {"tokens_per_block": 64}})";
    trtd_shim::EngineInfo mhaInfo = trtd_shim::parseEngineInfo(mha, "");
    CHECK(mhaInfo.numKvHeads == 12);
    CHECK(mhaInfo.headDim == 64);
    CHECK(mhaInfo.maxSeqLen == 1024);
    CHECK(mhaInfo.tokensPerBlock == 64);
    CHECK(mhaInfo.kvDtype == TRTD_KV_FLOAT16);

    using trtd_shim::EngineConfigError;
    CHECK(throwsWith<EngineConfigError>([] { trtd_shim::parseEngineInfo(R"({"architectures": ["x"]})", ""); },
        "no pretrained_config/build_config"));
    CHECK(throwsWith<EngineConfigError>(
        [] { trtd_shim::parseEngineInfo(R"({"pretrained_config": {}, "build_config": {}})", ""); },
        "pretrained_config.vocab_size"));
    CHECK(throwsWith<EngineConfigError>([] { trtd_shim::parseEngineInfo("{\"pretrained_config\": ", ""); },
        "engine config.json: JSON"));
    std::string negative = kLlamaEngineConfig;
    negative.replace(negative.find("\"vocab_size\": 128256"), 20, "\"vocab_size\": -12345");
    CHECK(throwsWith<EngineConfigError>([&] { trtd_shim::parseEngineInfo(negative, ""); }, "non-negative integer"));
    std::string int8 = kLlamaEngineConfig;
    int8.replace(int8.find("\"kv_cache_quant_algo\": null"), 27, "\"kv_cache_quant_algo\": \"INT8\"");
    CHECK(trtd_shim::parseEngineInfo(int8, "").kvDtype == -1);
    std::string badDtype = kLlamaEngineConfig;
    badDtype.replace(badDtype.find("\"bfloat16\""), 10, "\"float64\" ");
    CHECK(throwsWith<EngineConfigError>([&] { trtd_shim::parseEngineInfo(badDtype, ""); }, "unknown"));
}

void writeFile(std::filesystem::path const& p, std::string const& text)
{
    std::ofstream out(p, std::ios::binary);
    out << text;
}

void testEngineDirectoryLayout()
{
    namespace fs = std::filesystem;
    fs::path const root = fs::temp_directory_path() / ("trtd-shim-test-" + std::to_string(::getpid()));
    fs::remove_all(root);

    // trtd convention: the HF model folder (tokenizer, config.json) with the engine in trtllm_engine/.
    fs::path const model = root / "model";
    fs::create_directories(model / "trtllm_engine");
    writeFile(model / "config.json", R"({"eos_token_id": 128009, "model_type": "llama"})");
    writeFile(model / "trtllm_engine" / "config.json", kLlamaEngineConfig);
    writeFile(model / "trtllm_engine" / "rank0.engine", "not really an engine");
    trtd_shim::EngineInfo viaModel = trtd_shim::readEngineInfo(model.string());
    CHECK(viaModel.engineDir == (model / "trtllm_engine").string());
    CHECK((viaModel.eosTokenIds == std::vector<int32_t>{128009}));

    // An engine folder given directly: no HF config, so no EOS ids.
    trtd_shim::EngineInfo direct = trtd_shim::readEngineInfo((model / "trtllm_engine").string());
    CHECK(direct.engineDir == (model / "trtllm_engine").string());
    CHECK(direct.eosTokenIds.empty());
    CHECK(direct.modelFingerprint == viaModel.modelFingerprint);

    using trtd_shim::EngineConfigError;
    fs::path const noEngine = root / "no-engine";
    fs::create_directories(noEngine);
    writeFile(noEngine / "config.json", kLlamaEngineConfig);
    CHECK(throwsWith<EngineConfigError>([&] { trtd_shim::readEngineInfo(noEngine.string()); }, "no *.engine file"));
    CHECK(throwsWith<EngineConfigError>([&] { trtd_shim::readEngineInfo((root / "missing").string()); }, "no engine in"));
    // A plain HF folder without an engine is refused with a hint.
    fs::path const hfOnly = root / "hf-only";
    fs::create_directories(hfOnly);
    writeFile(hfOnly / "config.json", R"({"model_type": "llama"})");
    writeFile(hfOnly / "x.engine", "");
    CHECK(throwsWith<EngineConfigError>([&] { trtd_shim::readEngineInfo(hfOnly.string()); }, "trtllm-build"));

    fs::remove_all(root);
    CHECK(!fs::exists(root));
}

void testJson()
{
    using trtd_shim::json::parse;
    auto v = parse(R"( {"a": [1, -2.5e3, true, false, null, "x\ny\"z"], "b": {"c": {"d": 7}}} )");
    CHECK(v.get("a")->array.size() == 6);
    CHECK(v.get("a")->array[1].number == -2500.0);
    CHECK(v.get("a")->array[5].string == "x\ny\"z");
    CHECK(v.path({"b", "c", "d"})->number == 7.0);
    CHECK(v.path({"b", "x"}) == nullptr);
    CHECK(v.get("a")->get("zz") == nullptr);
    bool threw = false;
    try
    {
        parse("{\"a\": 1} trailing");
    }
    catch (std::runtime_error const&)
    {
        threw = true;
    }
    CHECK(threw);
    std::string deep(100, '[');
    deep += std::string(100, ']');
    threw = false;
    try
    {
        parse(deep);
    }
    catch (std::runtime_error const& e)
    {
        threw = std::string(e.what()).find("too deep") != std::string::npos;
    }
    CHECK(threw);
    threw = false;
    try
    {
        parse("\"unterminated");
    }
    catch (std::runtime_error const&)
    {
        threw = true;
    }
    CHECK(threw);
}

} // namespace

int main()
{
    testBlobRoundTrip();
    testEngineConfig();
    testEngineDirectoryLayout();
    testJson();
    std::printf("%d passed, %d failed\n", gPassed, gFailed);
    return gFailed == 0 ? 0 : 1;
}
