// trtd_trtllm_shim.cpp: the trtd executor C ABI (packages/trtllm/include/trtd_executor.h) implemented over
// TensorRT-LLM's C++ tensorrt_llm::executor::Executor (TensorRT-LLM <= 1.2.x; the C++ executor was removed
// upstream after 1.3.0rc20).
//
// How the ABI maps:
//   - trtd_executor_create: an Executor over the engine folder (see engine_config.h) with inflight batching,
//     KvCacheConfig, SchedulerConfig and a CacheTransceiverConfig whose backend (UCX or NIXL) is set
//     explicitly, so two independent processes can move KV (MPI would need both in one MPI world).
//   - requests are built with the two-argument Request constructor plus setters (the long positional
//     constructor changed its order across releases); the ABI's request type maps to RequestType.
//   - a context-only result's ContextPhaseParams (first tokens, request id, getSerializedState()) becomes the
//     opaque state (context_phase_blob.h); a generation-only request rebuilds ContextPhaseParams from it and
//     TensorRT-LLM's cache transceiver pulls the KV from the context executor's GPU.
//   - KV export/import answer TRTD_STATUS_ENGINE_NATIVE_TRANSFER: there are no host-visible KV segments.
//   - one poller thread owns Executor::awaitResponses (100 ms timeout) and merges responses into a queue that
//     trtd_executor_await_responses drains; the notify fd is written when that queue becomes non-empty.
//
// Only tensorrt_llm/executor/executor.h is included (it needs nothing but CUDA's cuda_fp16.h and the STL).
#include "trtd_executor.h"

#include "src/context_phase_blob.h"
#include "src/engine_config.h"

#include "tensorrt_llm/executor/executor.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

// Declared in tensorrt_llm/plugins/api/tllmPlugin.h (libnvinfer_plugin_tensorrt_llm.so). Declared here instead
// of included so that executor.h stays the only TensorRT-LLM header; nullptr selects TensorRT-LLM's own logger.
extern "C" bool initTrtLlmPlugins(void* logger, char const* libNamespace);

namespace tle = tensorrt_llm::executor;

namespace
{

constexpr char const* kShimVersion = "0.1.0";
constexpr auto kPollTimeout = std::chrono::milliseconds(100);
constexpr int kDefaultKvTransferTimeoutMs = 60000;

thread_local std::string tLastError;

trtd_status fail(trtd_status status, std::string message)
{
    tLastError = std::move(message);
    return status;
}

std::optional<long> envInt(char const* name)
{
    char const* v = std::getenv(name);
    if (v == nullptr || *v == '\0')
    {
        return std::nullopt;
    }
    char* end = nullptr;
    long const n = std::strtol(v, &end, 10);
    if (end == v || *end != '\0')
    {
        return std::nullopt;
    }
    return n;
}

struct RequestState
{
    tle::IdType engineId = 0;
    int32_t type = TRTD_REQUEST_CONTEXT_AND_GENERATION;
    int32_t endId = -1;
    int32_t firstToken = -1;          // generation-only: the token the context phase produced
    bool cancelRequested = false;
    int32_t lastToken = -1;
    std::unordered_set<int32_t> stopTokens;
};

// Output accumulated for one request since the last drain.
struct Pending
{
    std::vector<int32_t> tokens;
    bool isFinal = false;
    int32_t finishReason = TRTD_FINISH_NOT_FINISHED;
    int32_t errorStatus = TRTD_STATUS_OK;
    std::string errorMessage;
};

int32_t mapFinishReason(tle::FinishReason reason)
{
    switch (reason)
    {
    case tle::FinishReason::kEND_ID: return TRTD_FINISH_END_ID;
    case tle::FinishReason::kSTOP_WORDS: return TRTD_FINISH_STOP_TOKEN;
    case tle::FinishReason::kLENGTH: return TRTD_FINISH_LENGTH;
    case tle::FinishReason::kTIMED_OUT: return TRTD_FINISH_LENGTH;
    case tle::FinishReason::kCANCELLED: return TRTD_FINISH_CANCELLED;
    case tle::FinishReason::kNOT_FINISHED: break;
    }
    return TRTD_FINISH_NOT_FINISHED;
}

} // namespace

struct trtd_executor
{
    trtd_shim::EngineInfo info;
    trtd_executor_config config{};
    int32_t maxContextLength = 0;
    std::unique_ptr<tle::Executor> engine;

    // Everything below is guarded by mu.
    std::mutex mu;
    std::condition_variable responsesReady;
    uint64_t nextId = 1;
    std::unordered_map<trtd_request_id, RequestState> requests;  // live (not yet drained final)
    std::unordered_map<tle::IdType, trtd_request_id> byEngineId;
    std::deque<trtd_request_id> readyOrder;
    std::unordered_map<trtd_request_id, Pending> ready;
    // Finished context-only requests' states, until kv_export_release or until TensorRT-LLM has dropped their KV
    // (kvTransferTimeoutMs): past that the state is useless, so the poller drops it even if nobody releases it.
    struct ContextState
    {
        std::vector<uint8_t> bytes;
        std::chrono::steady_clock::time_point expiresAt;
    };
    std::unordered_map<trtd_request_id, ContextState> contextStates;
    std::chrono::milliseconds contextStateTtl{kDefaultKvTransferTimeoutMs};
    uint64_t generatedTokens = 0;
    uint64_t promptTokens = 0;
    std::string pollerError;

    // Stats from the engine's iteration log; guarded by statsMu (getLatestIterationStats drains the log).
    std::mutex statsMu;
    uint64_t iterations = 0;
    tle::IterationStats lastStats{};
    bool haveStats = false;

    int notifyRead = -1;
    int notifyWrite = -1;
    bool notifyTaken = false;

