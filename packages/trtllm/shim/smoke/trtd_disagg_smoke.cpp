// trtd_disagg_smoke: a disaggregated generation through the trtd executor C ABI (context-only on one executor,
// generation-only on another, in two processes), compared token for token with an aggregated one.
//
// It loads the executor library with dlopen, so the same binary checks the TensorRT-LLM shim on a machine with
// TensorRT-LLM and an engine, and the reference executor anywhere:
//   trtd_disagg_smoke --lib build/trtllm-shim/libtrtd_trtllm.so --model /models/llama-3.1-8b
//       --ctx-device 0 --gen-device 1 --prompt 128000,791,6864,315,9822,374 --max-new-tokens 32
//   trtd_disagg_smoke --lib packages/trtllm/build/libtrtd_ref.so --model models/tiny --ctx-device -1 --gen-device -1
//
// KV path: when the context side answers trtd_executor_kv_export_info with TRTD_STATUS_ENGINE_NATIVE_TRANSFER
// (the shim), the context phase state travels and the engine pulls the KV itself; otherwise (the reference
// executor) the KV bytes are copied out, sent through a pipe and imported.
//
// Processes: the parent starts the context child, relays its result to the generation child, and keeps the
// context child alive until the generation side is done (its KV must stay fetchable). Every wait is bounded by
// --timeout-s; children are killed by PID on timeout. Last line: one JSON object; exit 0 only on a match.
#include "trtd_executor.h"

#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace
{

struct Api
{
    int32_t (*abi_version)();
    const char* (*version)();
    const char* (*last_error)();
    trtd_executor_config (*default_config)();
    trtd_sampling_params (*sampling_default)();
    trtd_status (*create)(const char*, const trtd_executor_config*, trtd_executor**);
    void (*destroy)(trtd_executor*);
    trtd_status (*model_info)(const trtd_executor*, trtd_model_info*);
    trtd_status (*enqueue)(trtd_executor*, const trtd_request*, trtd_request_id*);
    trtd_status (*await)(trtd_executor*, int32_t, trtd_response*, int32_t, trtd_token*, int32_t, int32_t*);
    trtd_status (*context_phase_state)(trtd_executor*, trtd_request_id, void*, uint64_t, uint64_t*);
    trtd_status (*kv_export_info)(trtd_executor*, trtd_request_id, trtd_kv_export_info*);
    trtd_status (*kv_export_copy)(trtd_executor*, trtd_request_id, void*, uint64_t);
    trtd_status (*kv_export_release)(trtd_executor*, trtd_request_id);
    trtd_status (*kv_import_reserve)(trtd_executor*, int32_t, trtd_kv_import_id*);
    trtd_status (*kv_import_segments)(trtd_executor*, trtd_kv_import_id, trtd_kv_segment*, int32_t, int32_t*);
    trtd_status (*kv_import_abort)(trtd_executor*, trtd_kv_import_id);
};

struct Options
{
    std::string lib;
    std::string model;
    int ctxDevice = 0;
    int genDevice = 1;
    std::vector<int32_t> prompt;
    int maxNewTokens = 16;
    int timeoutS = 300;
};

bool gChild = false; // children report on stderr only; the parent prints the JSON line

[[noreturn]] void die(std::string const& message)
{
    std::fprintf(stderr, "trtd_disagg_smoke%s: %s\n", gChild ? " (child)" : "", message.c_str());
    if (!gChild)
    {
        std::printf("{\"ok\":false,\"error\":\"%s\"}\n", message.c_str());
    }
    std::fflush(nullptr); // _Exit skips stdio teardown (and atexit work a forked child must not repeat)
    std::_Exit(2);
}

template <typename F>
void bind(void* handle, F& fn, char const* name)
{
    fn = reinterpret_cast<F>(dlsym(handle, name));
    if (fn == nullptr)
    {
        die(std::string("symbol missing in library: ") + name);
    }
}

Api load(std::string const& path)
{
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr)
    {
        die(std::string("dlopen: ") + dlerror());
    }
    Api a{};
    bind(h, a.abi_version, "trtd_abi_version");
    bind(h, a.version, "trtd_version");
    bind(h, a.last_error, "trtd_last_error");
    bind(h, a.default_config, "trtd_executor_default_config");
    bind(h, a.sampling_default, "trtd_sampling_default_params");
    bind(h, a.create, "trtd_executor_create");
    bind(h, a.destroy, "trtd_executor_destroy");
    bind(h, a.model_info, "trtd_executor_model_info");
    bind(h, a.enqueue, "trtd_executor_enqueue");
    bind(h, a.await, "trtd_executor_await_responses");
    bind(h, a.context_phase_state, "trtd_executor_context_phase_state");
    bind(h, a.kv_export_info, "trtd_executor_kv_export_info");
    bind(h, a.kv_export_copy, "trtd_executor_kv_export_copy");
    bind(h, a.kv_export_release, "trtd_executor_kv_export_release");
    bind(h, a.kv_import_reserve, "trtd_executor_kv_import_reserve");
    bind(h, a.kv_import_segments, "trtd_executor_kv_import_segments");
    bind(h, a.kv_import_abort, "trtd_executor_kv_import_abort");
    if (a.abi_version() != TRTD_ABI_VERSION)
    {
        die("ABI version mismatch: library " + std::to_string(a.abi_version()) + ", smoke "
            + std::to_string(TRTD_ABI_VERSION));
    }
    return a;
}

