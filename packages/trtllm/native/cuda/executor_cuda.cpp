// The CUDA executor: the C ABI of trtd_executor.h over the device engine (engine.hpp), with in-flight batching
// on one engine thread. KV blocks are allocated as sequences grow; when a decode step finds no free block, the
// most recently admitted request is preempted (its blocks freed, its prompt and generated tokens recomputed
// later: seeded draws depend only on (seed, n), so its output does not change). Full blocks are shared across
// requests through the prefix cache of KvBlockPool (../src/kv_block_pool.hpp): a request is admitted on the
// cached blocks that start its tokens, unheld cached blocks are evicted (least recently used first) before
// anything is preempted, and a preempted request's completed blocks stay cached for its readmission.
#include <algorithm>
#include <chrono>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../../include/trtd_executor.h"
#include "abi_common.hpp"
#include "engine.hpp"
#include "host_draws.hpp"
#include "kv_block_pool.hpp"
#include "logit_controls.hpp"
#include "model_config.hpp"
#include "sampler.hpp"
#include "thread_pool.hpp"

using namespace trtd;
using trtd::cuda::Engine;

namespace {

int ceil_div(int a, int b) { return (a + b - 1) / b; }

struct Request {
    trtd_request_id id = 0;
    int type = 0;
    std::vector<int> tokens;  // prompt, then generated tokens
    int prompt_len = 0, max_new = 0, end_id = -1;
    std::vector<int> stop;
    trtd_sampling_params sampling{};
    LogitControls controls;
    bool logprobs = false;
    int num_top_logprobs = 0;
    int generated = 0, generated_offset = 0;
    int computed = 0;          // tokens whose K/V are in its blocks
    std::vector<int> blocks;
    std::vector<uint64_t> hashes;  // prefix-cache chain hashes of the full blocks of `tokens` computed so far
    int published = 0;         // leading blocks offered to the prefix cache since admission
    bool counted = false;      // its prefix-cache hit and miss tokens are in the stats
    int slot = -1;             // row of the device block table while running
    size_t bt_synced = 0;      // blocks already written to that row
    void * host_import = nullptr;  // pinned KV written through import segments, uploaded at admission
    size_t import_blocks = 0;      // how many of `blocks` host_import holds (the decode may add one before the upload)
    int first_token = -1;      // generation-only
    bool cancel = false;
    // Constrained decoding (trtd_executor_set_token_mask): the next sampled token's allowed-token bitmask, set by the
    // caller under mu. A constrained row is drawn on the host, or with device masks (device_mask) on the device. A mask
    // given while the step's forward pass runs is drawn with in that step; when the step ends before its mask came, its
    // logits row waits (awaiting_mask) in held_logits (downloaded) or, device_mask, in the engine's held slot of the
    // request's batch slot, and is drawn once the mask is there, holding up no other row. Meanwhile pending() is 0, so
    // no forward pass includes the request until that token is drawn.
    bool constrained = false;
    bool device_mask = false;  // constrained, TRTD_CUDA_DEVICE_MASK=1 and no host_only() field: fixed at enqueue
    bool mask_ready = false;
    bool awaiting_mask = false;
    std::vector<uint32_t> mask;
    std::vector<float> held_logits;
    int pending() const { return int(tokens.size()) - computed; }
    // What only the host draw has (logit controls, min_p, logprobs): the device sampler has none of these.
    bool host_only() const { return controls.active() || logprobs || (sampling.temperature > 0 && sampling.min_p > 0); }
    // Drawn on the host from the step's downloaded logits row, with the reference executor's code (logit_controls.cpp,
    // sampler.cpp): host_only() rows, and constrained rows unless their masks are applied on the device.
    bool host_draw() const { return host_only() || (constrained && !device_mask); }
    // The device sampler's parameters of its next token.
    trtd::cuda::SampleParams sample_params() const {
        trtd::cuda::SampleParams p{};
        p.seed = sampling.seed;
        p.n = uint64_t(generated_offset) + uint64_t(generated);
        p.temperature = sampling.temperature;
        p.top_p = sampling.top_p;
        p.top_k = sampling.top_k;
        return p;
    }
};

// The engine's lock, shared by the iteration loop and the ABI calls that use the engine (KV export and import,
// logits). A plain std::mutex is not fair: the loop takes it again right after each step, and a caller on the
// binding's thread (Node's event loop) waited for seconds while decode steps ran back to back (an H100 deployment:
// the decode worker sent nothing for 3 s and was declared gone). Callers announce themselves and the loop lets
// them in before its next step, so a call waits for at most the step in flight.
struct ComputeGate {
    std::mutex m;
    std::atomic<int> callers{0};
    void lock() {  // the ABI calls (std::lock_guard<ComputeGate>)
        callers.fetch_add(1, std::memory_order_acq_rel);
        m.lock();
        callers.fetch_sub(1, std::memory_order_acq_rel);
    }
    void unlock() { m.unlock(); }
    void lock_for_step() {  // the iteration loop: after any waiting caller
        while (callers.load(std::memory_order_acquire) > 0) std::this_thread::yield();
        m.lock();
    }
};
struct StepLock {
    ComputeGate & g;
    explicit StepLock(ComputeGate & gate) : g(gate) { g.lock_for_step(); }
    ~StepLock() { g.unlock(); }
    StepLock(const StepLock &) = delete;
    StepLock & operator=(const StepLock &) = delete;
};

struct Held {  // pinned export or reserved import
    int num_tokens = 0;
    std::vector<int> blocks;
    void * host = nullptr;       // pinned staging for the segment views (made on first use)
    std::string descriptor;      // device descriptor (made on first use)
};

void free_host(void *& p) {
    if (p) cudaFreeHost(p);
    p = nullptr;
}

// The host KV tier's copies for KvBlockPool: pinned host slots (cudaHostAlloc, so the copies are real DMA and may be
// asynchronous) and async copies on the engine's stream. KvBlockPool calls wait() before a block it copied from or
// into is handed out, so the next step neither reads a block still arriving nor overwrites one still leaving; a slot
// is reused only by a later copy on the same stream, which runs after the earlier one.
struct HostTierCopier final : KvHostCopier {
    Engine * engine = nullptr;
    unsigned char * slots = nullptr;  // owned (cudaHostAlloc); destroy resets the engine first, so no copy is in flight
    size_t block_bytes = 0;
    HostTierCopier() = default;
    HostTierCopier(const HostTierCopier &) = delete;
    HostTierCopier & operator=(const HostTierCopier &) = delete;
    ~HostTierCopier() override {
        if (slots) cudaFreeHost(slots);
    }
    void to_host(int block, int slot) override { engine->copy_block_to_host_async(block, slots + size_t(slot) * block_bytes); }
    void from_host(int slot, int block) override { engine->copy_block_from_host_async(slots + size_t(slot) * block_bytes, block); }
    void wait() override { engine->host_copies_wait(); }
};

}  // namespace

struct trtd_executor {
    ModelConfig model;
    trtd_executor_config cfg{};
    int max_ctx = 0;
    std::unique_ptr<Engine> engine;
    std::string layout_fp;
    // The host draws (host_draw() rows): spread over draw_threads (config num_threads, 0 = hardware concurrency),
    // each part with its own scratch; used by the engine thread only.
    std::unique_ptr<ThreadPool> draw_threads;
    std::vector<DrawScratch> draw_scratch;
    std::string stall_file;  // test hook TRTD_TEST_STALL_EXECUTOR_FILE (abi_common.hpp: stall_while_file_exists)
    // TRTD_CUDA_DEVICE_MASK=1, read once at create: constrained rows without host_only() fields are masked and drawn on
    // the device (Engine: Step::masks, Step::hold, draw_held). Off by default until a GPU run has passed the
    // conformance suites with it.
    bool device_masks = false;

