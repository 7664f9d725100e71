// libtrtd_engine_double.so: a TEST DOUBLE of an engine that moves KV itself (like the TensorRT-LLM shim), for
// machines without TensorRT-LLM. It forwards every ABI call to a real executor library (the reference executor,
// named by $TRTD_ENGINE_DOUBLE_INNER) except the KV ones, which it answers the way the shim does:
//   - kv_export_* and kv_import_* return TRTD_STATUS_ENGINE_NATIVE_TRANSFER;
//   - trtd_executor_context_phase_state returns an opaque state (here: the KV bytes, copied from the inner
//     executor's pinned export, behind a magic and a version; the shim's state is TensorRT-LLM's
//     ContextPhaseParams instead);
//   - a GENERATION_ONLY request with that opaque state imports it into the inner executor and continues;
//   - a request with generated_offset != 0 is refused with TRTD_STATUS_UNSUPPORTED (negative: INVALID_ARGUMENT),
//     as the shim refuses it (TensorRT-LLM cannot offset its sampling draws).
// So code paths written for the shim (the "engine" transport) run end to end on CPU with real numerics.
// It is not the shim and proves nothing about TensorRT-LLM.
#include "trtd_executor.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace
{

constexpr char kMagic[8] = {'T', 'R', 'T', 'D', 'D', 'B', 'L', '1'};
thread_local std::string tError;

struct Inner
{
    void* handle = nullptr;
    std::string loadError;
#define TRTD_DOUBLE_FN(name) decltype(&::name) name = nullptr;
    TRTD_DOUBLE_FN(trtd_abi_version)
    TRTD_DOUBLE_FN(trtd_version)
    TRTD_DOUBLE_FN(trtd_last_error)
    TRTD_DOUBLE_FN(trtd_executor_default_config)
    TRTD_DOUBLE_FN(trtd_sampling_default_params)
    TRTD_DOUBLE_FN(trtd_executor_create)
    TRTD_DOUBLE_FN(trtd_executor_destroy)
    TRTD_DOUBLE_FN(trtd_executor_model_info)
    TRTD_DOUBLE_FN(trtd_executor_enqueue)
    TRTD_DOUBLE_FN(trtd_executor_cancel)
    TRTD_DOUBLE_FN(trtd_executor_set_token_mask)
    TRTD_DOUBLE_FN(trtd_executor_await_responses)
    TRTD_DOUBLE_FN(trtd_executor_await_responses_ext)
    TRTD_DOUBLE_FN(trtd_executor_notify_fd)
    TRTD_DOUBLE_FN(trtd_executor_get_stats)
    TRTD_DOUBLE_FN(trtd_executor_kv_layout)
    TRTD_DOUBLE_FN(trtd_executor_kv_export_info)
    TRTD_DOUBLE_FN(trtd_executor_kv_export_copy)
    TRTD_DOUBLE_FN(trtd_executor_kv_export_release)
    TRTD_DOUBLE_FN(trtd_executor_kv_import_reserve)
    TRTD_DOUBLE_FN(trtd_executor_kv_import_segments)
    TRTD_DOUBLE_FN(trtd_executor_kv_import_abort)
    TRTD_DOUBLE_FN(trtd_executor_compute_logits)
#undef TRTD_DOUBLE_FN
};

Inner& inner()
{
    static Inner in = [] {
        Inner i;
        char const* path = std::getenv("TRTD_ENGINE_DOUBLE_INNER");
        if (path == nullptr || *path == '\0')
        {
            i.loadError = "TRTD_ENGINE_DOUBLE_INNER is not set (path of the executor library to wrap)";
            return i;
        }
        // DEEPBIND: the inner library's calls to its own trtd_* symbols must not land in this double.
        i.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (i.handle == nullptr)
        {
            i.loadError = std::string("dlopen(") + path + "): " + dlerror();
            return i;
        }
#define TRTD_DOUBLE_BIND(name)                                                                                         \
    i.name = reinterpret_cast<decltype(i.name)>(dlsym(i.handle, #name));                                               \
    if (i.name == nullptr)                                                                                             \
    {                                                                                                                  \
        i.loadError = std::string("inner library lacks ") + #name;                                                     \
    }
        TRTD_DOUBLE_BIND(trtd_abi_version)
        TRTD_DOUBLE_BIND(trtd_version)
        TRTD_DOUBLE_BIND(trtd_last_error)
        TRTD_DOUBLE_BIND(trtd_executor_default_config)
        TRTD_DOUBLE_BIND(trtd_sampling_default_params)
        TRTD_DOUBLE_BIND(trtd_executor_create)
        TRTD_DOUBLE_BIND(trtd_executor_destroy)
        TRTD_DOUBLE_BIND(trtd_executor_model_info)
        TRTD_DOUBLE_BIND(trtd_executor_enqueue)
        TRTD_DOUBLE_BIND(trtd_executor_cancel)
        TRTD_DOUBLE_BIND(trtd_executor_set_token_mask)
        TRTD_DOUBLE_BIND(trtd_executor_await_responses)
        TRTD_DOUBLE_BIND(trtd_executor_await_responses_ext)
        TRTD_DOUBLE_BIND(trtd_executor_notify_fd)
        TRTD_DOUBLE_BIND(trtd_executor_get_stats)
        TRTD_DOUBLE_BIND(trtd_executor_kv_layout)
        TRTD_DOUBLE_BIND(trtd_executor_kv_export_info)
        TRTD_DOUBLE_BIND(trtd_executor_kv_export_copy)
        TRTD_DOUBLE_BIND(trtd_executor_kv_export_release)
        TRTD_DOUBLE_BIND(trtd_executor_kv_import_reserve)
        TRTD_DOUBLE_BIND(trtd_executor_kv_import_segments)
        TRTD_DOUBLE_BIND(trtd_executor_kv_import_abort)
        TRTD_DOUBLE_BIND(trtd_executor_compute_logits)
#undef TRTD_DOUBLE_BIND
        if (i.loadError.empty() && i.trtd_abi_version() != TRTD_ABI_VERSION)
        {
            i.loadError = "inner library has another ABI version";
        }
        return i;
    }();
    return in;
}

trtd_status fail(trtd_status s, std::string msg)
{
    tError = std::move(msg);
    return s;
}

// The inner executor's last error, copied so trtd_last_error (answered from this library) reports it.
trtd_status innerStatus(trtd_status s)
{
    if (s != TRTD_STATUS_OK)
    {
        tError = inner().trtd_last_error();
    }
    return s;
}

bool ready(trtd_status& s)
{
    if (!inner().loadError.empty())
    {
        s = fail(TRTD_STATUS_INTERNAL, "engine double: " + inner().loadError);
        return false;
    }
    return true;
}

// Opaque states handed out, per (executor, request id); released with kv_export_release or destroy.
std::mutex gMu;
std::unordered_map<trtd_executor*, std::unordered_map<trtd_request_id, std::vector<uint8_t>>> gStates;

void putU64(std::vector<uint8_t>& out, size_t at, uint64_t v)
{
    for (int i = 0; i < 8; ++i)
    {
        out[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
    }
}

uint64_t getU64(uint8_t const* p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
    {
        v |= static_cast<uint64_t>(p[i]) << (8 * i);
    }
    return v;
}

trtd_status engineNative(char const* what)
{
    return fail(TRTD_STATUS_ENGINE_NATIVE_TRANSFER,
        std::string(what) + ": this engine (test double) moves KV itself; carry the context phase state");
}

} // namespace

extern "C" {

TRTD_API int32_t trtd_abi_version(void)
{
    return TRTD_ABI_VERSION;
}

TRTD_API const char* trtd_version(void)
{
    static std::string const v = std::string("trtd-engine-double (test double over ")
        + (inner().loadError.empty() ? inner().trtd_version() : "nothing: " + inner().loadError) + ")";
    return v.c_str();
}

TRTD_API const char* trtd_last_error(void)
{
    return tError.c_str();
}

TRTD_API trtd_executor_config trtd_executor_default_config(void)
{
    trtd_status s;
    return ready(s) ? inner().trtd_executor_default_config() : trtd_executor_config{};
}

TRTD_API trtd_sampling_params trtd_sampling_default_params(void)
{
    trtd_status s;
    return ready(s) ? inner().trtd_sampling_default_params() : trtd_sampling_params{0, 0.0f, 1.0f, 0};
}

TRTD_API trtd_status trtd_executor_create(const char* model_dir, const trtd_executor_config* config,
    trtd_executor** executor_out)
{
    trtd_status s;
    return ready(s) ? innerStatus(inner().trtd_executor_create(model_dir, config, executor_out)) : s;
}

TRTD_API void trtd_executor_destroy(trtd_executor* executor)
{
    if (executor == nullptr || !inner().loadError.empty())
    {
        return;
    }
    {
        std::lock_guard<std::mutex> lock(gMu);
        gStates.erase(executor);
    }
    inner().trtd_executor_destroy(executor);
}

TRTD_API trtd_status trtd_executor_model_info(const trtd_executor* executor, trtd_model_info* info_out)
{
    trtd_status s;
    return ready(s) ? innerStatus(inner().trtd_executor_model_info(executor, info_out)) : s;
}

TRTD_API trtd_status trtd_executor_enqueue(trtd_executor* executor, const trtd_request* request,
    trtd_request_id* id_out)
{
    trtd_status s;
    if (!ready(s))
    {
        return s;
    }
    if (request != nullptr && request->generated_offset != 0)
    {
        return request->generated_offset < 0
            ? fail(TRTD_STATUS_INVALID_ARGUMENT, "generated_offset: must be >= 0")
            : fail(TRTD_STATUS_UNSUPPORTED, "generated_offset: not offered by this engine (as in the TensorRT-LLM shim)");
    }
    if (request == nullptr || request->type != TRTD_REQUEST_GENERATION_ONLY || request->context_phase == nullptr)
    {
        return innerStatus(inner().trtd_executor_enqueue(executor, request, id_out));
    }
    trtd_context_phase_params const& cp = *request->context_phase;
    if (cp.kv_import_id != 0)
    {
        return engineNative("context_phase.kv_import_id");
    }
    auto const* state = static_cast<uint8_t const*>(cp.opaque_state);
    if (state == nullptr || cp.opaque_state_size < 16 || std::memcmp(state, kMagic, 8) != 0)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "context_phase.opaque_state: not an engine-double state");
    }
    uint64_t const numTokens = getU64(state + 8);
    size_t const kvBytes = static_cast<size_t>(cp.opaque_state_size) - 16;
    trtd_kv_import_id imp = 0;
    if (trtd_status r = inner().trtd_executor_kv_import_reserve(executor, static_cast<int32_t>(numTokens), &imp);
        r != TRTD_STATUS_OK)
    {
        return innerStatus(r);
    }
    int32_t n = 0;
    inner().trtd_executor_kv_import_segments(executor, imp, nullptr, 0, &n);
    std::vector<trtd_kv_segment> segs(static_cast<size_t>(n));
    size_t total = 0;
    if (inner().trtd_executor_kv_import_segments(executor, imp, segs.data(), n, &n) == TRTD_STATUS_OK)
    {
        for (auto const& seg : segs)
        {
            total += seg.size;
        }
    }
    if (total != kvBytes)
    {
        inner().trtd_executor_kv_import_abort(executor, imp);
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "context_phase.opaque_state: KV size does not match this executor");
    }
    size_t off = 0;
    for (auto const& seg : segs)
    {
        std::memcpy(seg.data, state + 16 + off, seg.size);
        off += seg.size;
    }
    trtd_context_phase_params innerCp = cp;
    innerCp.opaque_state = nullptr;
    innerCp.opaque_state_size = 0;
    innerCp.kv_import_id = imp;
    trtd_request innerReq = *request;
    innerReq.context_phase = &innerCp;
    trtd_status const r = inner().trtd_executor_enqueue(executor, &innerReq, id_out);
    if (r != TRTD_STATUS_OK)
    {
        innerStatus(r);
        inner().trtd_executor_kv_import_abort(executor, imp); // refused: the import stayed ours
    }
    return r;
}

TRTD_API trtd_status trtd_executor_set_token_mask(trtd_executor* executor, trtd_request_id id, const uint32_t* bitmask,
    int32_t num_words)
{
    trtd_status s;
    return ready(s) ? innerStatus(inner().trtd_executor_set_token_mask(executor, id, bitmask, num_words)) : s;
}

TRTD_API trtd_status trtd_executor_cancel(trtd_executor* executor, trtd_request_id id)
{
    trtd_status s;
    return ready(s) ? innerStatus(inner().trtd_executor_cancel(executor, id)) : s;
}

TRTD_API trtd_status trtd_executor_await_responses(trtd_executor* executor, int32_t timeout_ms,
    trtd_response* responses, int32_t max_responses, trtd_token* tokens, int32_t max_tokens, int32_t* num_responses_out)
{
    trtd_status s;
    return ready(s) ? innerStatus(inner().trtd_executor_await_responses(
               executor, timeout_ms, responses, max_responses, tokens, max_tokens, num_responses_out))
                    : s;
}

TRTD_API trtd_status trtd_executor_await_responses_ext(trtd_executor* executor, int32_t timeout_ms,
    trtd_response* responses, int32_t max_responses, trtd_token* tokens, int32_t max_tokens, trtd_token_logprobs* logprobs,
    int32_t* num_responses_out)
{
    trtd_status s;
    return ready(s) ? innerStatus(inner().trtd_executor_await_responses_ext(
               executor, timeout_ms, responses, max_responses, tokens, max_tokens, logprobs, num_responses_out))
                    : s;
}

TRTD_API trtd_status trtd_executor_notify_fd(trtd_executor* executor, bool take, int32_t* fd_out)
{
    trtd_status s;
    return ready(s) ? innerStatus(inner().trtd_executor_notify_fd(executor, take, fd_out)) : s;
}

TRTD_API trtd_status trtd_executor_context_phase_state(trtd_executor* executor, trtd_request_id id, void* buffer,
    uint64_t buffer_size, uint64_t* size_out)
{
    trtd_status s;
    if (!ready(s))
    {
        return s;
    }
    if (executor == nullptr || size_out == nullptr)
    {
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "NULL argument");
    }
    std::lock_guard<std::mutex> lock(gMu);
    auto& states = gStates[executor];
    auto it = states.find(id);
    if (it == states.end())
    {
        trtd_kv_export_info info{};
        if (trtd_status r = inner().trtd_executor_kv_export_info(executor, id, &info); r != TRTD_STATUS_OK)
        {
            return innerStatus(r == TRTD_STATUS_INVALID_STATE ? TRTD_STATUS_NOT_FOUND : r);
        }
        std::vector<uint8_t> blob(16 + info.bytes);
        std::memcpy(blob.data(), kMagic, 8);
        putU64(blob, 8, static_cast<uint64_t>(info.num_tokens));
        if (trtd_status r = inner().trtd_executor_kv_export_copy(executor, id, blob.data() + 16, info.bytes);
            r != TRTD_STATUS_OK)
        {
            return innerStatus(r);
        }
        it = states.emplace(id, std::move(blob)).first;
    }
    *size_out = it->second.size();
    if (buffer == nullptr)
    {
        return TRTD_STATUS_OK;
    }
    if (buffer_size < it->second.size())
    {
        return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "buffer smaller than the context phase state");
    }
    std::memcpy(buffer, it->second.data(), it->second.size());
    return TRTD_STATUS_OK;
}