std::vector<int32_t> parseIds(std::string const& text)
{
    std::vector<int32_t> ids;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ','))
    {
        ids.push_back(static_cast<int32_t>(std::stol(item)));
    }
    return ids;
}

Options parseArgs(int argc, char** argv)
{
    Options o;
    o.prompt = {1, 2, 3, 4, 5, 6, 7, 8};
    for (int i = 1; i < argc; ++i)
    {
        std::string const a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc)
            {
                die("missing value for " + a);
            }
            return argv[++i];
        };
        if (a == "--lib") o.lib = next();
        else if (a == "--model") o.model = next();
        else if (a == "--ctx-device") o.ctxDevice = std::stoi(next());
        else if (a == "--gen-device") o.genDevice = std::stoi(next());
        else if (a == "--prompt") o.prompt = parseIds(next());
        else if (a == "--max-new-tokens") o.maxNewTokens = std::stoi(next());
        else if (a == "--timeout-s") o.timeoutS = std::stoi(next());
        else die("unknown argument " + a);
    }
    if (o.lib.empty() || o.model.empty() || o.prompt.empty() || o.maxNewTokens < 2 || o.timeoutS < 1)
    {
        die("usage: trtd_disagg_smoke --lib LIB --model DIR [--ctx-device N] [--gen-device N] "
            "[--prompt id,id,...] [--max-new-tokens N>=2] [--timeout-s N]");
    }
    return o;
}

// ---- length-prefixed messages over pipes, every read bounded by a deadline ----

using Clock = std::chrono::steady_clock;

void writeAll(int fd, void const* data, size_t n)
{
    auto const* p = static_cast<uint8_t const*>(data);
    while (n > 0)
    {
        ssize_t const w = ::write(fd, p, n);
        if (w <= 0)
        {
            die("pipe write failed");
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
}

void readAll(int fd, void* data, size_t n, Clock::time_point deadline)
{
    auto* p = static_cast<uint8_t*>(data);
    while (n > 0)
    {
        auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0)
        {
            die("timed out waiting on a pipe");
        }
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, static_cast<int>(left)) <= 0)
        {
            continue;
        }
        ssize_t const r = ::read(fd, p, n);
        if (r <= 0)
        {
            die("pipe closed early (did a child fail? see its stderr)");
        }
        p += r;
        n -= static_cast<size_t>(r);
    }
}

void sendMessage(int fd, std::vector<uint8_t> const& bytes)
{
    uint64_t const n = bytes.size();
    writeAll(fd, &n, sizeof n);
    writeAll(fd, bytes.data(), bytes.size());
}

std::vector<uint8_t> receiveMessage(int fd, Clock::time_point deadline)
{
    uint64_t n = 0;
    readAll(fd, &n, sizeof n, deadline);
    if (n > (8ull << 30))
    {
        die("message too large");
    }
    std::vector<uint8_t> bytes(n);
    readAll(fd, bytes.data(), bytes.size(), deadline);
    return bytes;
}

