// FAKE TensorRT-LLM: a TEST DOUBLE of the part of tensorrt_llm::executor that the shim calls, defined against the
// same executor.h declarations, so the shim's own logic (request building, response merging, buffered drains,
// finish reasons, context-phase state, cancel, stats) runs and is tested on machines without TensorRT-LLM.
// The "model" is a toy: the next token is a hash of the sequence so far. It follows TensorRT-LLM's documented
// behaviour where the shim depends on it: streaming responses carry new tokens; a non-streaming context-only
// result carries the first token and ContextPhaseParams with a state; a generation-only request's output starts
// with that first token; the end id is left out of the output; stop words are kept; cancel ends with kCANCELLED.
// It says nothing about whether real TensorRT-LLM behaves so: only a GPU run does.
#include "tensorrt_llm/executor/executor.h"

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

namespace tle = tensorrt_llm::executor;

extern "C" bool initTrtLlmPlugins(void*, char const*)
{
    return true;
}

namespace fake
{
// What the fake's "cache transceiver" state holds: the context's prompt and first token.
struct State
{
    std::vector<int32_t> prompt;
    int32_t firstToken;
};

int32_t nextToken(std::vector<int32_t> const& seq, uint64_t seed, int32_t vocab)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (int32_t t : seq)
    {
        h = (h ^ static_cast<uint64_t>(t)) * 1099511628211ULL;
    }
    return static_cast<int32_t>(h % static_cast<uint64_t>(vocab));
}
} // namespace fake