TRTD_API trtd_status trtd_executor_get_stats(trtd_executor* executor, trtd_executor_stats* stats_out)
{
    trtd_status s;
    return ready(s) ? innerStatus(inner().trtd_executor_get_stats(executor, stats_out)) : s;
}

TRTD_API trtd_status trtd_executor_kv_layout(const trtd_executor* executor, trtd_kv_layout* layout_out)
{
    trtd_status s;
    if (!ready(s))
    {
        return s;
    }
    trtd_status const r = innerStatus(inner().trtd_executor_kv_layout(executor, layout_out));
    if (r == TRTD_STATUS_OK)
    {
        layout_out->memory_kind = TRTD_MEMORY_ENGINE_HANDLE; // like a device engine: no host-visible blocks
    }
    return r;
}

TRTD_API trtd_status trtd_executor_kv_export_info(trtd_executor*, trtd_request_id, trtd_kv_export_info*)
{
    return engineNative("kv_export_info");
}

TRTD_API trtd_status trtd_executor_kv_export_segments(trtd_executor*, trtd_request_id, trtd_kv_segment*, int32_t,
    int32_t*)
{
    return engineNative("kv_export_segments");
}

TRTD_API trtd_status trtd_executor_kv_export_copy(trtd_executor*, trtd_request_id, void*, uint64_t)
{
    return engineNative("kv_export_copy");
}

