// The shim itself (trtd_trtllm_shim.cpp, through the C ABI) over the FAKE TensorRT-LLM test double
// (fake_tensorrt_llm.cpp): request building, response merging and buffered drains, finish reasons, the
// context-phase state between two executors, cancel, notify fd, stats, bad input. Runs on any machine.
// Ends with "N passed, N failed"; exit status 1 on any failure.
#include "src/context_phase_blob.h"
#include "trtd_executor.h"

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
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
            std::fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, trtd_last_error()); \
        }                                                                                                              \
    } while (0)

namespace fs = std::filesystem;

std::string const kEngineConfig = R"({
  "pretrained_config": {"architecture": "LlamaForCausalLM", "dtype": "float16", "vocab_size": 1000,
    "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
    "quantization": {"kv_cache_quant_algo": null}},
  "build_config": {"max_seq_len": 128, "max_batch_size": 8, "max_num_tokens": 256,
    "plugin_config": {"tokens_per_block": 32}}
})";

struct Output
{
    trtd_request_id id = 0;
    std::vector<int32_t> tokens;
    int32_t finish = TRTD_FINISH_NOT_FINISHED;
    int32_t responses = 0;
    std::string error;
};

trtd_executor* open(fs::path const& model)
{
    trtd_executor_config cfg = trtd_executor_default_config();
    trtd_executor* ex = nullptr;
    trtd_status const s = trtd_executor_create(model.c_str(), &cfg, &ex);
    if (s != TRTD_STATUS_OK)
    {
        std::fprintf(stderr, "create failed: %d %s\n", s, trtd_last_error());
        std::exit(1);
    }
    return ex;
}

trtd_request requestOf(std::vector<int32_t> const& prompt, int32_t maxNew, int32_t type)
{
    trtd_request r{};
    r.prompt = prompt.data();
    r.prompt_len = static_cast<int32_t>(prompt.size());
    r.max_new_tokens = maxNew;
    r.end_id = -1;
    r.sampling = trtd_sampling_default_params();
    r.type = type;
    return r;
}

// Drains until the request's final response (bounded), with small buffers to exercise splitting.
Output collect(trtd_executor* ex, trtd_request_id id, int32_t maxTokensPerDrain = 64)
{
    Output out;
    out.id = id;
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::vector<trtd_token> buf(static_cast<size_t>(maxTokensPerDrain));
    trtd_response rs[4];
    while (std::chrono::steady_clock::now() < deadline)
    {
        int32_t n = 0;
        if (trtd_executor_await_responses(ex, 100, rs, 4, buf.data(), maxTokensPerDrain, &n) != TRTD_STATUS_OK)
        {
            out.error = trtd_last_error();
            return out;
        }
        for (int32_t i = 0; i < n; ++i)
        {
            if (rs[i].request_id != id)
            {
                continue;
            }
            ++out.responses;
            out.tokens.insert(out.tokens.end(), buf.begin() + rs[i].token_offset,
                buf.begin() + rs[i].token_offset + rs[i].num_tokens);
            if (rs[i].is_final)
            {
                out.finish = rs[i].finish_reason;
                out.error = rs[i].error_message;
                return out;
            }
        }
    }
    out.error = "timed out";
    return out;
}

Output run(trtd_executor* ex, trtd_request const& r, int32_t maxTokensPerDrain = 64)
{
    trtd_request_id id = 0;
    if (trtd_executor_enqueue(ex, &r, &id) != TRTD_STATUS_OK)
    {
        Output o;
        o.error = std::string("enqueue: ") + trtd_last_error();
        return o;
    }
    return collect(ex, id, maxTokensPerDrain);
}

std::vector<uint8_t> contextState(trtd_executor* ex, trtd_request_id id)
{
    uint64_t size = 0;
    if (trtd_executor_context_phase_state(ex, id, nullptr, 0, &size) != TRTD_STATUS_OK)
    {
        return {};
    }
    std::vector<uint8_t> state(size);
    trtd_executor_context_phase_state(ex, id, state.data(), size, &size);
    return state;
}

} // namespace