// ---- executor helpers ----

trtd_executor* open(Api const& api, Options const& o, int device)
{
    trtd_executor_config cfg = api.default_config();
    cfg.device_id = device;
    trtd_executor* ex = nullptr;
    trtd_status const s = api.create(o.model.c_str(), &cfg, &ex);
    if (s != TRTD_STATUS_OK)
    {
        die("create(" + o.model + ", device " + std::to_string(device) + "): status " + std::to_string(s) + ": "
            + api.last_error());
    }
    return ex;
}

// Enqueues and collects the whole output of one request (tokens, finish reason), bounded by the deadline.
std::vector<int32_t> run(Api const& api, trtd_executor* ex, trtd_request const& req, Clock::time_point deadline,
    trtd_request_id* idOut, int32_t* finishOut)
{
    trtd_request_id id = 0;
    trtd_status const s = api.enqueue(ex, &req, &id);
    if (s != TRTD_STATUS_OK)
    {
        die("enqueue (type " + std::to_string(req.type) + "): status " + std::to_string(s) + ": " + api.last_error());
    }
    std::vector<int32_t> out;
    trtd_response responses[8];
    std::vector<trtd_token> tokens(4096);
    for (;;)
    {
        if (Clock::now() > deadline)
        {
            die("timed out waiting for request " + std::to_string(id));
        }
        int32_t n = 0;
        if (api.await(ex, 200, responses, 8, tokens.data(), static_cast<int32_t>(tokens.size()), &n) != TRTD_STATUS_OK)
        {
            die(std::string("await_responses: ") + api.last_error());
        }
        for (int32_t i = 0; i < n; ++i)
        {
            trtd_response const& r = responses[i];
            if (r.request_id != id)
            {
                continue;
            }
            out.insert(out.end(), tokens.begin() + r.token_offset, tokens.begin() + r.token_offset + r.num_tokens);
            if (r.is_final)
            {
                if (r.finish_reason == TRTD_FINISH_ERROR)
                {
                    die(std::string("request failed: ") + r.error_message);
                }
                *idOut = id;
                *finishOut = r.finish_reason;
                return out;
            }
        }
    }
}

trtd_request baseRequest(Api const& api, Options const& o, int32_t type)
{
    trtd_request r{};
    r.prompt = o.prompt.data();
    r.prompt_len = static_cast<int32_t>(o.prompt.size());
    r.max_new_tokens = o.maxNewTokens;
    r.end_id = -1; // a fixed length, so both runs produce the same number of tokens
    r.sampling = api.sampling_default(); // greedy
    r.type = type;
    return r;
}

void putU64(std::vector<uint8_t>& out, uint64_t v)
{
    for (int i = 0; i < 8; ++i)
    {
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
}

uint64_t getU64(std::vector<uint8_t> const& in, size_t at)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
    {
        v |= static_cast<uint64_t>(in.at(at + static_cast<size_t>(i))) << (8 * i);
    }
    return v;
}