// As in the shim: forgets the state; here it also unpins the inner executor's blocks.
TRTD_API trtd_status trtd_executor_kv_export_release(trtd_executor* executor, trtd_request_id id)
{
    trtd_status s;
    if (!ready(s))
    {
        return s;
    }
    {
        std::lock_guard<std::mutex> lock(gMu);
        auto it = gStates.find(executor);
        if (it != gStates.end())
        {
            it->second.erase(id);
        }
    }
    return innerStatus(inner().trtd_executor_kv_export_release(executor, id));
}

TRTD_API trtd_status trtd_executor_kv_import_reserve(trtd_executor*, int32_t, trtd_kv_import_id* import_id_out)
{
    if (import_id_out != nullptr)
    {
        *import_id_out = 0;
    }
    return engineNative("kv_import_reserve");
}

TRTD_API trtd_status trtd_executor_kv_import_segments(trtd_executor*, trtd_kv_import_id, trtd_kv_segment*, int32_t,
    int32_t*)
{
    return engineNative("kv_import_segments");
}

TRTD_API trtd_status trtd_executor_kv_import_abort(trtd_executor*, trtd_kv_import_id)
{
    return engineNative("kv_import_abort");
}

// ABI 3, as in the shim: the engine moves KV itself, so the device KV calls answer ENGINE_NATIVE_TRANSFER too.
TRTD_API trtd_status trtd_executor_device_uuid(const trtd_executor*, char*, int32_t)
{
    return engineNative("device_uuid");
}