namespace tensorrt_llm::executor
{

char const* version() noexcept
{
    return "fake-1.2 (test double)";
}

// ---- configs: only what the shim sets, stored in the declared members ----

SamplingConfig::SamplingConfig(SizeType32 beamWidth, std::optional<SizeType32> const& topK,
    std::optional<FloatType> const& topP, std::optional<FloatType> const&, std::optional<TokenIdType> const&,
    std::optional<FloatType> const&, std::optional<RandomSeedType> const& seed,
    std::optional<FloatType> const& temperature, std::optional<SizeType32> const&, std::optional<FloatType> const&,
    std::optional<FloatType> const&, std::optional<FloatType> const&, std::optional<FloatType> const&,
    std::optional<SizeType32> const&, std::optional<FloatType> const&, std::optional<SizeType32> const&,
    std::optional<SizeType32> const&, std::optional<SizeType32> const&, std::optional<FloatType> const&,
    std::optional<std::vector<SizeType32>> const&)
    : mBeamWidth(beamWidth)
    , mTopK(topK)
    , mTopP(topP)
    , mSeed(seed)
    , mTemperature(temperature)
    , mNumReturnBeams(1)
{
}

void SamplingConfig::setTopK(std::optional<SizeType32> const& v)
{
    mTopK = v;
}

void SamplingConfig::setTopP(std::optional<FloatType> const& v)
{
    mTopP = v;
}

void SamplingConfig::setSeed(std::optional<RandomSeedType> const& v)
{
    mSeed = v;
}

void SamplingConfig::setTemperature(std::optional<FloatType> const& v)
{
    mTemperature = v;
}

std::optional<SizeType32> SamplingConfig::getTopK() const
{
    return mTopK;
}

std::optional<RandomSeedType> SamplingConfig::getSeed() const
{
    return mSeed;
}

OutputConfig::OutputConfig(bool a, bool b, bool c, bool excludeInput, bool e, bool f,
    std::optional<std::vector<AdditionalModelOutput>> g)
    : returnLogProbs(a)
    , returnContextLogits(b)
    , returnGenerationLogits(c)
    , excludeInputFromOutput(excludeInput)
    , returnEncoderOutput(e)
    , returnPerfMetrics(f)
    , additionalModelOutputs(std::move(g))
{
}

SchedulerConfig::SchedulerConfig(CapacitySchedulerPolicy p, std::optional<ContextChunkingPolicy> c,
    std::optional<DynamicBatchConfig> d)
    : mCapacitySchedulerPolicy(p)
    , mContextChunkingPolicy(c)
    , mDynamicBatchConfig(std::move(d))
{
}

KvCacheConfig::KvCacheConfig(bool enableBlockReuse, std::optional<SizeType32> const& maxTokens,
    std::optional<std::vector<SizeType32>> const&, std::optional<SizeType32> const&, std::optional<FloatType> const&,
    std::optional<size_t> const&, bool onboardBlocks, std::optional<FloatType> const&, std::optional<RetentionPriority>,
    size_t eventBufferMaxSize, bool enablePartialReuse, bool copyOnPartialReuse, bool useUvm,
    SizeType32 attentionDpEventsGatherPeriodMs, std::optional<tensorrt_llm::runtime::RuntimeDefaults> const&,
    uint64_t const& maxGpuTotalBytes)
    : mEnableBlockReuse(enableBlockReuse)
    , mMaxTokens(maxTokens)
    , mOnboardBlocks(onboardBlocks)
    , mEventBufferMaxSize(eventBufferMaxSize)
    , mEnablePartialReuse(enablePartialReuse)
    , mCopyOnPartialReuse(copyOnPartialReuse)
    , mUseUvm(useUvm)
    , mAttentionDpEventsGatherPeriodMs(attentionDpEventsGatherPeriodMs)
    , mMaxGpuTotalBytes(maxGpuTotalBytes)
{
}

void KvCacheConfig::setEnableBlockReuse(bool v)
{
    mEnableBlockReuse = v;
}

void KvCacheConfig::setMaxTokens(std::optional<SizeType32> v)
{
    mMaxTokens = v;
}

std::optional<SizeType32> KvCacheConfig::getMaxTokens() const
{
    return mMaxTokens;
}

ExtendedRuntimePerfKnobConfig::ExtendedRuntimePerfKnobConfig(bool a, bool b, bool c, SizeType32 d)
    : mMultiBlockMode(a)
    , mEnableContextFMHAFP32Acc(b)
    , mCudaGraphMode(c)
    , mCudaGraphCacheSize(d)
{
}

ParallelConfig::ParallelConfig(CommunicationType t, CommunicationMode m, std::optional<std::vector<SizeType32>> d,
    std::optional<std::vector<SizeType32>> p, std::optional<OrchestratorConfig> const&, std::optional<SizeType32> n)
    : mCommType(t)
    , mCommMode(m)
    , mDeviceIds(std::move(d))
    , mParticipantIds(std::move(p))
    , mNumNodes(n)
{
}

void ParallelConfig::setDeviceIds(std::vector<SizeType32> const& ids)
{
    mDeviceIds = ids;
}

CacheTransceiverConfig::CacheTransceiverConfig(std::optional<BackendType> backend, std::optional<size_t> maxTokens,
    std::optional<int> timeoutMs, std::optional<int> senderTimeoutMs)
    : mBackendType(backend)
    , mMaxTokensInBuffer(maxTokens)
    , mKvTransferTimeoutMs(timeoutMs)
    , mKvTransferSenderFutureTimeoutMs(senderTimeoutMs)
{
}

void CacheTransceiverConfig::setBackendType(std::optional<BackendType> v)
{
    mBackendType = v;
}

void CacheTransceiverConfig::setMaxTokensInBuffer(std::optional<size_t> v)
{
    mMaxTokensInBuffer = v;
}

void CacheTransceiverConfig::setKvTransferTimeoutMs(std::optional<int> v)
{
    mKvTransferTimeoutMs = v;
}

std::optional<CacheTransceiverConfig::BackendType> CacheTransceiverConfig::getBackendType() const
{
    return mBackendType;
}

ExecutorConfig::ExecutorConfig(SizeType32 maxBeamWidth, SchedulerConfig schedulerConfig, KvCacheConfig kvCacheConfig,
    bool enableChunkedContext, bool normalizeLogProbs, SizeType32 iterStatsMaxIterations,
    SizeType32 requestStatsMaxIterations, BatchingType batchingType, std::optional<SizeType32> maxBatchSize,
    std::optional<SizeType32> maxNumTokens, std::optional<ParallelConfig> parallelConfig,
    std::optional<PeftCacheConfig> const&, std::optional<LogitsPostProcessorConfig>, std::optional<DecodingConfig>,
    bool, float gpuWeightsPercent, std::optional<SizeType32> maxQueueSize,
    ExtendedRuntimePerfKnobConfig const& knobs, std::optional<DebugConfig>, SizeType32 recvPollPeriodMs,
    uint64_t maxSeqIdleMicroseconds, std::optional<SpeculativeDecodingConfig>, std::optional<GuidedDecodingConfig>,
    std::optional<std::vector<AdditionalModelOutput>>, std::optional<CacheTransceiverConfig> cacheTransceiverConfig,
    bool, bool, bool, bool)
    : mMaxBeamWidth(maxBeamWidth)
    , mSchedulerConfig(std::move(schedulerConfig))
    , mKvCacheConfig(std::move(kvCacheConfig))
    , mEnableChunkedContext(enableChunkedContext)
    , mNormalizeLogProbs(normalizeLogProbs)
    , mIterStatsMaxIterations(iterStatsMaxIterations)
    , mRequestStatsMaxIterations(requestStatsMaxIterations)
    , mBatchingType(batchingType)
    , mMaxBatchSize(maxBatchSize)
    , mMaxNumTokens(maxNumTokens)
    , mParallelConfig(std::move(parallelConfig))
    , mUseGpuDirectStorage(false)
    , mGpuWeightsPercent(gpuWeightsPercent)
    , mMaxQueueSize(maxQueueSize)
    , mExtendedRuntimePerfKnobConfig(knobs)
    , mRecvPollPeriodMs(recvPollPeriodMs)
    , mMaxSeqIdleMicroseconds(maxSeqIdleMicroseconds)
    , mCacheTransceiverConfig(std::move(cacheTransceiverConfig))
{
}

void ExecutorConfig::setBatchingType(BatchingType v)
{
    mBatchingType = v;
}

void ExecutorConfig::setSchedulerConfig(SchedulerConfig const& v)
{
    mSchedulerConfig = v;
}

void ExecutorConfig::setKvCacheConfig(KvCacheConfig const& v)
{
    mKvCacheConfig = v;
}

void ExecutorConfig::setCacheTransceiverConfig(CacheTransceiverConfig const& v)
{
    mCacheTransceiverConfig = v;
}

void ExecutorConfig::setIterStatsMaxIterations(SizeType32 v)
{
    mIterStatsMaxIterations = v;
}

void ExecutorConfig::setMaxBatchSize(SizeType32 v)
{
    mMaxBatchSize = v;
}

void ExecutorConfig::setMaxNumTokens(SizeType32 v)
{
    mMaxNumTokens = v;
}

void ExecutorConfig::setMaxQueueSize(std::optional<SizeType32> const& v)
{
    mMaxQueueSize = v;
}

void ExecutorConfig::setParallelConfig(ParallelConfig const& v)
{
    mParallelConfig = v;
}

// ---- ContextPhaseParams ----

void ContextPhaseParams::deleter(void const* data)
{
    delete static_cast<fake::State const*>(data);
}

ContextPhaseParams::ContextPhaseParams(VecTokens firstGenTokens, RequestIdType reqId, void* state,
    std::optional<VecTokens> draftTokens)
    : mReqId(reqId)
    , mFirstGenTokens(std::move(firstGenTokens))
    , mState(state, deleter)
    , mDraftTokens(std::move(draftTokens))
{
}

ContextPhaseParams::ContextPhaseParams(VecTokens firstGenTokens, RequestIdType reqId,
    std::vector<char> const& serializedState, std::optional<VecTokens> draftTokens)
    : mReqId(reqId)
    , mFirstGenTokens(std::move(firstGenTokens))
    , mDraftTokens(std::move(draftTokens))
{
    // The fake's serialization: int32 first token, then the prompt's int32 tokens.
    if (serializedState.size() < 4 || serializedState.size() % 4 != 0)
    {
        throw std::runtime_error("fake: malformed serialized context state");
    }
    auto* s = new fake::State();
    std::memcpy(&s->firstToken, serializedState.data(), 4);
    s->prompt.resize(serializedState.size() / 4 - 1);
    std::memcpy(s->prompt.data(), serializedState.data() + 4, s->prompt.size() * 4);
    mState.reset(s);
}

ContextPhaseParams::ContextPhaseParams(ContextPhaseParams const& o)
    : mReqId(o.mReqId)
    , mFirstGenTokens(o.mFirstGenTokens)
    , mState(o.mState ? new fake::State(*static_cast<fake::State const*>(o.mState.get())) : nullptr, deleter)
    , mDraftTokens(o.mDraftTokens)
{
}

ContextPhaseParams::ContextPhaseParams(ContextPhaseParams&& o) noexcept = default;

ContextPhaseParams& ContextPhaseParams::operator=(ContextPhaseParams const& o)
{
    if (this != &o)
    {
        ContextPhaseParams copy(o);
        *this = std::move(copy);
    }
    return *this;
}

ContextPhaseParams& ContextPhaseParams::operator=(ContextPhaseParams&& o) noexcept = default;

ContextPhaseParams::~ContextPhaseParams() = default;

VecTokens const& ContextPhaseParams::getFirstGenTokens() const& noexcept
{
    return mFirstGenTokens;
}

ContextPhaseParams::RequestIdType ContextPhaseParams::getReqId() const noexcept
{
    return mReqId;
}

void const* ContextPhaseParams::getState() const noexcept
{
    return mState.get();
}

void* ContextPhaseParams::getState() noexcept
{
    return mState.get();
}

std::vector<char> ContextPhaseParams::getSerializedState() const noexcept
{
    auto const* s = static_cast<fake::State const*>(mState.get()); // real TensorRT-LLM dereferences it too
    std::vector<char> out(4 + 4 * s->prompt.size());
    std::memcpy(out.data(), &s->firstToken, 4);
    std::memcpy(out.data() + 4, s->prompt.data(), 4 * s->prompt.size());
    return out;
}

// ---- Request ----

class Request::Impl
{
public:
    VecTokens input;
    SizeType32 maxTokens = 0;
    bool streaming = false;
    SamplingConfig sampling;
    OutputConfig output;
    std::optional<SizeType32> endId;
    std::list<VecTokens> stopWords;
    RequestType type = RequestType::REQUEST_TYPE_CONTEXT_AND_GENERATION;
    std::optional<ContextPhaseParams> contextPhase;
};

Request::Request(VecTokens inputTokenIds, SizeType32 maxTokens, bool streaming, SamplingConfig const& samplingConfig,
    OutputConfig const& outputConfig, std::optional<SizeType32> const& endId, std::optional<SizeType32> const&,
    std::optional<std::vector<SizeType32>>, std::optional<std::list<VecTokens>>,
    std::optional<std::list<VecTokens>> stopWords, std::optional<Tensor>, std::optional<ExternalDraftTokensConfig>,
    std::optional<PromptTuningConfig>, std::optional<MultimodalInput>, std::optional<Tensor>,
    std::optional<MropeConfig>, std::optional<LoraConfig>, std::optional<LookaheadDecodingConfig>,
    std::optional<KvCacheRetentionConfig>, std::optional<std::string>, std::optional<LogitsPostProcessor>,
    std::optional<VecTokens>, std::optional<IdType>, bool, PriorityType, RequestType type,
    std::optional<ContextPhaseParams> contextPhaseParams, std::optional<Tensor>, std::optional<SizeType32>,
    std::optional<Tensor>, SizeType32, std::optional<EagleConfig>, std::optional<Tensor>,
    std::optional<GuidedDecodingParams>, std::optional<SizeType32>, std::optional<MillisecondsType>,
    std::optional<CacheSaltIDType>)
    : mImpl(std::make_unique<Impl>())
{
    mImpl->input = std::move(inputTokenIds);
    mImpl->maxTokens = maxTokens;
    mImpl->streaming = streaming;
    mImpl->sampling = samplingConfig;
    mImpl->output = outputConfig;
    mImpl->endId = endId;
    if (stopWords)
    {
        mImpl->stopWords = *stopWords;
    }
    mImpl->type = type;
    mImpl->contextPhase = std::move(contextPhaseParams);
}

Request::Request(Request const& o)
    : mImpl(std::make_unique<Impl>(*o.mImpl))
{
}

Request::~Request() = default;

void Request::setStreaming(bool v)
{
    mImpl->streaming = v;
}

void Request::setSamplingConfig(SamplingConfig const& v)
{
    mImpl->sampling = v;
}

void Request::setOutputConfig(OutputConfig const& v)
{
    mImpl->output = v;
}

void Request::setEndId(SizeType32 v)
{
    mImpl->endId = v;
}

void Request::setStopWords(std::list<VecTokens> const& v)
{
    mImpl->stopWords = v;
}

void Request::setRequestType(RequestType const& v)
{
    mImpl->type = v;
}

void Request::setContextPhaseParams(ContextPhaseParams v)
{
    mImpl->contextPhase = std::move(v);
}

VecTokens Request::getInputTokenIds() const
{
    return mImpl->input;
}

SizeType32 Request::getMaxTokens() const
{
    return mImpl->maxTokens;
}

bool Request::getStreaming() const
{
    return mImpl->streaming;
}

SamplingConfig Request::getSamplingConfig() const
{
    return mImpl->sampling;
}

OutputConfig Request::getOutputConfig() const
{
    return mImpl->output;
}

std::optional<SizeType32> Request::getEndId() const
{
    return mImpl->endId;
}

std::optional<std::list<VecTokens>> Request::getStopWords() const
{
    return mImpl->stopWords;
}

RequestType Request::getRequestType() const
{
    return mImpl->type;
}

std::optional<ContextPhaseParams> const& Request::getContextPhaseParams() const
{
    return mImpl->contextPhase;
}

// ---- Response ----

class Response::Impl
{
public:
    IdType id = 0;
    std::optional<std::string> error;
    std::optional<Result> result;
};

Response::Response(IdType requestId, std::string errorMsg, std::optional<IdType>)
    : mImpl(std::make_unique<Impl>())
{
    mImpl->id = requestId;
    mImpl->error = std::move(errorMsg);
}

Response::Response(IdType requestId, Result result, std::optional<IdType>)
    : mImpl(std::make_unique<Impl>())
{
    mImpl->id = requestId;
    mImpl->result = std::move(result);
}

Response::~Response() = default;

Response::Response(Response const& o)
    : mImpl(std::make_unique<Impl>(*o.mImpl))
{
}

Response::Response(Response&& o) noexcept = default;

Response& Response::operator=(Response const& o)
{
    mImpl = std::make_unique<Impl>(*o.mImpl);
    return *this;
}

Response& Response::operator=(Response&& o) noexcept = default;

IdType Response::getRequestId() const
{
    return mImpl->id;
}

bool Response::hasError() const
{
    return mImpl->error.has_value();
}

std::string const& Response::getErrorMsg() const
{
    if (!mImpl->error)
    {
        throw std::runtime_error("fake: no error in this response");
    }
    return *mImpl->error;
}

Result const& Response::getResult() const
{
    if (!mImpl->result)
    {
        throw std::runtime_error("fake: no result in this response");
    }
    return *mImpl->result;
}

// ---- Executor: one engine thread, one token per live request per iteration ----

class Executor::Impl
{
public:
    struct Req
    {
        VecTokens input;
        SizeType32 maxTokens = 0;
        SamplingConfig sampling;
        std::optional<SizeType32> endId;
        std::list<VecTokens> stopWords;
        RequestType type = RequestType::REQUEST_TYPE_CONTEXT_AND_GENERATION;
        std::optional<ContextPhaseParams> contextPhase;
    };
    struct Live
    {
        IdType id;
        Req req;
        std::vector<int32_t> seq; // prompt + generated
        int32_t generated = 0;
        bool firstSent = false;   // generation-only: the context's first token is emitted first
        bool cancel = false;
    };