    std::atomic<bool> stopping{false};
    std::thread poller;

    void pollLoop();
    void merge(tle::Response const& response);
    Pending& pendingFor(trtd_request_id id);
    void signalReady(bool wasEmpty);
};

Pending& trtd_executor::pendingFor(trtd_request_id id)
{
    auto it = ready.find(id);
    if (it != ready.end())
    {
        return it->second;
    }
    readyOrder.push_back(id);
    return ready[id];
}

void trtd_executor::signalReady(bool wasEmpty)
{
    if (wasEmpty && !readyOrder.empty())
    {
        if (notifyWrite >= 0)
        {
            char const byte = 1;
            // Non-blocking: a full pipe already means "readable", so a failed write loses nothing.
            [[maybe_unused]] ssize_t n = ::write(notifyWrite, &byte, 1);
        }
        responsesReady.notify_all();
    }
}

// Called with mu held.
void trtd_executor::merge(tle::Response const& response)
{
    auto idIt = byEngineId.find(response.getRequestId());
    if (idIt == byEngineId.end())
    {
        return; // a request this shim no longer tracks (cannot happen unless the engine repeats a final)
    }
    trtd_request_id const id = idIt->second;
    RequestState& st = requests.at(id);
    if (!response.hasError() && !response.getResult().isFinal
        && (response.getResult().outputTokenIds.empty() || response.getResult().outputTokenIds.front().empty()))
    {
        return; // an empty streaming step: nothing to report
    }
    Pending& p = pendingFor(id);

    if (response.hasError())
    {
        p.isFinal = true;
        p.finishReason = st.cancelRequested ? TRTD_FINISH_CANCELLED : TRTD_FINISH_ERROR;
        p.errorStatus = st.cancelRequested ? TRTD_STATUS_OK : TRTD_STATUS_INTERNAL;
        p.errorMessage = st.cancelRequested ? "" : response.getErrorMsg();
        byEngineId.erase(idIt);
        return;
    }

    tle::Result const& result = response.getResult();
    std::vector<int32_t> tokens;
    if (!result.outputTokenIds.empty())
    {
        tokens = result.outputTokenIds.front();
    }
    // A generation-only request's output starts with the context phase's first token, in TensorRT-LLM
    // ("genResponses also contains the first output token") as in the ABI: passed through unchanged.

    if (st.type == TRTD_REQUEST_CONTEXT_ONLY && result.isFinal)
    {
        if (!result.contextPhaseParams.has_value())
        {
            p.isFinal = true;
            p.finishReason = st.cancelRequested ? TRTD_FINISH_CANCELLED : TRTD_FINISH_ERROR;
            p.errorStatus = st.cancelRequested ? TRTD_STATUS_OK : TRTD_STATUS_INTERNAL;
            p.errorMessage = st.cancelRequested ? "" : "context-only result without context phase params";
            byEngineId.erase(idIt);
            return;
        }
        tle::ContextPhaseParams const& cpp = *result.contextPhaseParams;
        // getSerializedState() dereferences the state: check it first. No state means the context executor has
        // no cache transceiver (CacheTransceiverConfig missing or disaggregation not built in).
        if (cpp.getState() == nullptr || cpp.getFirstGenTokens().empty())
        {
            p.isFinal = true;
            p.finishReason = TRTD_FINISH_ERROR;
            p.errorStatus = TRTD_STATUS_INTERNAL;
            p.errorMessage = "context phase params carry no transceiver state (is the cache transceiver enabled?)";
            byEngineId.erase(idIt);
            return;
        }
        trtd_shim::ContextPhaseBlob blob;
        blob.firstGenTokens = cpp.getFirstGenTokens();
        blob.contextRequestId = cpp.getReqId();
        blob.modelFingerprint = info.modelFingerprint;
        blob.serializedState = cpp.getSerializedState();
        if (blob.serializedState.empty())
        {
            p.isFinal = true;
            p.finishReason = TRTD_FINISH_ERROR;
            p.errorStatus = TRTD_STATUS_INTERNAL;
            p.errorMessage = "context phase params serialized to an empty state";
            byEngineId.erase(idIt);
            return;
        }
        contextStates[id] = ContextState{trtd_shim::encodeContextPhaseBlob(blob),
            std::chrono::steady_clock::now() + contextStateTtl};
        if (tokens.empty())
        {
            tokens.push_back(blob.firstGenTokens.front());
        }
    }

    for (int32_t t : tokens)
    {
        p.tokens.push_back(t);
        st.lastToken = t;
    }
    generatedTokens += tokens.size();

    if (result.isFinal)
    {
        p.isFinal = true;
        int32_t reason = result.finishReasons.empty() ? TRTD_FINISH_NOT_FINISHED
                                                      : mapFinishReason(result.finishReasons.front());
        if (st.cancelRequested && reason != TRTD_FINISH_END_ID && reason != TRTD_FINISH_STOP_TOKEN)
        {
            reason = TRTD_FINISH_CANCELLED;
        }
        if (reason == TRTD_FINISH_END_ID && st.endId >= 0 && st.lastToken != st.endId)
        {
            // TensorRT-LLM leaves the end id out of the output; the ABI reports it as the last token.
            p.tokens.push_back(st.endId);
            st.lastToken = st.endId;
            ++generatedTokens;
        }
        if (reason == TRTD_FINISH_NOT_FINISHED)
        {
            // A context-only request ends after its first token; report why it would have stopped there.
            if (st.endId >= 0 && st.lastToken == st.endId)
            {
                reason = TRTD_FINISH_END_ID;
            }
            else if (st.stopTokens.count(st.lastToken) != 0)
            {
                reason = TRTD_FINISH_STOP_TOKEN;
            }
            else
            {
                reason = TRTD_FINISH_LENGTH;
            }
        }
        p.finishReason = reason;
        byEngineId.erase(idIt);
    }
}