// Context child: runs the context-only request, sends {kind, first token, state or KV}, then waits for the
// parent's "done" byte before releasing and destroying (the generation side may still be pulling the KV).
int contextChild(Api const& api, Options const& o, int toParent, int fromParent, Clock::time_point deadline)
{
    trtd_executor* ex = open(api, o, o.ctxDevice);
    trtd_request req = baseRequest(api, o, TRTD_REQUEST_CONTEXT_ONLY);
    trtd_request_id id = 0;
    int32_t finish = 0;
    std::vector<int32_t> first = run(api, ex, req, deadline, &id, &finish);
    if (first.size() != 1)
    {
        die("context-only request returned " + std::to_string(first.size()) + " tokens, expected 1");
    }
    std::vector<uint8_t> msg;
    trtd_kv_export_info info{};
    trtd_status const s = api.kv_export_info(ex, id, &info);
    if (s == TRTD_STATUS_ENGINE_NATIVE_TRANSFER)
    {
        uint64_t size = 0;
        if (api.context_phase_state(ex, id, nullptr, 0, &size) != TRTD_STATUS_OK || size == 0)
        {
            die(std::string("context_phase_state: ") + api.last_error());
        }
        std::vector<uint8_t> state(size);
        if (api.context_phase_state(ex, id, state.data(), size, &size) != TRTD_STATUS_OK)
        {
            die(std::string("context_phase_state copy: ") + api.last_error());
        }
        msg.push_back('E');
        putU64(msg, static_cast<uint64_t>(first[0]));
        putU64(msg, 0);
        msg.insert(msg.end(), state.begin(), state.end());
    }
    else if (s == TRTD_STATUS_OK)
    {
        std::vector<uint8_t> kv(info.bytes);
        if (api.kv_export_copy(ex, id, kv.data(), kv.size()) != TRTD_STATUS_OK)
        {
            die(std::string("kv_export_copy: ") + api.last_error());
        }
        msg.push_back('K');
        putU64(msg, static_cast<uint64_t>(first[0]));
        putU64(msg, static_cast<uint64_t>(info.num_tokens));
        msg.insert(msg.end(), kv.begin(), kv.end());
    }
    else
    {
        die("kv_export_info: status " + std::to_string(s) + ": " + api.last_error());
    }
    sendMessage(toParent, msg);
    char done = 0;
    readAll(fromParent, &done, 1, deadline);
    api.kv_export_release(ex, id);
    api.destroy(ex);
    return 0;
}

// Generation child: continues from the context result, then runs the same prompt aggregated on the same
// executor, and sends both token lists.
int generationChild(Api const& api, Options const& o, std::vector<uint8_t> const& ctxMsg, int toParent,
    Clock::time_point deadline)
{
    trtd_executor* ex = open(api, o, o.genDevice);
    char const kind = static_cast<char>(ctxMsg.at(0));
    int32_t const firstToken = static_cast<int32_t>(getU64(ctxMsg, 1));
    uint64_t const numTokens = getU64(ctxMsg, 9);
    uint8_t const* payload = ctxMsg.data() + 17;
    size_t const payloadSize = ctxMsg.size() - 17;

    trtd_context_phase_params cp{};
    cp.first_token = firstToken;
    if (kind == 'E')
    {
        cp.opaque_state = payload;
        cp.opaque_state_size = payloadSize;
    }
    else
    {
        trtd_kv_import_id imp = 0;
        if (api.kv_import_reserve(ex, static_cast<int32_t>(numTokens), &imp) != TRTD_STATUS_OK)
        {
            die(std::string("kv_import_reserve: ") + api.last_error());
        }
        int32_t nseg = 0;
        api.kv_import_segments(ex, imp, nullptr, 0, &nseg);
        std::vector<trtd_kv_segment> segs(static_cast<size_t>(nseg));
        if (api.kv_import_segments(ex, imp, segs.data(), nseg, &nseg) != TRTD_STATUS_OK)
        {
            die(std::string("kv_import_segments: ") + api.last_error());
        }
        size_t off = 0;
        for (auto const& seg : segs)
        {
            if (seg.memory_kind != TRTD_MEMORY_HOST && seg.memory_kind != TRTD_MEMORY_HOST_PINNED)
            {
                api.kv_import_abort(ex, imp);
                die("import segments are not host memory; this smoke copies only host KV");
            }
            size_t const n = std::min<size_t>(seg.size, payloadSize - off);
            std::memcpy(seg.data, payload + off, n);
            off += n;
        }
        if (off != payloadSize)
        {
            api.kv_import_abort(ex, imp);
            die("exported KV does not fit the import segments");
        }
        cp.kv_import_id = imp;
    }
    trtd_request gen = baseRequest(api, o, TRTD_REQUEST_GENERATION_ONLY);
    gen.context_phase = &cp;
    trtd_request_id id = 0;
    int32_t genFinish = 0;
    std::vector<int32_t> disagg = run(api, ex, gen, deadline, &id, &genFinish);

    trtd_request agg = baseRequest(api, o, TRTD_REQUEST_CONTEXT_AND_GENERATION);
    int32_t aggFinish = 0;
    std::vector<int32_t> aggregated = run(api, ex, agg, deadline, &id, &aggFinish);
    api.destroy(ex);

    std::vector<uint8_t> msg;
    putU64(msg, static_cast<uint64_t>(firstToken));
    putU64(msg, disagg.size());
    for (int32_t t : disagg) putU64(msg, static_cast<uint64_t>(t));
    putU64(msg, aggregated.size());
    for (int32_t t : aggregated) putU64(msg, static_cast<uint64_t>(t));
    sendMessage(toParent, msg);
    return 0;
}