    std::mutex mu;  // guards everything below; taken after `compute` when both are needed
    std::condition_variable work_cv, resp_cv;
    std::deque<std::unique_ptr<Request>> queue;
    std::vector<std::unique_ptr<Request>> running;  // admission order
    std::unordered_map<trtd_request_id, Request *> live;
    std::map<trtd_request_id, Held> exports;
    std::map<trtd_kv_import_id, Held> imports;
    std::unique_ptr<KvBlockPool> blocks;  // block ownership, the prefix cache and its host tier
    HostTierCopier host_copier;           // its slots: kv_host_cache_bytes of pinned memory, when the tier is on
    std::vector<int> free_slots;
    ResponseQueue responses;
    uint64_t next_id = 1, iterations = 0, generated_tokens = 0, prompt_tokens = 0, preemptions = 0;
    bool stop = false, dirty = false;

    ComputeGate compute;  // the engine (one stream, shared buffers): iterations, KV copies, compute_logits
    std::thread thread;

    // TRTD_CUDA_STEP_TIMING=1: where the engine thread's time goes between steps (printed at destroy).
    bool timing = false;
    double t_sched = 0, t_lock = 0, t_post = 0;
    uint64_t t_steps = 0;
    uint64_t device_masked = 0, device_held = 0;  // device masks: rows masked in their step, held rows drawn later
    static double ms_now() {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
    }

    bool alloc_locked(int n, std::vector<int> & out) { return blocks->allocate(n, out); }
    void free_locked(std::vector<int> & held) {
        blocks->release(held);
        work_cv.notify_one();
    }

    // The chain hashes of r's full blocks up to block n (tokens only grow, so they are computed once).
    void extend_hashes(Request & r, int n) const {
        const int T = cfg.kv_tokens_per_block;
        while (int(r.hashes.size()) < n) {
            const int i = int(r.hashes.size());
            r.hashes.push_back(blocks->block_hash(i ? r.hashes.back() : blocks->root(), i, r.tokens.data() + size_t(i) * size_t(T)));
        }
    }
    // Cached blocks a request being admitted without KV can start from: its leading full blocks, short of its last
    // token (its logits give the next token, and a shared block is never written).
    std::vector<int> prefix_match_locked(Request & r) const {
        if (!r.blocks.empty() || r.computed != 0 || !blocks->prefix_cache()) return {};
        const int max_blocks = prefix_limit(r);
        extend_hashes(r, max_blocks);
        return blocks->match(r.hashes, r.tokens.data(), max_blocks);
    }
    int prefix_limit(const Request & r) const {
        const int kv_tokens = std::min(int(r.tokens.size()), max_ctx - 1);
        return (kv_tokens - 1) / cfg.kv_tokens_per_block;
    }
    // Offers r's blocks that became full since the last call (prompt, imported and generated tokens alike).
    void publish_full_blocks_locked(Request & r) {
        const int T = cfg.kv_tokens_per_block;
        const int full = std::min(r.computed / T, int(r.blocks.size()));
        if (r.published >= full) return;
        extend_hashes(r, full);
        for (; r.published < full; ++r.published) {
            const int i = r.published;
            blocks->publish(r.blocks[size_t(i)], r.hashes[size_t(i)], i ? r.hashes[size_t(i) - 1] : blocks->root(),
                            r.tokens.data() + size_t(i) * size_t(T));
        }
    }
    void release_slot_locked(Request & r) {
        if (r.slot >= 0) free_slots.push_back(r.slot);
        r.slot = -1;
        r.bt_synced = 0;
    }
    void emit_locked(trtd_request_id id, const int * toks, int n, bool final, int reason, int status = 0,
                     const std::string & msg = "", const trtd_token_logprobs * logprobs = nullptr) {
        responses.emit_locked(id, toks, n, final, reason, status, msg, logprobs);
        resp_cv.notify_all();
    }

    void finish_locked(Request & r, int reason, int status = 0, const std::string & msg = "") {
        release_slot_locked(r);
        free_host(r.host_import);
        if (r.type == TRTD_REQUEST_CONTEXT_ONLY && (reason == TRTD_FINISH_LENGTH || reason == TRTD_FINISH_END_ID ||
                                                    reason == TRTD_FINISH_STOP_TOKEN)) {
            Held & h = exports[r.id];
            h.num_tokens = r.prompt_len;
            h.blocks = std::move(r.blocks);
            r.blocks.clear();
        } else {
            free_locked(r.blocks);
        }
        live.erase(r.id);
        emit_locked(r.id, nullptr, 0, true, reason, status, msg);
    }

    bool accept_token_locked(Request & r, int token, const trtd_token_logprobs * logprobs = nullptr) {
        r.tokens.push_back(token);
        ++r.generated;
        ++generated_tokens;
        emit_locked(r.id, &token, 1, false, 0, 0, "", logprobs);
        int reason = 0;
        if (r.end_id >= 0 && token == r.end_id) reason = TRTD_FINISH_END_ID;
        else if (std::find(r.stop.begin(), r.stop.end(), token) != r.stop.end()) reason = TRTD_FINISH_STOP_TOKEN;
        else if (r.generated >= r.max_new || int(r.tokens.size()) >= max_ctx || r.type == TRTD_REQUEST_CONTEXT_ONLY)
            reason = TRTD_FINISH_LENGTH;
        if (!reason) return false;
        finish_locked(r, reason);
        return true;
    }

    // Blocks a queued request needs to be admitted: all of its current tokens' KV (its prompt, or prompt plus
    // generated tokens after a preemption), so that its prefill never waits for blocks half way.
    int admission_need(const Request & r) const {
        const int kv_tokens = std::min(int(r.tokens.size()), max_ctx - 1);
        return std::max(0, ceil_div(kv_tokens, cfg.kv_tokens_per_block) - int(r.blocks.size()));
    }
    bool can_admit_locked() const {
        if (queue.empty() || free_slots.empty()) return false;
        Request & h = *queue.front();
        if (h.cancel) return true;
        const std::vector<int> matched = prefix_match_locked(h);
        return blocks->can_allocate(admission_need(h) - int(matched.size()), matched);
    }

    void handle_cancels_locked() {
        for (auto it = queue.begin(); it != queue.end();) {
            if ((*it)->cancel) { finish_locked(**it, TRTD_FINISH_CANCELLED); it = queue.erase(it); }
            else ++it;
        }
        for (auto it = running.begin(); it != running.end();) {
            if ((*it)->cancel) { finish_locked(**it, TRTD_FINISH_CANCELLED); it = running.erase(it); }
            else ++it;
        }
    }