    int32_t vocab = 0;
    bool transceiver = false;
    std::mutex mu;
    std::condition_variable cv;
    std::condition_variable work;
    std::deque<Live> live;
    std::deque<Response> ready;
    std::deque<IterationStats> stats;
    IdType nextId = 1;
    uint64_t iter = 0;
    bool stop = false;
    std::thread thread;

    Result finalResult(Live& l, VecTokens tokens, FinishReason reason)
    {
        Result r{};
        r.isFinal = true;
        r.isSequenceFinal = true;
        r.outputTokenIds = {std::move(tokens)};
        r.finishReasons = {reason};
        return r;
    }

    void step()
    {
        ++iter;
        for (auto it = live.begin(); it != live.end();)
        {
            Live& l = *it;
            if (l.cancel)
            {
                ready.emplace_back(l.id, finalResult(l, {}, FinishReason::kCANCELLED));
                it = live.erase(it);
                continue;
            }
            int32_t token;
            if (l.req.type == RequestType::REQUEST_TYPE_GENERATION_ONLY && !l.firstSent)
            {
                token = static_cast<fake::State const*>(l.req.contextPhase->getState())->firstToken;
                l.firstSent = true;
            }
            else
            {
                uint64_t const seed = l.req.sampling.getTopK() == 1 ? 0 : l.req.sampling.getSeed().value_or(0);
                token = fake::nextToken(l.seq, seed, vocab);
            }
            l.seq.push_back(token);
            ++l.generated;
            bool const isEnd = l.req.endId && token == *l.req.endId;
            bool isStop = false;
            for (auto const& w : l.req.stopWords)
            {
                isStop = isStop || (w.size() == 1 && w[0] == token);
            }
            VecTokens out = isEnd ? VecTokens{} : VecTokens{token}; // the end id is left out, as in TensorRT-LLM

            if (l.req.type == RequestType::REQUEST_TYPE_CONTEXT_ONLY)
            {
                Result r = finalResult(l, out, FinishReason::kNOT_FINISHED);
                auto* state = transceiver ? new fake::State{l.req.input, token} : nullptr;
                r.contextPhaseParams.emplace(VecTokens{token}, l.id, state, std::nullopt);
                ready.emplace_back(l.id, std::move(r));
                it = live.erase(it);
                continue;
            }
            FinishReason reason = FinishReason::kNOT_FINISHED;
            if (isEnd)
            {
                reason = FinishReason::kEND_ID;
            }
            else if (isStop)
            {
                reason = FinishReason::kSTOP_WORDS;
            }
            else if (l.generated >= l.req.maxTokens)
            {
                reason = FinishReason::kLENGTH;
            }
            if (reason != FinishReason::kNOT_FINISHED)
            {
                ready.emplace_back(l.id, finalResult(l, out, reason));
                it = live.erase(it);
                continue;
            }
            Result r{};
            r.isFinal = false;
            r.outputTokenIds = {out};
            ready.emplace_back(l.id, std::move(r));
            ++it;
        }
        IterationStats s{};
        s.iter = iter - 1;
        s.numActiveRequests = static_cast<SizeType32>(live.size());
        s.numQueuedRequests = 0;
        KvCacheStats kv{};
        kv.maxNumBlocks = 100;
        kv.usedNumBlocks = static_cast<SizeType32>(live.size());
        kv.freeNumBlocks = kv.maxNumBlocks - kv.usedNumBlocks;
        kv.tokensPerBlock = 32;
        s.kvCacheStats = kv;
        stats.push_back(s);
        if (stats.size() > 64)
        {
            stats.pop_front();
        }
    }