void trtd_executor::pollLoop()
{
    while (!stopping.load())
    {
        std::vector<tle::Response> responses;
        try
        {
            responses = engine->awaitResponses(kPollTimeout);
        }
        catch (std::exception const& e)
        {
            std::lock_guard<std::mutex> lock(mu);
            pollerError = e.what();
            std::this_thread::sleep_for(kPollTimeout); // bounded retry; destroy stops the loop
            continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        auto const now = std::chrono::steady_clock::now();
        for (auto it = contextStates.begin(); it != contextStates.end();)
        {
            it = it->second.expiresAt <= now ? contextStates.erase(it) : std::next(it);
        }
        if (responses.empty())
        {
            continue;
        }
        bool const wasEmpty = readyOrder.empty();
        for (auto const& r : responses)
        {
            merge(r);
        }
        signalReady(wasEmpty);
    }
}

extern "C" {

int32_t trtd_abi_version(void)
{
    return TRTD_ABI_VERSION;
}

const char* trtd_version(void)
{
    static std::string const v = std::string("trtd-trtllm-shim ") + kShimVersion + " (TensorRT-LLM "
        + tle::version() + ")";
    return v.c_str();
}

const char* trtd_last_error(void)
{
    return tLastError.c_str();
}

trtd_executor_config trtd_executor_default_config(void)
{
    trtd_executor_config c{};
    c.kv_memory_bytes = 0;          // 0: TensorRT-LLM's free-GPU-memory fraction decides
    c.max_batch_size = 0;           // 0: the engine's build_config.max_batch_size
    c.max_tokens_per_iteration = 0; // 0: the engine's build_config.max_num_tokens
    c.kv_tokens_per_block = 0;      // fixed when the engine is built (trtllm-build --tokens_per_block)
    c.kv_block_count = 0;
    c.num_threads = 0;              // unused: the GPU does the work
    c.max_context_length = 0;       // 0: the engine's max_seq_len
    c.device_id = 0;
    c.max_queued_requests = 0;
    c.enable_prefix_cache = false;  // ignored: TRT-LLM's block reuse stays off (see kvCache below), its stats stay 0
    return c;
}

trtd_sampling_params trtd_sampling_default_params(void)
{
    trtd_sampling_params s{};
    s.seed = 0;
    s.temperature = 0.0f;
    s.top_p = 1.0f;
    s.top_k = 0;
    return s;
}

trtd_status trtd_executor_create(const char* model_dir, const trtd_executor_config* config,
    trtd_executor** executor_out)
{
    if (executor_out == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor_out is NULL");
    }
    *executor_out = nullptr;
    if (model_dir == nullptr || config == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "model_dir and config must not be NULL");
    }
    trtd_executor_config const& cfg = *config;
    if (cfg.max_batch_size < 0 || cfg.max_tokens_per_iteration < 0 || cfg.kv_block_count < 0
        || cfg.kv_memory_bytes < 0 || cfg.max_context_length < 0 || cfg.max_queued_requests < 0
        || cfg.device_id < -1 || cfg.kv_tokens_per_block < 0)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "config: sizes must be >= 0 and device_id >= -1");
    }
    if (cfg.kv_host_cache_bytes != 0)
    {
        // ABI 5's host KV tier keeps evicted prefix-cache blocks; block reuse is off here (see kvCache below).
        return fail(TRTD_STATUS_UNSUPPORTED, "kv_host_cache_bytes: the TensorRT-LLM shim has no host KV tier (0 = off)");
    }

    auto ex = std::make_unique<trtd_executor>();
    try
    {
        ex->info = trtd_shim::readEngineInfo(model_dir);
    }
    catch (std::exception const& e)
    {
        return fail(TRTD_STATUS_MODEL_LOAD, e.what());
    }
    ex->config = cfg;
    trtd_shim::EngineInfo const& info = ex->info;
    // kv_tokens_per_block is fixed when the engine is built (trtllm-build --tokens_per_block): the field is ignored
    // (the workers pass their CPU default) and trtd_executor_kv_layout reports the engine's value.
    if (cfg.max_context_length > info.maxSeqLen)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT,
            "config.max_context_length exceeds the engine's max_seq_len " + std::to_string(info.maxSeqLen));
    }
    ex->maxContextLength = cfg.max_context_length > 0 ? cfg.max_context_length : info.maxSeqLen;

    // Cache transceiver: UCX unless TRTD_TRTLLM_CACHE_BACKEND=NIXL. Set explicitly so that context and
    // generation executors in separate processes can talk (the MPI backend needs one MPI world).
    char const* backendEnv = std::getenv("TRTD_TRTLLM_CACHE_BACKEND");
    std::string const backend = backendEnv != nullptr && *backendEnv != '\0' ? backendEnv : "UCX";
    tle::CacheTransceiverConfig transceiver;
    if (backend == "UCX")
    {
        transceiver.setBackendType(tle::CacheTransceiverConfig::BackendType::UCX);
        ::setenv("TRTLLM_USE_UCX_KVCACHE", "1", 0); // releases before the backend setting read only this
    }
    else if (backend == "NIXL")
    {
        transceiver.setBackendType(tle::CacheTransceiverConfig::BackendType::NIXL);
        ::setenv("TRTLLM_USE_NIXL_KVCACHE", "1", 0);
    }
    else
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "TRTD_TRTLLM_CACHE_BACKEND must be UCX or NIXL, not " + backend);
    }
    // Bounds how long a finished context-only request keeps its KV blocks waiting for the generation side.
    long const transferTimeoutMs = envInt("TRTD_TRTLLM_KV_TRANSFER_TIMEOUT_MS").value_or(kDefaultKvTransferTimeoutMs);
    if (transferTimeoutMs < 1 || transferTimeoutMs > 3600000)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "TRTD_TRTLLM_KV_TRANSFER_TIMEOUT_MS must be in [1, 3600000]");
    }
    transceiver.setKvTransferTimeoutMs(static_cast<int>(transferTimeoutMs));
    ex->contextStateTtl = std::chrono::milliseconds(transferTimeoutMs);
    if (auto maxTokens = envInt("TRTD_TRTLLM_TRANSCEIVER_MAX_TOKENS"); maxTokens && *maxTokens > 0)
    {
        transceiver.setMaxTokensInBuffer(static_cast<size_t>(*maxTokens));
    }

    tle::KvCacheConfig kvCache;
    // Block reuse off, whatever enable_prefix_cache says: TRT-LLM counts reusable blocks as used, so "blocks used"
    // would not return to zero when idle (ABI 4 keeps cached blocks apart, which TRT-LLM's iteration stats cannot).
    kvCache.setEnableBlockReuse(false);
    int64_t kvTokens = 0;
    if (cfg.kv_block_count > 0 && info.tokensPerBlock > 0)
    {
        kvTokens = static_cast<int64_t>(cfg.kv_block_count) * info.tokensPerBlock;
    }
    else if (cfg.kv_memory_bytes > 0)
    {
        int64_t const bytesPerToken = 2LL * info.numLayers * info.numKvHeads * info.headDim * info.kvElementBytes;
        kvTokens = bytesPerToken > 0 ? cfg.kv_memory_bytes / bytesPerToken : 0;
        if (kvTokens < 1)
        {
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "config.kv_memory_bytes is smaller than one token of KV");
        }
    }
    if (kvTokens > 0)
    {
        kvCache.setMaxTokens(static_cast<tle::SizeType32>(std::min<int64_t>(kvTokens, INT32_MAX)));
    }

    tle::ExecutorConfig ec;
    ec.setBatchingType(tle::BatchingType::kINFLIGHT);
    ec.setSchedulerConfig(tle::SchedulerConfig(tle::CapacitySchedulerPolicy::kGUARANTEED_NO_EVICT));
    ec.setKvCacheConfig(kvCache);
    ec.setCacheTransceiverConfig(transceiver);
    ec.setIterStatsMaxIterations(64); // the stats call drains them; only the newest one is used
    // Runtime limits may only shrink what the engine was built for.
    if (cfg.max_batch_size > 0)
    {
        ec.setMaxBatchSize(info.maxBatchSize > 0 ? std::min(cfg.max_batch_size, info.maxBatchSize) : cfg.max_batch_size);
    }
    if (cfg.max_tokens_per_iteration > 0)
    {
        ec.setMaxNumTokens(info.maxNumTokens > 0 ? std::min(cfg.max_tokens_per_iteration, info.maxNumTokens)
                                                 : cfg.max_tokens_per_iteration);
    }
    if (cfg.max_queued_requests > 0)
    {
        ec.setMaxQueueSize(cfg.max_queued_requests);
    }
    // TRTD_TRTLLM_DEVICE_ID picks the GPU per worker process without app flags. Prefer it to CUDA_VISIBLE_DEVICES:
    // UCX moves KV over CUDA IPC / NVLink only between GPUs both processes can see.
    int32_t deviceId = cfg.device_id;
    if (auto env = envInt("TRTD_TRTLLM_DEVICE_ID"))
    {
        if (*env < 0 || *env > 1024)
        {
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "TRTD_TRTLLM_DEVICE_ID must be a GPU ordinal");
        }
        deviceId = static_cast<int32_t>(*env);
    }
    if (deviceId >= 0)
    {
        tle::ParallelConfig parallel;
        parallel.setDeviceIds({deviceId});
        ec.setParallelConfig(parallel);
    }

    try
    {
        initTrtLlmPlugins(nullptr, "tensorrt_llm");
        ex->engine = std::make_unique<tle::Executor>(info.engineDir, tle::ModelType::kDECODER_ONLY, ec);
    }
    catch (std::exception const& e)
    {
        std::string const what = e.what();
        bool const oom = what.find("out of memory") != std::string::npos || what.find("OOM") != std::string::npos;
        return fail(oom ? TRTD_STATUS_OUT_OF_MEMORY : TRTD_STATUS_MODEL_LOAD,
            "TensorRT-LLM Executor(" + info.engineDir + "): " + what);
    }

    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
    {
        ex->engine->shutdown();
        return fail(TRTD_STATUS_INTERNAL, "pipe2 failed for the notify fd");
    }
    ex->notifyRead = fds[0];
    ex->notifyWrite = fds[1];
    trtd_executor* raw = ex.get();
    ex->poller = std::thread([raw] { raw->pollLoop(); });
    *executor_out = ex.release();
    return TRTD_STATUS_OK;
}