TRTD_API trtd_status trtd_executor_kv_export_device(trtd_executor*, trtd_request_id, void*, uint64_t, uint64_t* size_out)
{
    if (size_out != nullptr)
    {
        *size_out = 0;
    }
    return engineNative("kv_export_device");
}

TRTD_API trtd_status trtd_executor_kv_import_device(trtd_executor*, trtd_kv_import_id, const void*, uint64_t)
{
    return engineNative("kv_import_device");
}

// ABI 4, as in the shim: no prefix cache (TensorRT-LLM's block reuse stays off there), so no KV events.
TRTD_API trtd_status trtd_executor_kv_events(trtd_executor*, trtd_kv_event*, int32_t, int32_t* num_events_out, bool* lost_out)
{
    if (num_events_out != nullptr)
    {
        *num_events_out = 0;
    }
    if (lost_out != nullptr)
    {
        *lost_out = false;
    }
    return fail(TRTD_STATUS_UNSUPPORTED, "kv_events: this engine (test double) keeps no prefix cache");
}

TRTD_API trtd_status trtd_executor_kv_cache_snapshot(trtd_executor*, uint64_t*, int32_t, int32_t* num_hashes_out)
{
    if (num_hashes_out != nullptr)
    {
        *num_hashes_out = 0;
    }
    return fail(TRTD_STATUS_UNSUPPORTED, "kv_cache_snapshot: this engine (test double) keeps no prefix cache");
}

TRTD_API trtd_status trtd_executor_compute_logits(trtd_executor* executor, const trtd_token* tokens,
    int32_t num_tokens, float* logits, int64_t max_logits)
{
    trtd_status s;
    return ready(s) ? innerStatus(inner().trtd_executor_compute_logits(executor, tokens, num_tokens, logits, max_logits))
                    : s;
}

} // extern "C"