    void admit_locked(std::vector<Request *> & uploads) {
        while (can_admit_locked()) {
            std::unique_ptr<Request> r = std::move(queue.front());
            queue.pop_front();
            if (r->cancel) { finish_locked(*r, TRTD_FINISH_CANCELLED); continue; }
            bool allocated;
            if (r->blocks.empty() && r->computed == 0) {  // fresh, or preempted: start from the cached prefix
                const std::vector<int> matched = prefix_match_locked(*r);
                blocks->acquire(matched);
                r->blocks = matched;
                // The rest of the prefix may be in the host tier: copied back into the first blocks allocated here
                // (r->hashes reach prefix_limit only with the prefix cache on; without a tier nothing is restored).
                const int restored = blocks->allocate_restoring(admission_need(*r), r->hashes, r->tokens.data(), int(matched.size()),
                                                                std::min(prefix_limit(*r), int(r->hashes.size())), r->blocks);
                allocated = restored >= 0;
                const int cached = int(matched.size()) + std::max(restored, 0);
                r->published = cached;
                r->computed = cached * cfg.kv_tokens_per_block;
                if (!r->counted && allocated) {  // hit and miss tokens: once per request, at its first admission
                    r->counted = true;
                    const int hit = std::min(r->computed, r->prompt_len);
                    blocks->hit_tokens += uint64_t(hit);
                    blocks->miss_tokens += uint64_t(r->prompt_len - hit);
                }
            } else {
                allocated = alloc_locked(admission_need(*r), r->blocks);
            }
            if (!allocated) {  // cannot happen: can_admit_locked counted
                free_locked(r->blocks);
                finish_locked(*r, TRTD_FINISH_ERROR, TRTD_STATUS_INTERNAL, "admission found too few free KV blocks");
                continue;
            }
            r->slot = free_slots.back();
            free_slots.pop_back();
            r->bt_synced = 0;
            if (r->type == TRTD_REQUEST_GENERATION_ONLY && r->first_token >= 0) {
                // The first token came from the context phase: emit it as this request's first output, so
                // generation-only output equals context-and-generation output token for token. A request that ends
                // with it (max_new_tokens 1, a stop token) is finished and freed here, its staged import with it:
                // it must not be queued for the upload.
                const int t = r->first_token;
                r->first_token = -1;
                if (accept_token_locked(*r, t)) continue;
            }
            if (r->host_import) uploads.push_back(r.get());
            running.push_back(std::move(r));
        }
    }

    // The most recently admitted request gives its blocks back and waits in front of the queue.
    void preempt_locked(Request & r) {
        ++preemptions;
        // Held logits are recomputed with the rest (the request's last step samples again); a waiting mask stays.
        r.awaiting_mask = false;
        r.held_logits = std::vector<float>();
        free_locked(r.blocks);  // its completed blocks stay cached: readmission may find them
        free_host(r.host_import);
        release_slot_locked(r);
        r.computed = 0;
        r.published = 0;
        auto it = std::find_if(running.begin(), running.end(), [&](const std::unique_ptr<Request> & p) { return p.get() == &r; });
        queue.push_front(std::move(*it));
        running.erase(it);
    }

    void fail_running_locked(const std::string & msg) {
        for (auto & r : running) finish_locked(*r, TRTD_FINISH_ERROR, TRTD_STATUS_INTERNAL, msg);
        running.clear();
    }

    void loop() {
        cudaSetDevice(cfg.device_id);
        while (true) {
            try {
                run_iterations();
                return;
            } catch (const std::exception & e) {
                std::lock_guard<std::mutex> lk(mu);
                fail_running_locked(std::string("engine iteration failed: ") + e.what());
            }
        }
    }

    // A row drawn on the host: its request, its raw logits (the step's downloaded row, or held_logits) and token
    // mask (may be NULL).
    struct HostDraw { const Request * req; float * raw; const uint32_t * mask; };

    // The token mask, the logit controls and the draw, then the raw row's logprobs (host_draws.hpp: the reference
    // executor's code), one token per row, spread over draw_threads. Each draw depends only on its row, request and
    // n = generated_offset + generated (its random number is counter_uniform(seed, n)), so the parallel order
    // changes no token. Engine thread only; reads request fields that only this thread writes, so runs outside mu.
    void host_draws(const std::vector<HostDraw> & rows, int * tokens, trtd_token_logprobs * logprobs) {
        const int vocab = model.vocab_size;
        parallel_draws(*draw_threads, int(rows.size()), [&](int part, int i) {
            const HostDraw & d = rows[size_t(i)];
            const Request & r = *d.req;
            const uint64_t n = uint64_t(r.generated_offset) + uint64_t(r.generated);
            const DrawContext ctx{r.tokens.data(), int(r.tokens.size()), r.prompt_len - r.generated_offset, int64_t(n)};
            SamplingParams p;
            p.seed = r.sampling.seed;
            p.temperature = r.sampling.temperature;
            p.top_p = r.sampling.top_p;
            p.top_k = r.sampling.top_k;
            p.min_p = r.sampling.min_p;
            logprobs[i] = no_logprobs();
            draw_token(draw_scratch[size_t(part)], d.raw, vocab, d.mask, r.controls, ctx, p, r.logprobs, r.num_top_logprobs,
                       tokens[i], logprobs[i]);
        });
    }

    // A running request the next step can advance: all but constrained ones holding logits without their mask.
    bool runnable_locked() const {
        for (const auto & r : running)
            if (!r->awaiting_mask || r->mask_ready) return true;
        return false;
    }

    // Draws the held rows whose mask has come, before the step is built, so that each request joins this step's
    // decodes with its new token. Caller holds mu through lk; the draws run outside it (requests leave running only
    // on this thread, and the draw reads only fields this thread writes). Rows held on the host are drawn there; rows
    // held on the device (device_mask) by the engine from their held slot (the request's batch slot, which it keeps
    // while it holds: finish and preemption both end the hold), under the compute gate (taken before mu, never inside).
    void sample_held(std::unique_lock<std::mutex> & lk) {
        auto ready = take_ready_masks_locked(running);
        if (ready.empty()) return;
        std::vector<int> tokens(ready.size());
        std::vector<trtd_token_logprobs> logprobs(ready.size(), no_logprobs());
        std::vector<HostDraw> rows;
        std::vector<size_t> host_at, dev_at;
        std::vector<Engine::HeldDraw> dev;
        for (size_t i = 0; i < ready.size(); ++i) {
            Request & r = *ready[i].req;
            if (r.device_mask) {
                dev.push_back({r.slot, ready[i].mask.data(), r.sample_params()});
                dev_at.push_back(i);
            } else {
                rows.push_back({&r, r.held_logits.data(), ready[i].mask.data()});
                host_at.push_back(i);
            }
        }
        lk.unlock();
        std::vector<int> host_tokens(rows.size()), dev_tokens;
        std::vector<trtd_token_logprobs> host_logprobs(rows.size(), no_logprobs());
        host_draws(rows, host_tokens.data(), host_logprobs.data());
        for (size_t k = 0; k < host_at.size(); ++k) {
            tokens[host_at[k]] = host_tokens[k];
            logprobs[host_at[k]] = host_logprobs[k];
        }
        if (!dev.empty()) {
            {
                StepLock clk(compute);
                engine->draw_held(dev, dev_tokens);
            }
            for (size_t k = 0; k < dev_at.size(); ++k) tokens[dev_at[k]] = dev_tokens[k];
            device_held += dev.size();
        }
        lk.lock();
        std::vector<Request *> done;
        for (size_t i = 0; i < ready.size(); ++i) {
            Request & r = *ready[i].req;
            r.awaiting_mask = false;  // held_logits keeps its capacity for the next held row
            if (accept_token_locked(r, tokens[i], r.logprobs ? &logprobs[i] : nullptr)) done.push_back(&r);
        }
        erase_done_locked(running, done);
    }