void reap(pid_t pid, Clock::time_point deadline)
{
    while (Clock::now() < deadline)
    {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid)
        {
            return;
        }
        ::usleep(50 * 1000);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
}

std::string join(std::vector<int32_t> const& v)
{
    std::string s;
    for (size_t i = 0; i < v.size(); ++i)
    {
        s += (i ? "," : "") + std::to_string(v[i]);
    }
    return s;
}

} // namespace

int main(int argc, char** argv)
{
    Options const o = parseArgs(argc, argv);
    auto const started = Clock::now();
    auto const deadline = started + std::chrono::seconds(o.timeoutS);
    // The library is loaded only in the children: the parent stays free of CUDA and engine threads, so fork
    // is safe.

    int ctxOut[2], ctxIn[2], genOut[2];
    if (::pipe(ctxOut) != 0 || ::pipe(ctxIn) != 0 || ::pipe(genOut) != 0)
    {
        die("pipe failed");
    }
    pid_t const ctxPid = ::fork();
    if (ctxPid == 0)
    {
        ::close(ctxOut[0]);
        ::close(ctxIn[1]);
        ::close(genOut[0]);
        ::close(genOut[1]);
        gChild = true;
        Api const api = load(o.lib);
        std::fprintf(stderr, "context side: %s\n", api.version());
        std::_Exit(contextChild(api, o, ctxOut[1], ctxIn[0], deadline));
    }
    ::close(ctxOut[1]);
    ::close(ctxIn[0]);
    std::vector<uint8_t> const ctxMsg = receiveMessage(ctxOut[0], deadline);

    pid_t const genPid = ::fork();
    if (genPid == 0)
    {
        ::close(genOut[0]);
        ::close(ctxOut[0]);
        ::close(ctxIn[1]);
        gChild = true;
        Api const api = load(o.lib);
        std::_Exit(generationChild(api, o, ctxMsg, genOut[1], deadline));
    }
    ::close(genOut[1]);
    std::vector<uint8_t> const genMsg = receiveMessage(genOut[0], deadline);
    char const done = 1;
    writeAll(ctxIn[1], &done, 1);
    reap(genPid, deadline);
    reap(ctxPid, deadline);

    size_t at = 0;
    int32_t const first = static_cast<int32_t>(getU64(genMsg, at));
    at += 8;
    std::vector<int32_t> disagg(getU64(genMsg, at));
    at += 8;
    for (auto& t : disagg)
    {
        t = static_cast<int32_t>(getU64(genMsg, at));
        at += 8;
    }
    std::vector<int32_t> aggregated(getU64(genMsg, at));
    at += 8;
    for (auto& t : aggregated)
    {
        t = static_cast<int32_t>(getU64(genMsg, at));
        at += 8;
    }
    // The generation-only output starts with the context phase's first token (ABI and TensorRT-LLM agree).
    bool const ok = !disagg.empty() && disagg.front() == first && disagg == aggregated;
    double const seconds = std::chrono::duration<double>(Clock::now() - started).count();
    std::fprintf(stderr, "first token %d\ndisaggregated: %s\naggregated:    %s\n", first, join(disagg).c_str(),
        join(aggregated).c_str());
    std::fflush(stderr);
    std::printf("{\"ok\":%s,\"kvPath\":\"%s\",\"firstToken\":%d,\"disaggregatedTokens\":%zu,\"aggregatedTokens\":%zu,"
                "\"seconds\":%.3f}\n",
        ok ? "true" : "false", ctxMsg.at(0) == 'E' ? "engine" : "copy", first, disagg.size(), aggregated.size(),
        seconds);
    return ok ? 0 : 1;
}