void trtd_executor_destroy(trtd_executor* executor)
{
    if (executor == nullptr)
    {
        return;
    }
    executor->stopping.store(true);
    if (executor->poller.joinable())
    {
        executor->poller.join(); // returns within one poll timeout
    }
    if (executor->engine)
    {
        try
        {
            executor->engine->shutdown();
        }
        catch (std::exception const&)
        {
            // destroy cannot report; the engine is dropped below either way
        }
        executor->engine.reset();
    }
    if (executor->notifyRead >= 0 && !executor->notifyTaken)
    {
        ::close(executor->notifyRead);
    }
    if (executor->notifyWrite >= 0)
    {
        ::close(executor->notifyWrite);
    }
    delete executor;
}

trtd_status trtd_executor_model_info(const trtd_executor* executor, trtd_model_info* info_out)
{
    if (executor == nullptr || info_out == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "NULL argument");
    }
    trtd_shim::EngineInfo const& info = executor->info;
    trtd_model_info m{};
    m.vocab_size = info.vocabSize;
    m.num_layers = info.numLayers;
    m.hidden_size = info.hiddenSize;
    m.num_heads = info.numHeads;
    m.num_kv_heads = info.numKvHeads;
    m.head_dim = info.headDim;
    m.max_context_length = executor->maxContextLength;
    int32_t const n = static_cast<int32_t>(std::min<size_t>(info.eosTokenIds.size(), 8));
    m.num_eos_token_ids = n;
    for (int32_t i = 0; i < n; ++i)
    {
        m.eos_token_ids[i] = info.eosTokenIds[i];
    }
    std::snprintf(m.fingerprint, sizeof m.fingerprint, "%s", info.modelFingerprint.c_str());
    *info_out = m;
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_enqueue(trtd_executor* executor, const trtd_request* request, trtd_request_id* id_out)
{
    if (executor == nullptr || request == nullptr || id_out == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "NULL argument");
    }
    if (executor->stopping.load())
    {
        return fail(TRTD_STATUS_SHUT_DOWN, "executor is shutting down");
    }
    trtd_request const& r = *request;
    trtd_shim::EngineInfo const& info = executor->info;
    if (r.type != TRTD_REQUEST_CONTEXT_AND_GENERATION && r.type != TRTD_REQUEST_CONTEXT_ONLY
        && r.type != TRTD_REQUEST_GENERATION_ONLY)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "type: unknown request type " + std::to_string(r.type));
    }
    if (r.prompt == nullptr || r.prompt_len < 1 || r.prompt_len >= executor->maxContextLength)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT,
            "prompt_len: must be in [1, " + std::to_string(executor->maxContextLength) + ")");
    }
    for (int32_t i = 0; i < r.prompt_len; ++i)
    {
        if (r.prompt[i] < 0 || r.prompt[i] >= info.vocabSize)
        {
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "prompt: token id out of range at index " + std::to_string(i));
        }
    }
    if (r.max_new_tokens < 1)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "max_new_tokens: must be >= 1");
    }
    if (r.end_id < -1 || r.end_id >= info.vocabSize)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "end_id: must be -1 or a token id");
    }
    if (r.num_stop_token_ids < 0 || (r.num_stop_token_ids > 0 && r.stop_token_ids == nullptr))
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "stop_token_ids: count and pointer disagree");
    }
    trtd_sampling_params const& s = r.sampling;
    if (!(s.temperature >= 0.0f) || !(s.top_p > 0.0f && s.top_p <= 1.0f) || s.top_k < 0)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "sampling: temperature >= 0, top_p in (0, 1], top_k >= 0");
    }
    if (r.generated_offset < 0)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "generated_offset: must be >= 0");
    }
    if (r.constrained)
    {
        return fail(TRTD_STATUS_UNSUPPORTED,
            "constrained: the TensorRT-LLM shim does not pass token masks to the engine (logits post-processors "
            "are not wired in)");
    }
    if (s.repetition_penalty != 1.0f || s.frequency_penalty != 0.0f || s.presence_penalty != 0.0f || s.min_p != 0.0f
        || r.num_logit_bias != 0 || r.min_new_tokens != 0 || r.logprobs || r.num_top_logprobs != 0)
    {
        // TensorRT-LLM's SamplingConfig has penalties, min tokens and logprobs of its own, with other semantics
        // (its min_p, its logprobs without alternatives); not mapped yet, so refused rather than honoured differently.
        return fail(TRTD_STATUS_UNSUPPORTED,
            "logit controls and logprobs (ABI 4: repetition/frequency/presence penalties, min_p, logit_bias, "
            "min_new_tokens, logprobs) are not offered by the TensorRT-LLM shim");
    }
    if (r.generated_offset != 0)
    {
        // TensorRT-LLM seeds one random stream per request and has no way to start it at a later draw, so a
        // resumed seeded sequence cannot match the uninterrupted one: refuse rather than sample differently.
        return fail(TRTD_STATUS_UNSUPPORTED,
            "generated_offset: TensorRT-LLM cannot start a request's sampling at a later draw; pass 0 "
            "(a resumed sampled sequence then differs from the uninterrupted one)");
    }

    RequestState st;
    st.type = r.type;
    st.endId = r.end_id;
    std::list<tle::VecTokens> stopWords;
    for (int32_t i = 0; i < r.num_stop_token_ids; ++i)
    {
        int32_t const t = r.stop_token_ids[i];
        if (t < 0 || t >= info.vocabSize)
        {
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "stop_token_ids: id out of range at index " + std::to_string(i));
        }
        if (st.stopTokens.insert(t).second)
        {
            stopWords.push_back(tle::VecTokens{t});
        }
    }

    // Prompt + generated tokens must fit the engine's max_seq_len: cap like the reference executor does.
    int32_t const maxNew = std::min(r.max_new_tokens, executor->maxContextLength - r.prompt_len);

    tle::Request req(tle::VecTokens(r.prompt, r.prompt + r.prompt_len), maxNew);
    req.setStreaming(r.type != TRTD_REQUEST_CONTEXT_ONLY);
    tle::OutputConfig output;
    output.excludeInputFromOutput = true;
    req.setOutputConfig(output);
    tle::SamplingConfig sampling;
    if (s.temperature == 0.0f)
    {
        sampling.setTopK(1); // greedy
    }
    else
    {
        sampling.setTemperature(s.temperature);
        if (s.top_k > 0)
        {
            sampling.setTopK(s.top_k);
        }
        if (s.top_p < 1.0f)
        {
            sampling.setTopP(s.top_p);
        }
    }
    sampling.setSeed(s.seed);
    req.setSamplingConfig(sampling);
    if (r.end_id >= 0)
    {
        req.setEndId(r.end_id);
    }
    if (!stopWords.empty())
    {
        req.setStopWords(stopWords);
    }

    switch (r.type)
    {
    case TRTD_REQUEST_CONTEXT_ONLY: req.setRequestType(tle::RequestType::REQUEST_TYPE_CONTEXT_ONLY); break;
    case TRTD_REQUEST_GENERATION_ONLY:
    {
        trtd_context_phase_params const* cp = r.context_phase;
        if (cp == nullptr)
        {
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "context_phase: required for GENERATION_ONLY");
        }
        if (cp->kv_import_id != 0)
        {
            return fail(TRTD_STATUS_ENGINE_NATIVE_TRANSFER,
                "context_phase.kv_import_id: the TensorRT-LLM shim moves KV itself; pass opaque_state");
        }
        if (cp->opaque_state == nullptr || cp->opaque_state_size == 0)
        {
            return fail(TRTD_STATUS_INVALID_ARGUMENT,
                "context_phase.opaque_state: required (from trtd_executor_context_phase_state on the context side)");
        }
        trtd_shim::ContextPhaseBlob blob;
        std::string error;
        if (!trtd_shim::decodeContextPhaseBlob(
                cp->opaque_state, static_cast<size_t>(cp->opaque_state_size), blob, error))
        {
            return fail(TRTD_STATUS_INVALID_ARGUMENT, error);
        }
        if (blob.modelFingerprint != info.modelFingerprint)
        {
            return fail(TRTD_STATUS_INVALID_ARGUMENT,
                "context_phase.opaque_state: from model " + blob.modelFingerprint + ", this engine is "
                    + info.modelFingerprint);
        }
        if (blob.firstGenTokens.front() != cp->first_token)
        {
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "context_phase.first_token differs from the opaque state's");
        }
        st.firstToken = cp->first_token;
        req.setRequestType(tle::RequestType::REQUEST_TYPE_GENERATION_ONLY);
        req.setContextPhaseParams(
            tle::ContextPhaseParams(blob.firstGenTokens, blob.contextRequestId, blob.serializedState, std::nullopt));
        break;
    }
    default: req.setRequestType(tle::RequestType::REQUEST_TYPE_CONTEXT_AND_GENERATION); break;
    }

    // Hold mu across enqueueRequest so the poller cannot merge a response before the id mapping exists.
    std::lock_guard<std::mutex> lock(executor->mu);
    try
    {
        st.engineId = executor->engine->enqueueRequest(req);
    }
    catch (std::exception const& e)
    {
        std::string const what = e.what();
        if (what.find("queue") != std::string::npos && executor->config.max_queued_requests > 0)
        {
            return fail(TRTD_STATUS_KV_EXHAUSTED, "request queue is full: " + what);
        }
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "TensorRT-LLM refused the request: " + what);
    }
    trtd_request_id const id = executor->nextId++;
    executor->byEngineId[st.engineId] = id;
    executor->requests.emplace(id, std::move(st));
    if (r.type != TRTD_REQUEST_GENERATION_ONLY)
    {
        executor->promptTokens += static_cast<uint64_t>(r.prompt_len);
    }
    *id_out = id;
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_set_token_mask(trtd_executor* executor, trtd_request_id, uint32_t const*, int32_t)
{
    if (executor == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL");
    }
    return fail(TRTD_STATUS_UNSUPPORTED, "the TensorRT-LLM shim does not offer constrained decoding");
}