    void run_iterations() {
        // mask: a constrained row's bitmask, moved out of its request; defer: constrained without a mask yet, so the
        // row's logits are held aside instead of drawn.
        struct Item { Request * req; int n; bool sample; bool defer = false; std::vector<uint32_t> mask = {}; };
        std::vector<Item> items;
        trtd::cuda::Step step;
        std::vector<int> sampled;
        std::vector<float> host_logits;
        std::vector<size_t> host_items;  // parallel to step.host_rows: the row's index in items
        std::vector<size_t> hold_items;  // parallel to step.hold: the row's index in items (device masks)
        std::vector<Engine::HeldDraw> held_now;  // held rows whose mask came during the forward pass
        std::vector<int> held_rows, held_tokens;  // parallel to held_now: the step's sampling row, the token
        std::vector<HostDraw> draws;     // this step's host draws (rows not deferred)
        std::vector<int> draw_rows;      // parallel to draws: the step's sampling row
        std::vector<int> draw_tokens;
        std::vector<trtd_token_logprobs> draw_logprobs;
        std::vector<trtd_token_logprobs> host_logprobs;  // per sampling row: those drawn on the host
        std::vector<Request *> uploads;
        const int T = cfg.kv_tokens_per_block;
        while (true) {
            items.clear();
            step.clear();
            uploads.clear();
            host_items.clear();
            hold_items.clear();
            // The staged imports of this iteration: their buffer and the blocks it holds, fixed at admission. The
            // decode-growth pass below can append a block to the request (a prompt that ends on a block boundary);
            // that block is not in the buffer and must not be copied from it.
            struct HostImport { void * host; std::vector<int> blocks; };
            std::vector<HostImport> host_imports;
            double ts = 0;
            {
                std::unique_lock<std::mutex> lk(mu);
                work_cv.wait(lk, [&] { return stop || dirty || runnable_locked() || can_admit_locked(); });
                if (stop) return;
                if (timing) ts = ms_now();
                dirty = false;
                handle_cancels_locked();
                sample_held(lk);
                if (stop) return;
                admit_locked(uploads);
                for (Request * r : uploads) {
                    host_imports.push_back({r->host_import, std::vector<int>(r->blocks.begin(), r->blocks.begin() + long(r->import_blocks))});
                    r->host_import = nullptr;
                }
                // Decodes grow by a block at a block boundary; without a free block the youngest request yields.
                for (size_t i = 0; i < running.size(); ++i) {
                    Request & r = *running[i];
                    if (r.pending() != 1 || r.computed + 1 <= int(r.blocks.size()) * T) continue;
                    while (!alloc_locked(1, r.blocks)) {
                        Request & victim = *running.back();
                        preempt_locked(victim);
                        if (&victim == &r) break;
                    }
                    if (i >= running.size() || running[i].get() != &r) break;  // r itself was preempted
                }
                int decodes = 0;
                for (auto & r : running)
                    if (r->pending() == 1) { items.push_back({r.get(), 1, true}); ++decodes; }
                int budget = std::max(cfg.max_tokens_per_iteration - decodes, 1);
                for (auto & r : running) {
                    if (r->pending() <= 1 || budget == 0) continue;
                    const int n = std::min(r->pending(), budget);
                    budget -= n;
                    items.push_back({r.get(), n, r->computed + n == int(r->tokens.size())});
                }
                assign_step_masks_locked(items);
                if (items.empty()) continue;
                ++iterations;
                // The step: decode rows first, then each prefill chunk's rows; block table rows brought up to date.
                for (size_t ii = 0; ii < items.size(); ++ii) {
                    const Item & it = items[ii];
                    Request & r = *it.req;
                    for (; r.bt_synced < r.blocks.size(); ++r.bt_synced)
                        step.bt_updates.push_back({r.slot * engine->bt_stride() + int(r.bt_synced), r.blocks[r.bt_synced]});
                    const int row0 = int(step.ids.size());
                    for (int k = 0; k < it.n; ++k) {
                        const int pos = r.computed + k;
                        step.ids.push_back(r.tokens[size_t(pos)]);
                        step.positions.push_back(pos);
                        step.slots.push_back(r.blocks[size_t(pos / T)] * T + pos % T);
                    }
                    if (it.n == 1 && it.sample && r.pending() == 1) {
                        step.dec_seq_len.push_back(r.computed + 1);
                        step.dec_bt_row.push_back(r.slot);
                        ++step.num_decode;
                    } else {
                        step.pf_q_start.push_back(row0);
                        step.pf_q_len.push_back(it.n);
                        step.pf_ctx_len.push_back(r.computed + it.n);
                        step.pf_bt_row.push_back(r.slot);
                    }
                    if (it.sample) {
                        step.logits_rows.push_back(int(step.ids.size()) - 1);
                        trtd::cuda::SampleParams p = r.sample_params();
                        if (r.host_draw()) {  // the device only computes the logits row; its argmax is not used
                            p.temperature = 0;
                            step.host_rows.push_back(int(step.sampling.size()));
                            host_items.push_back(ii);
                        } else if (r.device_mask && it.defer) {  // no mask yet: the raw row stays on the device
                            p.temperature = 0;
                            step.hold.push_back({int(step.sampling.size()), r.slot});
                            hold_items.push_back(ii);
                        }
                        if (device_masks) {  // a masked row is drawn by the device sampler with the others
                            const bool masked = r.device_mask && !it.defer;
                            step.masks.push_back(masked ? it.mask.data() : nullptr);
                            device_masked += masked;
                        }
                        step.sampling.push_back(p);
                    }
                }
                if (timing) t_sched += ms_now() - ts;
            }
            if (!stall_file.empty()) stall_while_file_exists(stall_file, mu, stop);
            std::string error;
            try {
                {
                    StepLock clk(compute);
                    for (auto & hi : host_imports) {
                        engine->copy_blocks_from_host(hi.blocks, hi.host);
                        free_host(hi.host);
                    }
                    host_imports.clear();
                    engine->run(step, sampled, &host_logits);
                }
                // Masks that arrived during the forward pass (the caller computes token t + 1's mask while the step
                // that reads token t runs): those rows draw now, from this step's logits. Only the rows still without
                // a mask are held, their logits copied aside for sample_held (on the device: run() put them in their
                // held slots already).
                if (!host_items.empty() || !hold_items.empty()) {
                    std::lock_guard<std::mutex> lk(mu);
                    take_masks_arrived_locked(items);
                }
                held_now.clear();
                held_rows.clear();
                for (size_t k = 0; k < step.hold.size(); ++k) {
                    const Item & it = items[hold_items[k]];
                    if (it.defer) continue;
                    held_now.push_back({step.hold[k].second, it.mask.data(), it.req->sample_params()});
                    held_rows.push_back(step.hold[k].first);
                }
                if (!held_now.empty()) {
                    {
                        StepLock clk(compute);
                        engine->draw_held(held_now, held_tokens);
                    }
                    for (size_t k = 0; k < held_now.size(); ++k) sampled[size_t(held_rows[k])] = held_tokens[k];
                    device_held += held_now.size();
                }
                // Request fields the draws read (tokens, counts) change only on this thread, under mu below.
                host_logprobs.assign(step.sampling.size(), no_logprobs());
                draws.clear();
                draw_rows.clear();
                for (size_t k = 0; k < step.host_rows.size(); ++k) {
                    Item & it = items[host_items[k]];
                    float * raw = host_logits.data() + k * size_t(model.vocab_size);
                    if (it.defer) {
                        it.req->held_logits.assign(raw, raw + model.vocab_size);
                        continue;
                    }
                    draws.push_back({it.req, raw, it.mask.empty() ? nullptr : it.mask.data()});
                    draw_rows.push_back(step.host_rows[k]);
                }
                draw_tokens.resize(draws.size());
                draw_logprobs.resize(draws.size());
                host_draws(draws, draw_tokens.data(), draw_logprobs.data());
                for (size_t d = 0; d < draws.size(); ++d) {
                    sampled[size_t(draw_rows[d])] = draw_tokens[d];
                    host_logprobs[size_t(draw_rows[d])] = draw_logprobs[d];
                }
            } catch (const std::exception & e) {
                error = std::string("forward pass failed: ") + e.what();
                for (auto & hi : host_imports) free_host(hi.host);
            }
            const double tl = timing ? ms_now() : 0;
            std::lock_guard<std::mutex> lk(mu);
            const double tp = timing ? ms_now() : 0;
            if (timing) { t_lock += tp - tl; ++t_steps; }
            if (!error.empty()) { fail_running_locked(error); continue; }
            size_t si = 0;
            std::vector<Request *> done;
            for (const Item & it : items) {
                Request & r = *it.req;
                for (int k = 0; k < it.n; ++k)
                    if (r.computed + k < r.prompt_len) ++prompt_tokens;
                r.computed += it.n;
                publish_full_blocks_locked(r);
                if (!it.sample) continue;
                const size_t d = si++;
                if (it.defer) { r.awaiting_mask = true; continue; }  // its logits are held: sample_held draws it
                if (accept_token_locked(r, sampled[d], r.logprobs ? &host_logprobs[d] : nullptr)) done.push_back(&r);
            }
            erase_done_locked(running, done);
            if (timing) t_post += ms_now() - tp;
        }
    }