    void loop()
    {
        std::unique_lock<std::mutex> lock(mu);
        while (!stop)
        {
            work.wait(lock, [this] { return stop || !live.empty(); });
            if (stop)
            {
                break;
            }
            step();
            cv.notify_all();
            lock.unlock();
            std::this_thread::sleep_for(std::chrono::milliseconds(1)); // lets cancels land between steps
            lock.lock();
        }
    }
};

Executor::Executor(std::filesystem::path const& modelPath, ModelType, ExecutorConfig const& config)
    : mImpl(std::make_unique<Impl>())
{
    if (!std::filesystem::exists(modelPath / "config.json"))
    {
        throw std::runtime_error("fake: no engine at " + modelPath.string());
    }
    char const* vocab = std::getenv("FAKE_TRTLLM_VOCAB");
    mImpl->vocab = vocab != nullptr ? std::atoi(vocab) : 1000;
    mImpl->transceiver = config.getCacheTransceiverConfig().has_value()
        && std::getenv("FAKE_TRTLLM_NO_TRANSCEIVER_STATE") == nullptr;
    mImpl->thread = std::thread([impl = mImpl.get()] { impl->loop(); });
}

Executor::~Executor()
{
    shutdown();
}

std::optional<CacheTransceiverConfig> ExecutorConfig::getCacheTransceiverConfig() const
{
    return mCacheTransceiverConfig;
}

IdType Executor::enqueueRequest(Request const& request)
{
    Impl::Req r;
    r.input = request.getInputTokenIds();
    r.maxTokens = request.getMaxTokens();
    r.sampling = request.getSamplingConfig();
    r.endId = request.getEndId();
    r.stopWords = request.getStopWords().value_or(std::list<VecTokens>{});
    r.type = request.getRequestType();
    r.contextPhase = request.getContextPhaseParams();
    if (!request.getOutputConfig().excludeInputFromOutput && !request.getStreaming())
    {
        throw std::runtime_error("fake: only outputs without the input are modelled");
    }
    if (r.type == RequestType::REQUEST_TYPE_GENERATION_ONLY)
    {
        if (!r.contextPhase || r.contextPhase->getState() == nullptr)
        {
            throw std::runtime_error("fake: generation-only request without context phase state");
        }
        if (static_cast<fake::State const*>(r.contextPhase->getState())->prompt != r.input)
        {
            throw std::runtime_error("fake: context phase state is for another prompt");
        }
    }
    std::lock_guard<std::mutex> lock(mImpl->mu);
    if (mImpl->stop)
    {
        throw std::runtime_error("fake: executor shut down");
    }
    // A generation-only request continues after the context's first token; its KV "arrived" with the state.
    Impl::Live l{mImpl->nextId++, r, r.input};
    mImpl->live.push_back(std::move(l));
    mImpl->work.notify_all();
    return mImpl->live.back().id;
}

std::vector<Response> Executor::awaitResponses(std::optional<std::chrono::milliseconds> const& timeout)
{
    std::unique_lock<std::mutex> lock(mImpl->mu);
    auto const has = [this] { return !mImpl->ready.empty() || mImpl->stop; };
    if (timeout)
    {
        mImpl->cv.wait_for(lock, *timeout, has);
    }
    else
    {
        mImpl->cv.wait(lock, has);
    }
    std::vector<Response> out(std::make_move_iterator(mImpl->ready.begin()), std::make_move_iterator(mImpl->ready.end()));
    mImpl->ready.clear();
    return out;
}

void Executor::cancelRequest(IdType requestId)
{
    std::lock_guard<std::mutex> lock(mImpl->mu);
    for (auto& l : mImpl->live)
    {
        if (l.id == requestId)
        {
            l.cancel = true;
        }
    }
}

void Executor::shutdown()
{
    {
        std::lock_guard<std::mutex> lock(mImpl->mu);
        mImpl->stop = true;
        mImpl->work.notify_all();
        mImpl->cv.notify_all();
    }
    if (mImpl->thread.joinable())
    {
        mImpl->thread.join();
    }
}

std::deque<IterationStats> Executor::getLatestIterationStats()
{
    std::lock_guard<std::mutex> lock(mImpl->mu);
    std::deque<IterationStats> out;
    out.swap(mImpl->stats);
    return out;
}

} // namespace tensorrt_llm::executor