trtd_status trtd_executor_cancel(trtd_executor* executor, trtd_request_id id)
{
    if (executor == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL");
    }
    tle::IdType engineId = 0;
    {
        std::lock_guard<std::mutex> lock(executor->mu);
        auto it = executor->requests.find(id);
        auto pend = executor->ready.find(id);
        bool const finalQueued = pend != executor->ready.end() && pend->second.isFinal;
        if (it == executor->requests.end() || finalQueued || it->second.cancelRequested)
        {
            return fail(TRTD_STATUS_NOT_FOUND, "request " + std::to_string(id) + " is unknown or finished");
        }
        it->second.cancelRequested = true;
        engineId = it->second.engineId;
    }
    try
    {
        executor->engine->cancelRequest(engineId);
    }
    catch (std::exception const& e)
    {
        return fail(TRTD_STATUS_INTERNAL, std::string("cancelRequest: ") + e.what());
    }
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_await_responses_ext(trtd_executor* executor, int32_t timeout_ms, trtd_response* responses,
    int32_t max_responses, trtd_token* tokens, int32_t max_tokens, trtd_token_logprobs* logprobs,
    int32_t* num_responses_out)
{
    // No request here records logprobs (enqueue refuses them): every entry is "not recorded".
    trtd_status const st = trtd_executor_await_responses(
        executor, timeout_ms, responses, max_responses, tokens, max_tokens, num_responses_out);
    if (st == TRTD_STATUS_OK && logprobs != nullptr)
    {
        for (int32_t i = 0; i < max_tokens; ++i)
        {
            logprobs[i] = trtd_token_logprobs{};
            logprobs[i].num_top = -1;
        }
    }
    return st;
}

trtd_status trtd_executor_await_responses(trtd_executor* executor, int32_t timeout_ms, trtd_response* responses,
    int32_t max_responses, trtd_token* tokens, int32_t max_tokens, int32_t* num_responses_out)
{
    if (executor == nullptr || num_responses_out == nullptr || responses == nullptr || max_responses < 1
        || max_tokens < 0 || (max_tokens > 0 && tokens == nullptr) || timeout_ms < -1)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "await_responses: bad buffers or timeout");
    }
    *num_responses_out = 0;
    std::unique_lock<std::mutex> lock(executor->mu);
    auto const hasReady = [executor] { return !executor->readyOrder.empty(); };
    if (timeout_ms < 0)
    {
        executor->responsesReady.wait(lock, hasReady);
    }
    else if (timeout_ms > 0)
    {
        executor->responsesReady.wait_for(lock, std::chrono::milliseconds(timeout_ms), hasReady);
    }

    int32_t count = 0;
    int32_t used = 0;
    while (!executor->readyOrder.empty() && count < max_responses)
    {
        trtd_request_id const id = executor->readyOrder.front();
        Pending& p = executor->ready.at(id);
        int32_t const room = max_tokens - used;
        int32_t const n = static_cast<int32_t>(p.tokens.size());
        if (n > 0 && room == 0)
        {
            break;
        }
        int32_t const take = std::min(n, room);
        bool const complete = take == n;
        trtd_response& out = responses[count++];
        std::memset(&out, 0, sizeof out);
        out.request_id = id;
        out.token_offset = used;
        out.num_tokens = take;
        if (take > 0)
        {
            std::memcpy(tokens + used, p.tokens.data(), sizeof(int32_t) * static_cast<size_t>(take));
        }
        used += take;
        if (!complete)
        {
            p.tokens.erase(p.tokens.begin(), p.tokens.begin() + take);
            out.is_final = false; // the rest stays queued
            break;
        }
        out.is_final = p.isFinal;
        out.finish_reason = p.isFinal ? p.finishReason : TRTD_FINISH_NOT_FINISHED;
        out.error_status = p.errorStatus;
        std::snprintf(out.error_message, sizeof out.error_message, "%s", p.errorMessage.c_str());
        if (p.isFinal)
        {
            executor->requests.erase(id);
        }
        executor->ready.erase(id);
        executor->readyOrder.pop_front();
    }
    *num_responses_out = count;
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_notify_fd(trtd_executor* executor, bool take, int32_t* fd_out)
{
    if (executor == nullptr || fd_out == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "NULL argument");
    }
    std::lock_guard<std::mutex> lock(executor->mu);
    if (executor->notifyTaken)
    {
        return fail(TRTD_STATUS_INVALID_STATE, "the notify fd was already taken");
    }
    *fd_out = executor->notifyRead;
    if (take)
    {
        executor->notifyTaken = true;
    }
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_context_phase_state(trtd_executor* executor, trtd_request_id id, void* buffer,
    uint64_t buffer_size, uint64_t* size_out)
{
    if (executor == nullptr || size_out == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "NULL argument");
    }
    std::lock_guard<std::mutex> lock(executor->mu);
    auto it = executor->contextStates.find(id);
    if (it == executor->contextStates.end())
    {
        return fail(TRTD_STATUS_NOT_FOUND,
            "request " + std::to_string(id) + " is not a finished context-only request with state");
    }
    std::vector<uint8_t> const& bytes = it->second.bytes;
    *size_out = bytes.size();
    if (buffer == nullptr)
    {
        return TRTD_STATUS_OK;
    }
    if (buffer_size < bytes.size())
    {
        return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "buffer smaller than the context phase state");
    }
    std::memcpy(buffer, bytes.data(), bytes.size());
    return TRTD_STATUS_OK;
}