    // The CUDA device is per thread: every call that reaches the engine from an API thread binds it first.
    void bind() const { cudaSetDevice(cfg.device_id); }

    // Host views of a held set of blocks (pinned staging), copied from the device on first use.
    void * host_view_of(Held & h, bool fill_from_device) {
        if (!h.host) {
            bind();
            void * p = nullptr;
            trtd::cuda::cuda_check(cudaHostAlloc(&p, h.blocks.size() * engine->block_bytes(), cudaHostAllocDefault), "pinned KV staging");
            h.host = p;
            if (fill_from_device) engine->copy_blocks_to_host(h.blocks, h.host);
        }
        return h.host;
    }
};

namespace {

trtd_status host_segments(trtd_executor * ex, Held & h, bool from_device, trtd_kv_segment * segs, int32_t max, int32_t * n_out) {
    const int n = int(h.blocks.size());
    *n_out = n;
    if (max < n) return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "segment buffer holds " + std::to_string(max) + ", need " + std::to_string(n));
    if (!segs) return fail(TRTD_STATUS_INVALID_ARGUMENT, "segments is NULL");
    unsigned char * base = static_cast<unsigned char *>(ex->host_view_of(h, from_device));
    const size_t bb = ex->engine->block_bytes();
    for (int i = 0; i < n; ++i) {
        segs[i].data = base + size_t(i) * bb;
        segs[i].size = bb;
        segs[i].memory_kind = TRTD_MEMORY_HOST_PINNED;
        segs[i].device_id = -1;
    }
    return TRTD_STATUS_OK;
}

}  // namespace

extern "C" {

int32_t trtd_abi_version(void) { return TRTD_ABI_VERSION; }

const char * trtd_version(void) { return "trtd-cuda 0.1.0 (CUDA executor, sm_90)"; }

const char * trtd_last_error(void) { return last_error(); }

trtd_executor_config trtd_executor_default_config(void) {
    trtd_executor_config c{};
    c.kv_memory_bytes = int64_t(2) << 30;
    c.max_batch_size = 32;
    c.max_tokens_per_iteration = 512;
    c.kv_tokens_per_block = 32;
    c.kv_block_count = 0;
    c.num_threads = 0;
    c.max_context_length = 0;
    c.device_id = 0;
    c.max_queued_requests = 0;
    c.enable_prefix_cache = true;
    c.kv_host_cache_bytes = 0;
    return c;
}

trtd_sampling_params trtd_sampling_default_params(void) {
    trtd_sampling_params p{};
    p.top_p = 1;
    p.repetition_penalty = 1;
    return p;
}

trtd_status trtd_executor_create(const char * model_dir, const trtd_executor_config * config, trtd_executor ** executor_out) {
    if (executor_out) *executor_out = nullptr;
    return guarded([&]() -> trtd_status {
        if (!model_dir || !config || !executor_out)
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "model_dir, config and executor_out must not be NULL");
        const trtd_executor_config & c = *config;
        if (trtd_status s = validate_config(c); s) return s;
        if (c.device_id < 0) return fail(TRTD_STATUS_INVALID_ARGUMENT, "the CUDA executor needs device_id >= 0");
        int count = 0;
        const cudaError_t ce = cudaGetDeviceCount(&count);
        if (ce != cudaSuccess || count == 0)
            return fail(TRTD_STATUS_UNSUPPORTED, std::string("no CUDA device: ") +
                                                     (ce != cudaSuccess ? cudaGetErrorString(ce) : "cudaGetDeviceCount found none"));
        if (c.device_id >= count)
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "device_id " + std::to_string(c.device_id) + " is out of range (" +
                                                          std::to_string(count) + " CUDA devices)");
        std::unique_ptr<trtd_executor> ex(new trtd_executor());
        ex->cfg = c;
        try {
            ex->model = read_model_config(model_dir);
        } catch (const std::exception & e) {
            return fail(TRTD_STATUS_MODEL_LOAD, e.what());
        }
        const ModelConfig & mc = ex->model;
        ex->max_ctx = c.max_context_length ? c.max_context_length : mc.max_position_embeddings;
        if (ex->max_ctx > mc.max_position_embeddings)
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "max_context_length " + std::to_string(ex->max_ctx) + " exceeds the model's " +
                                                          std::to_string(mc.max_position_embeddings));
        if (ex->max_ctx < 2) return fail(TRTD_STATUS_INVALID_ARGUMENT, "max_context_length must be >= 2");
        trtd::cuda::EngineConfig ec;
        ec.device = c.device_id;
        ec.max_batch = c.max_batch_size;
        ec.max_tokens = c.max_tokens_per_iteration;
        ec.tokens_per_block = c.kv_tokens_per_block;
        ec.num_blocks = c.kv_block_count;
        ec.kv_bytes = c.kv_memory_bytes ? c.kv_memory_bytes : (int64_t(64) << 20);
        ec.max_ctx = ex->max_ctx;
        if (const char * g = std::getenv("TRTD_CUDA_GRAPHS"); g && std::string(g) == "0") ec.cuda_graphs = false;
        if (const char * t = std::getenv("TRTD_CUDA_STEP_TIMING"); t && *t == '1') ex->timing = true;
        if (const char * m = std::getenv("TRTD_CUDA_DEVICE_MASK"); m && std::string(m) == "1") {
            ex->device_masks = ec.device_masks = true;
            std::fprintf(stderr, "trtd-cuda: TRTD_CUDA_DEVICE_MASK=1: constrained rows without logit controls, logprobs or "
                                 "min_p are masked and drawn on the device\n");
        }
        try {
            trtd::cuda::cuda_check(cudaSetDevice(c.device_id), "cudaSetDevice");
            ex->engine.reset(new Engine(model_dir, mc, ec));
        } catch (const std::invalid_argument & e) {
            return fail(TRTD_STATUS_MODEL_LOAD, e.what());
        } catch (const std::exception & e) {
            const std::string m = e.what();
            if (m.find("out of memory") != std::string::npos) return fail(TRTD_STATUS_OUT_OF_MEMORY, m);
            return fail(m.find("tensor") != std::string::npos || m.find("safetensors") != std::string::npos || m.find("cannot open") != std::string::npos
                            ? TRTD_STATUS_MODEL_LOAD : TRTD_STATUS_INTERNAL, m);
        }
        ex->cfg.kv_block_count = ex->engine->num_blocks();
        const int nt = c.num_threads ? c.num_threads : int(std::max(1u, std::thread::hardware_concurrency()));
        ex->cfg.num_threads = nt;
        ex->draw_threads.reset(new ThreadPool(nt));
        ex->draw_scratch.resize(size_t(ex->draw_threads->size()));
        for (DrawScratch & s : ex->draw_scratch) s.reserve(mc.vocab_size);
        if (const char * f = std::getenv("TRTD_TEST_STALL_EXECUTOR_FILE")) ex->stall_file = f;
        ex->blocks.reset(new KvBlockPool(ex->cfg.kv_block_count, c.kv_tokens_per_block, ex->engine->fingerprint(), c.enable_prefix_cache));
        if (c.kv_host_cache_bytes > 0) {
            const size_t bb = ex->engine->block_bytes();
            const int64_t slots = c.kv_host_cache_bytes / int64_t(bb);
            if (slots < 1)
                return fail(TRTD_STATUS_INVALID_ARGUMENT, "kv_host_cache_bytes holds no block (" + std::to_string(bb) + " bytes each)");
            if (slots > (int64_t(1) << 30)) return fail(TRTD_STATUS_INVALID_ARGUMENT, "kv_host_cache_bytes: too many blocks");
            void * host = nullptr;
            const cudaError_t he = cudaHostAlloc(&host, size_t(slots) * bb, cudaHostAllocDefault);
            if (he != cudaSuccess)
                return fail(TRTD_STATUS_OUT_OF_MEMORY, "kv_host_cache_bytes: cudaHostAlloc of " + std::to_string(size_t(slots) * bb) +
                                                           " bytes failed: " + cudaGetErrorString(he));
            ex->host_copier.engine = ex->engine.get();
            ex->host_copier.slots = static_cast<unsigned char *>(host);
            ex->host_copier.block_bytes = bb;
            ex->blocks->enable_host_tier(int(slots), &ex->host_copier);
        }
        for (int s = ex->cfg.max_batch_size - 1; s >= 0; --s) ex->free_slots.push_back(s);
        {
            trtd_kv_layout l;
            trtd_executor_kv_layout(ex.get(), &l);
            ex->layout_fp = l.fingerprint;
        }
        if (!ex->responses.open())
            return fail(TRTD_STATUS_INTERNAL, std::string("socketpair failed: ") + std::strerror(errno));
        trtd_executor * raw = ex.get();
        ex->thread = std::thread([raw] { raw->loop(); });
        *executor_out = ex.release();
        return TRTD_STATUS_OK;
    });
}