int main()
{
    fs::path const root = fs::temp_directory_path() / ("trtd-shim-fake-" + std::to_string(::getpid()));
    fs::create_directories(root / "model" / "trtllm_engine");
    std::ofstream(root / "model" / "config.json") << R"({"eos_token_id": [7]})";
    std::ofstream(root / "model" / "trtllm_engine" / "config.json") << kEngineConfig;
    std::ofstream(root / "model" / "trtllm_engine" / "rank0.engine") << "fake";
    ::setenv("TRTD_TRTLLM_KV_TRANSFER_TIMEOUT_MS", "400", 1);
    fs::path const model = root / "model";

    CHECK(std::string(trtd_version()).find("TensorRT-LLM fake-1.2") != std::string::npos);
    CHECK(trtd_abi_version() == TRTD_ABI_VERSION);

    trtd_executor* ctx = open(model);
    trtd_executor* gen = open(model);

    // Model info and layout come from the engine folder; the EOS from the HF config beside it.
    trtd_model_info mi{};
    CHECK(trtd_executor_model_info(ctx, &mi) == TRTD_STATUS_OK);
    CHECK(mi.vocab_size == 1000 && mi.num_layers == 4 && mi.num_kv_heads == 2 && mi.head_dim == 32);
    CHECK(mi.max_context_length == 128);
    CHECK(mi.num_eos_token_ids == 1 && mi.eos_token_ids[0] == 7);
    trtd_kv_layout kl{};
    CHECK(trtd_executor_kv_layout(ctx, &kl) == TRTD_STATUS_OK);
    CHECK(kl.tokens_per_block == 32 && kl.memory_kind == TRTD_MEMORY_CUDA_DEVICE && kl.dtype == TRTD_KV_FLOAT16);
    CHECK(kl.bytes_per_block == 2ull * 4 * 2 * 32 * 32 * 2);

    std::vector<int32_t> const prompt = {11, 22, 33, 44, 55, 66};

    // Aggregated, drained through a 3-token buffer: responses split, tokens reassemble exactly.
    Output agg = run(gen, requestOf(prompt, 12, TRTD_REQUEST_CONTEXT_AND_GENERATION), 3);
    CHECK(agg.error.empty());
    CHECK(agg.tokens.size() == 12);
    CHECK(agg.finish == TRTD_FINISH_LENGTH);
    Output agg64 = run(gen, requestOf(prompt, 12, TRTD_REQUEST_CONTEXT_AND_GENERATION));
    CHECK(agg64.tokens == agg.tokens);

    // Disaggregated: context-only on one executor, its state to another, generation-only there.
    Output first = run(ctx, requestOf(prompt, 12, TRTD_REQUEST_CONTEXT_ONLY));
    CHECK(first.error.empty() && first.tokens.size() == 1 && first.finish == TRTD_FINISH_LENGTH);
    CHECK(!agg.tokens.empty() && first.tokens == std::vector<int32_t>{agg.tokens[0]});
    trtd_kv_export_info xi{};
    CHECK(trtd_executor_kv_export_info(ctx, first.id, &xi) == TRTD_STATUS_ENGINE_NATIVE_TRANSFER);
    trtd_kv_import_id imp = 99;
    CHECK(trtd_executor_kv_import_reserve(gen, 6, &imp) == TRTD_STATUS_ENGINE_NATIVE_TRANSFER && imp == 0);
    uint64_t size = 0;
    CHECK(trtd_executor_context_phase_state(ctx, first.id, nullptr, 0, &size) == TRTD_STATUS_OK && size > 0);
    uint8_t tiny[4];
    CHECK(trtd_executor_context_phase_state(ctx, first.id, tiny, sizeof tiny, &size) == TRTD_STATUS_BUFFER_TOO_SMALL);
    std::vector<uint8_t> state = contextState(ctx, first.id);
    trtd_shim::ContextPhaseBlob blob;
    std::string err;
    CHECK(trtd_shim::decodeContextPhaseBlob(state.data(), state.size(), blob, err));
    CHECK(blob.firstGenTokens == first.tokens);
    trtd_executor_stats st{};
    CHECK(trtd_executor_get_stats(ctx, &st) == TRTD_STATUS_OK && st.pinned_exports == 1 && st.iterations > 0);

    trtd_context_phase_params cp{};
    cp.opaque_state = state.data();
    cp.opaque_state_size = state.size();
    cp.first_token = first.tokens[0];
    trtd_request g = requestOf(prompt, 12, TRTD_REQUEST_GENERATION_ONLY);
    g.context_phase = &cp;
    Output disagg = run(gen, g, 5);
    CHECK(disagg.error.empty());
    CHECK(disagg.tokens == agg.tokens); // starts with the first token, then continues
    CHECK(trtd_executor_kv_export_release(ctx, first.id) == TRTD_STATUS_OK);
    CHECK(trtd_executor_kv_export_release(ctx, first.id) == TRTD_STATUS_NOT_FOUND);
    CHECK(trtd_executor_get_stats(ctx, &st) == TRTD_STATUS_OK && st.pinned_exports == 0);

    // Bad opaque states are refused at enqueue with clear errors, and nothing else is disturbed.
    trtd_request_id bad = 0;
    std::vector<uint8_t> broken = state;
    broken[0] = 'X';
    cp.opaque_state = broken.data();
    CHECK(trtd_executor_enqueue(gen, &g, &bad) == TRTD_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(trtd_last_error()).find("bad magic") != std::string::npos);
    trtd_shim::ContextPhaseBlob other = blob;
    other.modelFingerprint = "0000000000000000";
    std::vector<uint8_t> foreign = trtd_shim::encodeContextPhaseBlob(other);
    cp.opaque_state = foreign.data();
    cp.opaque_state_size = foreign.size();
    CHECK(trtd_executor_enqueue(gen, &g, &bad) == TRTD_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(trtd_last_error()).find("from model") != std::string::npos);
    cp.opaque_state = state.data();
    cp.opaque_state_size = state.size();
    cp.first_token = first.tokens[0] + 1;
    CHECK(trtd_executor_enqueue(gen, &g, &bad) == TRTD_STATUS_INVALID_ARGUMENT);
    cp.first_token = first.tokens[0];
    cp.kv_import_id = 5;
    CHECK(trtd_executor_enqueue(gen, &g, &bad) == TRTD_STATUS_ENGINE_NATIVE_TRANSFER);
    cp.kv_import_id = 0;
    trtd_request noCp = requestOf(prompt, 4, TRTD_REQUEST_GENERATION_ONLY);
    CHECK(trtd_executor_enqueue(gen, &noCp, &bad) == TRTD_STATUS_INVALID_ARGUMENT);
    std::vector<int32_t> outOfRange = {1, 1000};
    trtd_request oor = requestOf(outOfRange, 4, TRTD_REQUEST_CONTEXT_AND_GENERATION);
    CHECK(trtd_executor_enqueue(gen, &oor, &bad) == TRTD_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(trtd_last_error()).find("index 1") != std::string::npos);
    trtd_request badType = requestOf(prompt, 4, 7);
    CHECK(trtd_executor_enqueue(gen, &badType, &bad) == TRTD_STATUS_INVALID_ARGUMENT);
    trtd_request badSampling = requestOf(prompt, 4, TRTD_REQUEST_CONTEXT_AND_GENERATION);
    badSampling.sampling.top_p = 0.0f;
    CHECK(trtd_executor_enqueue(gen, &badSampling, &bad) == TRTD_STATUS_INVALID_ARGUMENT);
    trtd_request resumed = requestOf(prompt, 4, TRTD_REQUEST_CONTEXT_AND_GENERATION);
    resumed.generated_offset = -1;
    CHECK(trtd_executor_enqueue(gen, &resumed, &bad) == TRTD_STATUS_INVALID_ARGUMENT);
    resumed.generated_offset = 3; // TensorRT-LLM has no draw offset: refused, not silently ignored
    CHECK(trtd_executor_enqueue(gen, &resumed, &bad) == TRTD_STATUS_UNSUPPORTED && bad == 0);
    CHECK(std::string(trtd_last_error()).find("generated_offset") != std::string::npos);
    std::vector<int32_t> tooLong(128, 3);
    trtd_request longReq = requestOf(tooLong, 4, TRTD_REQUEST_CONTEXT_AND_GENERATION);
    CHECK(trtd_executor_enqueue(gen, &longReq, &bad) == TRTD_STATUS_INVALID_ARGUMENT);
    CHECK(run(gen, requestOf(prompt, 12, TRTD_REQUEST_CONTEXT_AND_GENERATION)).tokens == agg.tokens);

    // The end id ends the request and is reported as its last token (TensorRT-LLM leaves it out).
    trtd_request e = requestOf(prompt, 12, TRTD_REQUEST_CONTEXT_AND_GENERATION);
    e.end_id = agg.tokens[4];
    Output ended = run(gen, e);
    CHECK(ended.finish == TRTD_FINISH_END_ID);
    CHECK(ended.tokens == std::vector<int32_t>(agg.tokens.begin(), agg.tokens.begin() + 5));
    // A stop token is kept as the last token.
    trtd_request sreq = requestOf(prompt, 12, TRTD_REQUEST_CONTEXT_AND_GENERATION);
    int32_t const stop = agg.tokens[2];
    sreq.stop_token_ids = &stop;
    sreq.num_stop_token_ids = 1;
    Output stopped = run(gen, sreq);
    CHECK(stopped.finish == TRTD_FINISH_STOP_TOKEN);
    CHECK(stopped.tokens == std::vector<int32_t>(agg.tokens.begin(), agg.tokens.begin() + 3));
    // max_new_tokens is capped by the engine's max_seq_len.
    std::vector<int32_t> nearFull(120, 5);
    Output capped = run(gen, requestOf(nearFull, 50, TRTD_REQUEST_CONTEXT_AND_GENERATION));
    CHECK(capped.tokens.size() == 8 && capped.finish == TRTD_FINISH_LENGTH);

    // Cancel: the final response says CANCELLED; a second cancel finds nothing.
    trtd_request longRun = requestOf(prompt, 100, TRTD_REQUEST_CONTEXT_AND_GENERATION);
    trtd_request_id cid = 0;
    CHECK(trtd_executor_enqueue(gen, &longRun, &cid) == TRTD_STATUS_OK);
    CHECK(trtd_executor_cancel(gen, cid) == TRTD_STATUS_OK);
    Output cancelled = collect(gen, cid);
    CHECK(cancelled.finish == TRTD_FINISH_CANCELLED);
    CHECK(cancelled.tokens.size() < 100);
    CHECK(trtd_executor_cancel(gen, cid) == TRTD_STATUS_NOT_FOUND);
    CHECK(trtd_executor_cancel(gen, 424242) == TRTD_STATUS_NOT_FOUND);

    // The notify fd becomes readable when a response is ready; taking it twice is refused.
    int32_t fd = -1;
    CHECK(trtd_executor_notify_fd(gen, false, &fd) == TRTD_STATUS_OK && fd >= 0);
    trtd_request_id nid = 0;
    trtd_request shortReq = requestOf(prompt, 2, TRTD_REQUEST_CONTEXT_AND_GENERATION);
    CHECK(trtd_executor_enqueue(gen, &shortReq, &nid) == TRTD_STATUS_OK);
    pollfd pfd{fd, POLLIN, 0};
    CHECK(::poll(&pfd, 1, 5000) == 1);
    char drain[64];
    while (::read(fd, drain, sizeof drain) > 0)
    {
    }
    CHECK(collect(gen, nid).tokens.size() == 2);
    CHECK(trtd_executor_notify_fd(gen, true, &fd) == TRTD_STATUS_OK);
    CHECK(trtd_executor_notify_fd(gen, false, &fd) == TRTD_STATUS_INVALID_STATE);
    ::close(fd);

    // An unreleased context state is dropped after the transfer timeout (400 ms here).
    Output orphan = run(ctx, requestOf(prompt, 4, TRTD_REQUEST_CONTEXT_ONLY));
    CHECK(!contextState(ctx, orphan.id).empty());
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    CHECK(trtd_executor_context_phase_state(ctx, orphan.id, nullptr, 0, &size) == TRTD_STATUS_NOT_FOUND);

    // Stats after everything: nothing live, nothing pinned.
    CHECK(trtd_executor_get_stats(gen, &st) == TRTD_STATUS_OK);
    CHECK(st.active_requests == 0 && st.queued_requests == 0 && st.pinned_exports == 0);
    CHECK(st.generated_tokens > 0 && st.prompt_tokens > 0);
    CHECK(trtd_executor_compute_logits(gen, prompt.data(), 6, nullptr, 0) == TRTD_STATUS_UNSUPPORTED);
    trtd_executor_destroy(ctx);
    trtd_executor_destroy(gen);

    // A context executor whose results carry no transceiver state: the context-only request fails clearly.
    ::setenv("FAKE_TRTLLM_NO_TRANSCEIVER_STATE", "1", 1);
    trtd_executor* noState = open(model);
    Output failed = run(noState, requestOf(prompt, 4, TRTD_REQUEST_CONTEXT_ONLY));
    CHECK(failed.finish == TRTD_FINISH_ERROR);
    CHECK(failed.error.find("no transceiver state") != std::string::npos);
    trtd_executor_destroy(noState);
    ::unsetenv("FAKE_TRTLLM_NO_TRANSCEIVER_STATE");

    // Creation errors: no engine, bad backend name.
    trtd_executor* none = nullptr;
    trtd_executor_config cfg = trtd_executor_default_config();
    CHECK(trtd_executor_create((root / "missing").c_str(), &cfg, &none) == TRTD_STATUS_MODEL_LOAD && none == nullptr);
    ::setenv("TRTD_TRTLLM_CACHE_BACKEND", "MPI", 1);
    CHECK(trtd_executor_create(model.c_str(), &cfg, &none) == TRTD_STATUS_INVALID_ARGUMENT && none == nullptr);
    ::unsetenv("TRTD_TRTLLM_CACHE_BACKEND");
    cfg.max_context_length = 4096;
    CHECK(trtd_executor_create(model.c_str(), &cfg, &none) == TRTD_STATUS_INVALID_ARGUMENT);

    fs::remove_all(root);
    std::printf("%d passed, %d failed\n", gPassed, gFailed);
    return gFailed == 0 ? 0 : 1;
}