// KV events (ABI 4): block reuse stays off in this shim (see the KvCacheConfig in create), so there is no prefix
// cache to report; TRT-LLM's own KV event manager could feed these later.
trtd_status trtd_executor_kv_events(trtd_executor* executor, trtd_kv_event* events, int32_t max_events, int32_t* num_events_out, bool* lost_out)
{
    (void) events;
    (void) max_events;
    if (num_events_out != nullptr)
    {
        *num_events_out = 0;
    }
    if (lost_out != nullptr)
    {
        *lost_out = false;
    }
    return fail(executor == nullptr ? TRTD_STATUS_INVALID_ARGUMENT : TRTD_STATUS_UNSUPPORTED, "the TensorRT-LLM shim keeps no prefix cache");
}

trtd_status trtd_executor_kv_cache_snapshot(trtd_executor* executor, uint64_t* hashes, int32_t max_hashes, int32_t* num_hashes_out)
{
    (void) hashes;
    (void) max_hashes;
    if (num_hashes_out != nullptr)
    {
        *num_hashes_out = 0;
    }
    return fail(executor == nullptr ? TRTD_STATUS_INVALID_ARGUMENT : TRTD_STATUS_UNSUPPORTED, "the TensorRT-LLM shim keeps no prefix cache");
}

trtd_status trtd_executor_get_stats(trtd_executor* executor, trtd_executor_stats* stats_out)
{
    if (executor == nullptr || stats_out == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "NULL argument");
    }
    trtd_executor_stats s{};
    {
        std::lock_guard<std::mutex> lock(executor->statsMu);
        try
        {
            std::deque<tle::IterationStats> latest = executor->engine->getLatestIterationStats();
            if (!latest.empty())
            {
                executor->lastStats = latest.back();
                executor->haveStats = true;
                executor->iterations = std::max<uint64_t>(executor->iterations, latest.back().iter + 1);
            }
        }
        catch (std::exception const& e)
        {
            return fail(TRTD_STATUS_INTERNAL, std::string("getLatestIterationStats: ") + e.what());
        }
        s.iterations = executor->iterations;
        if (executor->haveStats && executor->lastStats.kvCacheStats.has_value())
        {
            tle::KvCacheStats const& kv = *executor->lastStats.kvCacheStats;
            s.kv_blocks_total = kv.maxNumBlocks;
            s.kv_blocks_used = kv.usedNumBlocks;
            s.kv_blocks_free = kv.freeNumBlocks;
        }
    }
    std::lock_guard<std::mutex> lock(executor->mu);
    // Live requests are counted here (iteration stats go stale while the engine idles); the queued share
    // comes from the newest iteration.
    int32_t live = 0;
    for (auto const& [id, st] : executor->requests)
    {
        auto pend = executor->ready.find(id);
        if (pend == executor->ready.end() || !pend->second.isFinal)
        {
            ++live;
        }
    }
    int32_t const queued = executor->haveStats ? std::min(live, executor->lastStats.numQueuedRequests) : 0;
    s.queued_requests = queued;
    s.active_requests = live - queued;
    s.generated_tokens = executor->generatedTokens;
    s.prompt_tokens = executor->promptTokens;
    s.pinned_exports = static_cast<int32_t>(executor->contextStates.size());
    s.pending_imports = 0;
    *stats_out = s;
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_kv_layout(const trtd_executor* executor, trtd_kv_layout* layout_out)
{
    if (executor == nullptr || layout_out == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "NULL argument");
    }
    trtd_shim::EngineInfo const& info = executor->info;
    trtd_kv_layout l{};
    l.num_layers = info.numLayers;
    l.num_kv_heads = info.numKvHeads;
    l.head_dim = info.headDim;
    l.tokens_per_block = info.tokensPerBlock;
    l.dtype = info.kvDtype;
    l.memory_kind = TRTD_MEMORY_CUDA_DEVICE;
    l.bytes_per_block = 2ULL * static_cast<uint64_t>(info.numLayers) * static_cast<uint64_t>(info.numKvHeads)
        * static_cast<uint64_t>(info.headDim) * static_cast<uint64_t>(info.tokensPerBlock)
        * static_cast<uint64_t>(info.kvElementBytes);
    std::string const fp = trtd_shim::fnv1aHex(info.modelFingerprint + "|tpb=" + std::to_string(info.tokensPerBlock));
    std::snprintf(l.fingerprint, sizeof l.fingerprint, "%s", fp.c_str());
    *layout_out = l;
    return TRTD_STATUS_OK;
}