void trtd_executor_destroy(trtd_executor * ex) {
    if (!ex) return;
    {
        std::lock_guard<std::mutex> lk(ex->mu);
        ex->stop = true;
    }
    ex->work_cv.notify_all();
    ex->resp_cv.notify_all();
    if (ex->thread.joinable()) ex->thread.join();
    if (ex->timing && ex->t_steps)
        std::fprintf(stderr, "trtd-cuda loop: %llu steps: schedule %.4f ms, lock wait %.4f ms, accept %.4f ms per step; "
                             "device masks: %llu rows masked in their step, %llu held rows drawn later\n",
                     (unsigned long long)ex->t_steps, ex->t_sched / double(ex->t_steps), ex->t_lock / double(ex->t_steps),
                     ex->t_post / double(ex->t_steps), (unsigned long long)ex->device_masked, (unsigned long long)ex->device_held);
    for (auto & q : ex->queue) free_host(q->host_import);
    for (auto & r : ex->running) free_host(r->host_import);
    for (auto & e : ex->exports) free_host(e.second.host);
    for (auto & i : ex->imports) free_host(i.second.host);
    ex->engine.reset();  // waits for the stream: no host-tier copy is in flight after it
    delete ex;           // the host tier's pinned slots with it (~HostTierCopier)
}