// KV bytes never leave the engine: TensorRT-LLM's cache transceiver moves them GPU to GPU. These calls say so.
static trtd_status engineNative(char const* what)
{
    return fail(TRTD_STATUS_ENGINE_NATIVE_TRANSFER,
        std::string(what) + ": KV moves inside TensorRT-LLM (cache transceiver); carry "
                            "trtd_executor_context_phase_state to the generation executor instead");
}

trtd_status trtd_executor_device_uuid(trtd_executor const* executor, char*, int32_t)
{
    return executor == nullptr ? fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL") : engineNative("device_uuid");
}

trtd_status trtd_executor_kv_export_device(trtd_executor* executor, trtd_request_id, void*, uint64_t, uint64_t* size_out)
{
    if (size_out != nullptr)
        *size_out = 0;
    return executor == nullptr ? fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL")
                               : engineNative("kv_export_device");
}

trtd_status trtd_executor_kv_import_device(trtd_executor* executor, trtd_kv_import_id, void const*, uint64_t)
{
    return executor == nullptr ? fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL")
                               : engineNative("kv_import_device");
}

trtd_status trtd_executor_kv_export_info(trtd_executor* executor, trtd_request_id, trtd_kv_export_info*)
{
    return executor == nullptr ? fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL")
                               : engineNative("kv_export_info");
}

trtd_status trtd_executor_kv_export_segments(trtd_executor* executor, trtd_request_id, trtd_kv_segment*, int32_t,
    int32_t*)
{
    return executor == nullptr ? fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL")
                               : engineNative("kv_export_segments");
}

trtd_status trtd_executor_kv_export_copy(trtd_executor* executor, trtd_request_id, void*, uint64_t)
{
    return executor == nullptr ? fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL")
                               : engineNative("kv_export_copy");
}

// Forgets the context phase state of a finished context-only request (the prefill worker's one release path,
// shared with the reference executor). The KV blocks themselves are freed by TensorRT-LLM once the generation
// side has pulled them, or after TRTD_TRTLLM_KV_TRANSFER_TIMEOUT_MS.
trtd_status trtd_executor_kv_export_release(trtd_executor* executor, trtd_request_id id)
{
    if (executor == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL");
    }
    std::lock_guard<std::mutex> lock(executor->mu);
    if (executor->contextStates.erase(id) == 0)
    {
        return fail(TRTD_STATUS_NOT_FOUND, "no context phase state for request " + std::to_string(id));
    }
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_kv_import_reserve(trtd_executor* executor, int32_t, trtd_kv_import_id* import_id_out)
{
    if (import_id_out != nullptr)
    {
        *import_id_out = 0;
    }
    return executor == nullptr ? fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL")
                               : engineNative("kv_import_reserve");
}

trtd_status trtd_executor_kv_import_segments(trtd_executor* executor, trtd_kv_import_id, trtd_kv_segment*, int32_t,
    int32_t*)
{
    return executor == nullptr ? fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL")
                               : engineNative("kv_import_segments");
}

trtd_status trtd_executor_kv_import_abort(trtd_executor* executor, trtd_kv_import_id)
{
    return executor == nullptr ? fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL")
                               : engineNative("kv_import_abort");
}

trtd_status trtd_executor_compute_logits(trtd_executor* executor, const trtd_token*, int32_t, float*, int64_t)
{
    return fail(executor == nullptr ? TRTD_STATUS_INVALID_ARGUMENT : TRTD_STATUS_UNSUPPORTED,
        "compute_logits is a reference-executor debugging aid; the TensorRT-LLM shim does not offer it");
}

} // extern "C"