trtd_status trtd_executor_model_info(const trtd_executor * ex, trtd_model_info * out) {
    if (!ex || !out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and info_out must not be NULL");
    const ModelConfig & c = ex->model;
    std::memset(out, 0, sizeof(*out));
    out->vocab_size = c.vocab_size;
    out->num_layers = c.num_layers;
    out->hidden_size = c.hidden_size;
    out->num_heads = c.num_heads;
    out->num_kv_heads = c.num_kv_heads;
    out->head_dim = c.head_dim;
    out->max_context_length = ex->max_ctx;
    out->num_eos_token_ids = int32_t(std::min<size_t>(8, c.eos_token_ids.size()));
    for (int i = 0; i < out->num_eos_token_ids; ++i) out->eos_token_ids[i] = c.eos_token_ids[size_t(i)];
    copy_fixed(out->fingerprint, sizeof(out->fingerprint), ex->engine->fingerprint());
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_enqueue(trtd_executor * ex, const trtd_request * req, trtd_request_id * id_out) {
    if (id_out) *id_out = 0;
    return guarded([&]() -> trtd_status {
        if (!ex || !req || !id_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor, request and id_out must not be NULL");
        if (trtd_status s = validate_request(req, ex->model.vocab_size, ex->max_ctx); s) return s;
        const bool gen_only = req->type == TRTD_REQUEST_GENERATION_ONLY;
        auto r = std::make_unique<Request>();
        r->type = req->type;
        r->tokens.assign(req->prompt, req->prompt + req->prompt_len);
        r->prompt_len = req->prompt_len;
        r->max_new = req->max_new_tokens;
        r->generated_offset = req->generated_offset;
        r->end_id = req->end_id;
        if (req->num_stop_token_ids) r->stop.assign(req->stop_token_ids, req->stop_token_ids + req->num_stop_token_ids);
        r->sampling = req->sampling;
        r->controls = LogitControls::from_request(*req);
        r->logprobs = req->logprobs;
        r->constrained = req->constrained;
        r->num_top_logprobs = req->num_top_logprobs;
        r->device_mask = ex->device_masks && r->constrained && !r->host_only();
        const int T = ex->cfg.kv_tokens_per_block;
        const int kv_tokens = req->type == TRTD_REQUEST_CONTEXT_ONLY
                                  ? r->prompt_len
                                  : int(std::min<int64_t>(int64_t(r->prompt_len) + r->max_new, ex->max_ctx)) - 1;
        const int lifetime_blocks = ceil_div(kv_tokens, T);

        std::lock_guard<std::mutex> lk(ex->mu);
        if (ex->stop) return fail(TRTD_STATUS_SHUT_DOWN, "the executor is shutting down");
        if (lifetime_blocks > ex->cfg.kv_block_count)
            return fail(TRTD_STATUS_KV_CAPACITY, "the request needs " + std::to_string(lifetime_blocks) +
                                                     " KV blocks (prompt + max_new_tokens); the pool has " +
                                                     std::to_string(ex->cfg.kv_block_count));
        if (ex->cfg.max_queued_requests && int(ex->queue.size()) >= ex->cfg.max_queued_requests)
            return fail(TRTD_STATUS_QUEUE_FULL, "the request queue is full (" + std::to_string(ex->queue.size()) + " waiting)");
        if (gen_only) {
            auto it = ex->imports.find(req->context_phase->kv_import_id);
            if (it == ex->imports.end())
                return fail(TRTD_STATUS_NOT_FOUND, "unknown or already consumed kv_import_id " +
                                                       std::to_string(req->context_phase->kv_import_id));
            if (it->second.num_tokens != r->prompt_len)
                return fail(TRTD_STATUS_INVALID_ARGUMENT, "the KV import holds " + std::to_string(it->second.num_tokens) +
                                                              " tokens but the prompt has " + std::to_string(r->prompt_len));
            r->blocks = std::move(it->second.blocks);
            r->host_import = it->second.host;  // written through import segments: uploaded at admission
            r->import_blocks = r->blocks.size();
            ex->imports.erase(it);
            r->computed = r->prompt_len;
            r->first_token = req->context_phase->first_token;
        }
        r->id = ex->next_id++;
        *id_out = r->id;
        ex->live[r->id] = r.get();
        ex->queue.push_back(std::move(r));
        ex->work_cv.notify_one();
        return TRTD_STATUS_OK;
    });
}

trtd_status trtd_executor_cancel(trtd_executor * ex, trtd_request_id id) {
    if (!ex) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->live.find(id);
    if (it == ex->live.end()) return fail(TRTD_STATUS_NOT_FOUND, "no live request " + std::to_string(id));
    it->second->cancel = true;
    ex->dirty = true;
    ex->work_cv.notify_one();
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_await_responses(trtd_executor * ex, int32_t timeout_ms, trtd_response * responses, int32_t max_responses,
                                          trtd_token * tokens, int32_t max_tokens, int32_t * n_out) {
    return trtd_executor_await_responses_ext(ex, timeout_ms, responses, max_responses, tokens, max_tokens, nullptr, n_out);
}

trtd_status trtd_executor_await_responses_ext(trtd_executor * ex, int32_t timeout_ms, trtd_response * responses,
                                              int32_t max_responses, trtd_token * tokens, int32_t max_tokens,
                                              trtd_token_logprobs * logprobs, int32_t * n_out) {
    if (n_out) *n_out = 0;
    if (!ex || !n_out || (max_responses > 0 && !responses) || (max_tokens > 0 && !tokens) || max_responses < 0 || max_tokens < 0)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "await_responses: bad buffers");
    std::unique_lock<std::mutex> lk(ex->mu);
    auto ready = [&] { return !ex->responses.empty_locked() || ex->stop; };
    if (timeout_ms < 0) ex->resp_cv.wait(lk, ready);
    else if (timeout_ms > 0) ex->resp_cv.wait_for(lk, std::chrono::milliseconds(timeout_ms), ready);
    *n_out = ex->responses.drain_locked(responses, max_responses, tokens, max_tokens, logprobs);
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_notify_fd(trtd_executor * ex, bool take, int32_t * fd_out) {
    if (!ex || !fd_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and fd_out must not be NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    return ex->responses.notify_fd_locked(take, fd_out);
}

trtd_status trtd_executor_context_phase_state(trtd_executor * ex, trtd_request_id id, void *, uint64_t, uint64_t * size_out) {
    if (!ex || !size_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and size_out must not be NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    if (!ex->exports.count(id)) return fail(TRTD_STATUS_NOT_FOUND, "no finished context-only request " + std::to_string(id));
    *size_out = 0;  // KV travels as segments or a device descriptor
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_get_stats(trtd_executor * ex, trtd_executor_stats * out) {
    if (!ex || !out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and stats_out must not be NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    std::memset(out, 0, sizeof(*out));
    out->iterations = ex->iterations;
    out->generated_tokens = ex->generated_tokens;
    out->prompt_tokens = ex->prompt_tokens;
    out->active_requests = int32_t(ex->running.size());
    out->queued_requests = int32_t(ex->queue.size());
    out->kv_blocks_total = ex->cfg.kv_block_count;
    out->kv_blocks_free = int32_t(ex->blocks->free_count());
    out->kv_blocks_used = int32_t(ex->blocks->held_count());
    out->kv_blocks_cached = int32_t(ex->blocks->idle_cached_count());
    out->prefix_cache_hit_tokens = ex->blocks->hit_tokens;
    out->prefix_cache_miss_tokens = ex->blocks->miss_tokens;
    out->prefix_cache_evicted_blocks = ex->blocks->evicted_blocks;
    out->kv_host_stored_blocks = ex->blocks->host_stored_blocks;
    out->kv_host_hit_blocks = ex->blocks->host_hit_blocks;
    out->kv_host_evicted_blocks = ex->blocks->host_evicted_blocks;
    out->kv_host_blocks_total = int32_t(ex->blocks->host_slots_total());
    out->kv_host_blocks_held = int32_t(ex->blocks->host_slots_held());
    out->pinned_exports = int32_t(ex->exports.size());
    out->pending_imports = int32_t(ex->imports.size());
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_kv_events(trtd_executor * ex, trtd_kv_event * events, int32_t max_events, int32_t * n_out,
                                    bool * lost_out) {
    if (!ex) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    return drain_kv_events(*ex->blocks, events, max_events, n_out, lost_out);
}

trtd_status trtd_executor_kv_cache_snapshot(trtd_executor * ex, uint64_t * hashes, int32_t max_hashes, int32_t * n_out) {
    if (!ex) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    return kv_cache_snapshot(*ex->blocks, hashes, max_hashes, n_out);
}

trtd_status trtd_executor_kv_layout(const trtd_executor * ex, trtd_kv_layout * out) {
    if (!ex || !out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and layout_out must not be NULL");
    std::memset(out, 0, sizeof(*out));
    out->bytes_per_block = ex->engine->block_bytes();
    out->num_layers = ex->model.num_layers;
    out->num_kv_heads = ex->model.num_kv_heads;
    out->head_dim = ex->model.head_dim;
    out->tokens_per_block = ex->cfg.kv_tokens_per_block;
    out->dtype = ex->engine->dtype() == trtd::cuda::DType::BF16 ? TRTD_KV_BFLOAT16 : TRTD_KV_FLOAT16;
    out->memory_kind = TRTD_MEMORY_CUDA_DEVICE;
    const int32_t fields[6] = {out->num_layers, out->num_kv_heads, out->head_dim, out->tokens_per_block, out->dtype, 0};
    uint64_t h = hash_bytes(ex->engine->fingerprint().data(), ex->engine->fingerprint().size(), 0x6b766c61796f7574ull);
    h = hash_bytes(fields, sizeof(fields), h);
    copy_fixed(out->fingerprint, sizeof(out->fingerprint), hex64(h));
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_kv_export_info(trtd_executor * ex, trtd_request_id id, trtd_kv_export_info * out) {
    if (!ex || !out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and info_out must not be NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->exports.find(id);
    if (it == ex->exports.end()) {
        if (ex->live.count(id))
            return fail(TRTD_STATUS_INVALID_STATE, "request " + std::to_string(id) + " is not a finished context-only request");
        return fail(TRTD_STATUS_NOT_FOUND, "no pinned KV for request " + std::to_string(id));
    }
    out->num_tokens = it->second.num_tokens;
    out->num_blocks = int32_t(it->second.blocks.size());
    out->bytes = uint64_t(out->num_blocks) * ex->engine->block_bytes();
    out->memory_kind = TRTD_MEMORY_HOST_PINNED;  // what the segments are; the device path has its own call
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_kv_export_segments(trtd_executor * ex, trtd_request_id id, trtd_kv_segment * segs, int32_t max,
                                             int32_t * n_out) {
    if (!ex || !n_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and num_segments_out must not be NULL");
    return guarded([&]() -> trtd_status {
        std::lock_guard<ComputeGate> clk(ex->compute);
        std::lock_guard<std::mutex> lk(ex->mu);
        auto it = ex->exports.find(id);
        if (it == ex->exports.end()) return fail(TRTD_STATUS_NOT_FOUND, "no pinned KV for request " + std::to_string(id));
        return host_segments(ex, it->second, true, segs, max, n_out);
    });
}

trtd_status trtd_executor_kv_export_copy(trtd_executor * ex, trtd_request_id id, void * buffer, uint64_t size) {
    if (!ex || !buffer) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and buffer must not be NULL");
    return guarded([&]() -> trtd_status {
        std::lock_guard<ComputeGate> clk(ex->compute);
        std::lock_guard<std::mutex> lk(ex->mu);
        auto it = ex->exports.find(id);
        if (it == ex->exports.end()) return fail(TRTD_STATUS_NOT_FOUND, "no pinned KV for request " + std::to_string(id));
        const uint64_t need = ex->engine->block_bytes() * it->second.blocks.size();
        if (size < need) return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "buffer has " + std::to_string(size) + " bytes, need " + std::to_string(need));
        if (it->second.host) std::memcpy(buffer, it->second.host, need);
        else { ex->bind(); ex->engine->copy_blocks_to_host(it->second.blocks, buffer); }
        return TRTD_STATUS_OK;
    });
}

trtd_status trtd_executor_kv_export_release(trtd_executor * ex, trtd_request_id id) {
    if (!ex) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->exports.find(id);
    if (it == ex->exports.end()) return fail(TRTD_STATUS_NOT_FOUND, "no pinned KV for request " + std::to_string(id));
    free_host(it->second.host);
    ex->free_locked(it->second.blocks);
    ex->exports.erase(it);
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_kv_import_reserve(trtd_executor * ex, int32_t num_tokens, trtd_kv_import_id * id_out) {
    if (id_out) *id_out = 0;
    return guarded([&]() -> trtd_status {
        if (!ex || !id_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and import_id_out must not be NULL");
        if (num_tokens < 1 || num_tokens >= ex->max_ctx)
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "num_tokens must be in [1, " + std::to_string(ex->max_ctx - 1) + "]");
        const int need = ceil_div(num_tokens, ex->cfg.kv_tokens_per_block);
        // With the host tier, allocating may copy evicted blocks on the engine's stream: hold the engine (compute
        // before mu, the lock order) so that no step is being captured into a graph meanwhile.
        std::unique_lock<ComputeGate> clk(ex->compute, std::defer_lock);
        if (ex->blocks->host_tier()) clk.lock();
        std::lock_guard<std::mutex> lk(ex->mu);
        if (need > ex->cfg.kv_block_count)
            return fail(TRTD_STATUS_KV_CAPACITY, "the import needs " + std::to_string(need) + " KV blocks; the pool has " +
                                                     std::to_string(ex->cfg.kv_block_count));
        Held h;
        h.num_tokens = num_tokens;
        if (!ex->alloc_locked(need, h.blocks))
            return fail(TRTD_STATUS_KV_EXHAUSTED, "the import needs " + std::to_string(need) + " KV blocks; " +
                                                      std::to_string(ex->blocks->free_count()) + " are free now");
        const trtd_kv_import_id id = ex->next_id++;
        ex->imports[id] = std::move(h);
        *id_out = id;
        return TRTD_STATUS_OK;
    });
}

trtd_status trtd_executor_kv_import_segments(trtd_executor * ex, trtd_kv_import_id id, trtd_kv_segment * segs, int32_t max,
                                             int32_t * n_out) {
    if (!ex || !n_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and num_segments_out must not be NULL");
    return guarded([&]() -> trtd_status {
        std::lock_guard<std::mutex> lk(ex->mu);
        auto it = ex->imports.find(id);
        if (it == ex->imports.end()) return fail(TRTD_STATUS_NOT_FOUND, "unknown or consumed import " + std::to_string(id));
        return host_segments(ex, it->second, false, segs, max, n_out);
    });
}

trtd_status trtd_executor_kv_import_abort(trtd_executor * ex, trtd_kv_import_id id) {
    if (!ex) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->imports.find(id);
    if (it == ex->imports.end()) return fail(TRTD_STATUS_NOT_FOUND, "unknown or consumed import " + std::to_string(id));
    free_host(it->second.host);
    ex->free_locked(it->second.blocks);
    ex->imports.erase(it);
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_device_uuid(const trtd_executor * ex, char * buf, int32_t size) {
    if (!ex || !buf) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and buf must not be NULL");
    if (size < 64) return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "the buffer needs 64 bytes");
    copy_fixed(buf, size_t(size), ex->engine->device_uuid());
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_kv_export_device(trtd_executor * ex, trtd_request_id id, void * buffer, uint64_t size, uint64_t * size_out) {
    if (size_out) *size_out = 0;
    if (!ex || !size_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and size_out must not be NULL");
    return guarded([&]() -> trtd_status {
        std::lock_guard<ComputeGate> clk(ex->compute);
        std::lock_guard<std::mutex> lk(ex->mu);
        auto it = ex->exports.find(id);
        if (it == ex->exports.end()) {
            if (ex->live.count(id))
                return fail(TRTD_STATUS_INVALID_STATE, "request " + std::to_string(id) + " is not a finished context-only request");
            return fail(TRTD_STATUS_NOT_FOUND, "no pinned KV for request " + std::to_string(id));
        }
        Held & h = it->second;
        if (h.descriptor.empty()) {
            try {
                ex->bind();
                h.descriptor = ex->engine->export_descriptor(h.blocks, h.num_tokens, ex->layout_fp);
            } catch (const std::exception & e) {
                return fail(TRTD_STATUS_UNSUPPORTED, std::string("no device export here: ") + e.what());
            }
        }
        *size_out = h.descriptor.size();
        if (!buffer) return TRTD_STATUS_OK;
        if (size < h.descriptor.size())
            return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "the descriptor needs " + std::to_string(h.descriptor.size()) + " bytes");
        std::memcpy(buffer, h.descriptor.data(), h.descriptor.size());
        return TRTD_STATUS_OK;
    });
}

trtd_status trtd_executor_kv_import_device(trtd_executor * ex, trtd_kv_import_id id, const void * desc, uint64_t size) {
    if (!ex || !desc) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and descriptor must not be NULL");
    return guarded([&]() -> trtd_status {
        std::lock_guard<ComputeGate> clk(ex->compute);
        std::vector<int> blocks;
        int num_tokens = 0;
        {
            std::lock_guard<std::mutex> lk(ex->mu);
            auto it = ex->imports.find(id);
            if (it == ex->imports.end()) return fail(TRTD_STATUS_NOT_FOUND, "unknown or consumed import " + std::to_string(id));
            blocks = it->second.blocks;  // the import cannot be consumed or aborted meanwhile: both need mu, and
            num_tokens = it->second.num_tokens;  // consuming it only queues the blocks for the engine (compute)
        }
        bool unsupported = false;
        ex->bind();
        const std::string why = ex->engine->import_descriptor(desc, size, blocks, num_tokens, ex->layout_fp, &unsupported);
        if (why.empty()) return TRTD_STATUS_OK;
        if (unsupported) return fail(TRTD_STATUS_UNSUPPORTED, why);
        return fail(why.find("checksum") != std::string::npos ? TRTD_STATUS_INTERNAL : TRTD_STATUS_INVALID_ARGUMENT, why);
    });
}

// Mask checks and request state are abi_common's (validate_token_mask, set_token_mask_locked), as in the reference executor.
trtd_status trtd_executor_set_token_mask(trtd_executor * ex, trtd_request_id id, const uint32_t * bitmask, int32_t num_words) {
    if (!ex) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and bitmask must not be NULL");
    if (trtd_status s = validate_token_mask(bitmask, num_words, ex->model.vocab_size); s != TRTD_STATUS_OK) return s;
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->live.find(id);
    if (it == ex->live.end()) return fail(TRTD_STATUS_NOT_FOUND, "no live request " + std::to_string(id));
    if (trtd_status s = set_token_mask_locked(*it->second, id, bitmask, num_words); s != TRTD_STATUS_OK) return s;
    ex->dirty = true;
    ex->work_cv.notify_one();
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_compute_logits(trtd_executor * ex, const trtd_token * tokens, int32_t n, float * logits, int64_t max_logits) {
    return guarded([&]() -> trtd_status {
        if (!ex || !tokens || !logits) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor, tokens and logits must not be NULL");
        if (n < 1 || n > ex->max_ctx) return fail(TRTD_STATUS_INVALID_ARGUMENT, "num_tokens must be in [1, max context]");
        const int vocab = ex->model.vocab_size;
        for (int i = 0; i < n; ++i)
            if (trtd_status s = check_token(tokens[i], vocab, "token id"); s) return s;
        if (max_logits < int64_t(n) * vocab)
            return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "logits buffer holds " + std::to_string(max_logits) + " floats, need " +
                                                          std::to_string(int64_t(n) * vocab));
        std::lock_guard<ComputeGate> clk(ex->compute);
        ex->bind();
        ex->engine->logits_all(tokens, n, logits);
        return TRTD_STATUS_OK;
    });
}

}  // extern "C"
