// The reference executor: the C ABI of trtd_executor.h over a CPU Llama forward pass with a paged KV
// pool and in-flight batching on one engine thread. A request is admitted only when every block of its
// lifetime (prompt + max_new_tokens) can be held, so it never runs out of KV half way: under memory pressure
// requests wait in the queue instead of failing or being preempted. Full blocks are shared across requests
// through the prefix cache of KvBlockPool (kv_block_pool.hpp).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include "../../include/trtd_executor.h"
#include "abi_common.hpp"
#include "forward.hpp"
#include "host_draws.hpp"
#include "kv_block_pool.hpp"
#include "logit_controls.hpp"
#include "model.hpp"
#include "sampler.hpp"

using namespace trtd;

namespace {

struct Request {
    trtd_request_id id = 0;
    int type = 0;
    std::vector<int> tokens;  // prompt, then generated tokens
    int prompt_len = 0, max_new = 0, end_id = -1;
    std::vector<int> stop;
    SamplingParams sampling;
    LogitControls controls;
    bool logprobs = false;  // record each drawn token's raw logprobs, with num_top_logprobs alternatives
    int num_top_logprobs = 0;
    int generated = 0;
    int generated_offset = 0;  // draws continue a sequence begun elsewhere: token n uses (seed, offset + n)
    int computed = 0;       // tokens whose K/V are in the cache
    int blocks_needed = 0;  // whole lifetime, reserved at admission
    std::vector<int> blocks;
    std::vector<uint64_t> prompt_hashes;  // chain hashes of the prompt's full blocks (prefix-cache lookup)
    std::vector<uint64_t> block_hashes;   // chain hashes of the leading blocks whose KV is complete
    std::vector<float *> block_ptrs;
    int first_token = -1;   // generation-only
    bool cancel = false;
    // Constrained decoding (trtd_executor_set_token_mask): the next sampled token's allowed-token bitmask, given
    // by the caller under mu. A mask given during the step's forward pass is drawn with in that step; a constrained
    // request whose logits are ready before its mask keeps them in held_logits (awaiting_mask) and samples once
    // the mask is there, without holding up its batch.
    bool constrained = false;
    bool mask_ready = false;
    bool awaiting_mask = false;
    std::vector<uint32_t> mask;
    std::vector<float> held_logits;
};

// The host KV tier's copies for KvBlockPool: plain memcpy between the pool and the tier's slots, both host memory.
struct HostTierCopier final : KvHostCopier {
    float * pool = nullptr;
    float * slots = nullptr;
    size_t block_floats = 0;
    void to_host(int block, int slot) override {
        std::memcpy(slots + size_t(slot) * block_floats, pool + size_t(block) * block_floats, block_floats * 4);
    }
    void from_host(int slot, int block) override {
        std::memcpy(pool + size_t(block) * block_floats, slots + size_t(slot) * block_floats, block_floats * 4);
    }
    void wait() override {}  // memcpy is done when it returns
};

struct Held {  // pinned export or reserved import
    int num_tokens = 0;
    std::vector<int> blocks;
};


int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace

struct trtd_executor {
    Model model;
    trtd_executor_config cfg{};
    int max_ctx = 0;
    KvGeometry geo;
    std::vector<float> pool;
    std::vector<float> host_tier;         // the host KV tier's slots (kv_host_cache_bytes), empty when off
    HostTierCopier host_copier;
    std::unique_ptr<KvBlockPool> blocks;  // block ownership, the prefix cache and its host tier; guarded by mu
    std::unique_ptr<ThreadPool> threads;
    std::unique_ptr<Forward> forward;
    std::vector<DrawScratch> draw_scratch;  // one per compute thread: a batch's draws run in parallel (host_draws.hpp)

    std::mutex mu;               // guards everything below
    std::condition_variable work_cv, resp_cv;
    std::deque<std::unique_ptr<Request>> queue;
    std::vector<std::unique_ptr<Request>> running;  // admission order
    std::unordered_map<trtd_request_id, Request *> live;
    std::map<trtd_request_id, Held> exports;
    std::map<trtd_kv_import_id, Held> imports;
    ResponseQueue responses;
    uint64_t next_id = 1, iterations = 0, generated_tokens = 0, prompt_tokens = 0;
    bool stop = false, dirty = false;
    int64_t last_iteration_us = 0;  // engine thread only: bounds gather_masks_locked's wait

    std::mutex compute_mu;       // one forward pass at a time (engine iterations, compute_logits)
    std::thread engine;
    std::string stall_file;      // test hook TRTD_TEST_STALL_EXECUTOR_FILE (abi_common.hpp: stall_while_file_exists)

    float * block_ptr(int b) { return pool.data() + size_t(b) * geo.block_floats(); }

    void free_locked(std::vector<int> & held) {
        blocks->release(held);
        work_cv.notify_one();  // a queued request may fit now
    }

    // Cached blocks a queued request can start from: the prompt's leading full blocks, leaving at least its
    // last prompt token to compute (its logits give the first output token, and a shared block is never written).
    std::vector<int> prefix_match_locked(const Request & r) const {
        if (r.type == TRTD_REQUEST_GENERATION_ONLY) return {};
        return blocks->match(r.prompt_hashes, r.tokens.data(), (r.prompt_len - 1) / geo.tokens_per_block);
    }

    // Publishes the request's blocks that became full since the last call (prompt and generated tokens alike).
    void publish_full_blocks_locked(Request & r) {
        const int T = geo.tokens_per_block;
        while (int(r.block_hashes.size()) < r.computed / T) {
            const int i = int(r.block_hashes.size());
            const uint64_t parent = i ? r.block_hashes.back() : blocks->root();
            const int * toks = r.tokens.data() + size_t(i) * size_t(T);
            const uint64_t h = blocks->block_hash(parent, i, toks);
            blocks->publish(r.blocks[size_t(i)], h, parent, toks);
            r.block_hashes.push_back(h);
        }
    }

    void emit_locked(trtd_request_id id, const int * toks, int n, bool final, int reason, int status = 0,
                     const std::string & msg = "", const trtd_token_logprobs * logprobs = nullptr) {
        responses.emit_locked(id, toks, n, final, reason, status, msg, logprobs);
        resp_cv.notify_all();
    }

    // Ends a running or queued request: its blocks go to an export (finished context-only) or back to the pool.
    void finish_locked(Request & r, int reason, int status = 0, const std::string & msg = "") {
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

    // Appends a sampled token, emits it (with its logprobs when recorded), and returns true when the request is done.
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

    // A running request the next iteration can advance: all but constrained ones waiting for their mask.
    bool runnable_locked() const {
        for (const auto & r : running)
            if (!r->awaiting_mask || r->mask_ready) return true;
        return false;
    }

    bool can_admit_locked() const {
        if (queue.empty() || int(running.size()) >= cfg.max_batch_size) return false;
        const Request & h = *queue.front();
        if (h.cancel) return true;
        const std::vector<int> matched = prefix_match_locked(h);
        return blocks->can_allocate(h.blocks_needed - int(h.blocks.size()) - int(matched.size()), matched);
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

    void admit_locked() {
        while (can_admit_locked()) {
            std::unique_ptr<Request> r = std::move(queue.front());
            queue.pop_front();
            int restored = 0;
            if (r->type != TRTD_REQUEST_GENERATION_ONLY) {
                const std::vector<int> matched = prefix_match_locked(*r);
                blocks->acquire(matched);
                r->blocks = matched;
                // The rest of the prefix may be in the host tier: those blocks are copied back into the first
                // blocks allocated here (no tier, or the prompt's hashes not computed: nothing is restored).
                restored = blocks->allocate_restoring(r->blocks_needed - int(r->blocks.size()), r->prompt_hashes, r->tokens.data(),
                                                      int(matched.size()), (r->prompt_len - 1) / geo.tokens_per_block, r->blocks);
                if (restored >= 0) {
                    const int cached = int(matched.size()) + restored;
                    r->computed = cached * geo.tokens_per_block;
                    r->block_hashes.assign(r->prompt_hashes.begin(), r->prompt_hashes.begin() + long(cached));
                    blocks->hit_tokens += uint64_t(r->computed);
                    blocks->miss_tokens += uint64_t(r->prompt_len - r->computed);
                }
            } else {
                restored = blocks->allocate(r->blocks_needed - int(r->blocks.size()), r->blocks) ? 0 : -1;
            }
            if (restored < 0) {  // cannot happen: can_admit_locked counted
                finish_locked(*r, TRTD_FINISH_ERROR, TRTD_STATUS_INTERNAL, "admission found too few free KV blocks");
                continue;
            }
            for (int b : r->blocks) r->block_ptrs.push_back(block_ptr(b));
            if (r->type == TRTD_REQUEST_GENERATION_ONLY) {
                publish_full_blocks_locked(*r);  // the imported prompt KV is complete
                // The first token came from the context phase: emit it as this request's first output, so
                // generation-only output equals context-and-generation output token for token.
                if (accept_token_locked(*r, r->first_token)) continue;
            }
            running.push_back(std::move(r));
        }
    }

    void fail_running_locked(const std::string & msg) {
        for (auto & r : running) finish_locked(*r, TRTD_FINISH_ERROR, TRTD_STATUS_INTERNAL, msg);
        running.clear();
    }

    // The engine thread: one iteration at a time; an unexpected exception fails the running requests (their
    // blocks are freed) instead of terminating the process.
    void loop() {
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

    // A draw samples one logits row of the engine's (the step's logits or a request's held logits), read by
    // nobody after its draw; `mask` (constrained requests) is the token's allowed-token bitmask.
    struct Draw { const Request * req; uint64_t n; float * row; const uint32_t * mask; };

    // One token per draw: the token mask, then the logit controls (see the header's "Logit controls" and
    // "Constrained decoding"), the draw, and the raw row's logprobs (when asked). The mask goes first, as a hard
    // constraint: no control raises a -inf logit (bias and penalties are finite, the repetition penalty divides or
    // multiplies by r > 0), so a masked token stays out, and a mask that allows everything leaves the controls'
    // row and the draw unchanged. The raw row is masked in place when nothing reads it afterwards; with logprobs
    // (of the raw model distribution, before mask and controls) or controls, a copy is masked instead.
    // Each draw is a pure function of (logits, request, mask, n) (draw_token), so spreading them over the compute
    // threads changes no token. Caller holds compute_mu: the pool serves one caller at a time.
    void sample_all_locked(const std::vector<Draw> & draws, std::vector<int> & out,
                           std::vector<trtd_token_logprobs> & logprobs) {
        const int vocab = model.cfg.vocab_size;
        parallel_draws(*threads, int(draws.size()), [&](int part, int i) {
            const Draw & d = draws[size_t(i)];
            const Request & r = *d.req;
            const DrawContext ctx{r.tokens.data(), int(r.tokens.size()), r.prompt_len - r.generated_offset, int64_t(d.n)};
            draw_token(draw_scratch[size_t(part)], d.row, vocab, d.mask, r.controls, ctx, r.sampling, r.logprobs,
                       r.num_top_logprobs, out[size_t(i)], logprobs[size_t(i)]);
        });
    }

    // When every running request is a constrained one holding its logits and some of their masks are still on
    // their way (the caller computes them one by one), waits for the rest for at most a quarter of the last
    // iteration, so that they sample in one batch instead of one iteration each. Never when anything else could
    // run: unconstrained requests, prompt chunks and admissions go at once.
    void gather_masks_locked(std::unique_lock<std::mutex> & lk) {
        auto only_held_waiting = [&] {
            if (stop || dirty_cancel_locked() || can_admit_locked()) return false;
            bool missing = false;
            for (const auto & r : running) {
                if (!r->awaiting_mask) return false;
                if (!r->mask_ready) missing = true;
            }
            return missing;
        };
        if (!only_held_waiting()) return;
        const int64_t us = std::clamp<int64_t>(last_iteration_us / 4, 200, 20000);
        work_cv.wait_for(lk, std::chrono::microseconds(us), [&] { return !only_held_waiting(); });
    }

    bool dirty_cancel_locked() const {
        for (const auto & r : running)
            if (r->cancel) return true;
        return false;
    }

    // Samples the constrained requests whose held logits have their mask now, before the iteration's forward pass,
    // so that each joins this iteration's decodes with its new token. Caller holds mu; the draws run outside it.
    void sample_held(std::unique_lock<std::mutex> & lk) {
        auto ready = take_ready_masks_locked(running);
        if (ready.empty()) return;
        std::vector<int> tokens(ready.size());
        std::vector<trtd_token_logprobs> logprobs(ready.size(), no_logprobs());
        std::vector<Draw> draws;
        for (auto & h : ready)
            draws.push_back({h.req, uint64_t(h.req->generated_offset) + uint64_t(h.req->generated),
                             h.req->held_logits.data(), h.mask.data()});
        lk.unlock();  // requests leave running only on this thread, so the pointers stay valid
        {
            std::lock_guard<std::mutex> clk(compute_mu);
            sample_all_locked(draws, tokens, logprobs);  // spread over the compute threads, as a step's draws are
        }
        lk.lock();
        std::vector<Request *> done;
        for (size_t i = 0; i < ready.size(); ++i) {
            Request & r = *ready[i].req;
            r.awaiting_mask = false;
            if (accept_token_locked(r, tokens[i], r.logprobs ? &logprobs[i] : nullptr)) done.push_back(&r);
        }
        erase_done_locked(running, done);
    }

    void run_iterations() {
        // mask: the constrained request's bitmask for this sample (moved out of the request); defer: constrained
        // without a mask yet, so its logits are held aside instead of sampled.
        struct Item { Request * req; int n; bool sample; bool defer; std::vector<uint32_t> mask; };
        std::vector<Item> items;
        std::vector<ForwardRow> rows;
        std::vector<float> logits;
        std::vector<int> sampled;
        std::vector<trtd_token_logprobs> sampled_logprobs;
        std::vector<Draw> draws;
        while (true) {
            items.clear();
            rows.clear();
            {
                std::unique_lock<std::mutex> lk(mu);
                work_cv.wait(lk, [&] { return stop || dirty || runnable_locked() || can_admit_locked(); });
                if (stop) return;
                gather_masks_locked(lk);
                if (stop) return;
                dirty = false;
                handle_cancels_locked();
                admit_locked();
                sample_held(lk);
                if (stop) return;
                // Decodes first (one token each), then prompt chunks within the iteration's token budget, so
                // running decodes never wait for a whole long prompt. A request holding logits for its mask waits.
                int decodes = 0;
                for (auto & r : running)
                    if (r->computed >= r->prompt_len && !r->awaiting_mask) { items.push_back({r.get(), 1, true, false, {}}); ++decodes; }
                int budget = std::max(cfg.max_tokens_per_iteration - decodes, 1);
                for (auto & r : running) {
                    if (r->computed >= r->prompt_len || budget == 0) continue;
                    const int n = std::min(r->prompt_len - r->computed, budget);
                    budget -= n;
                    items.push_back({r.get(), n, r->computed + n == r->prompt_len, false, {}});
                }
                assign_step_masks_locked(items);
                if (items.empty()) continue;
                ++iterations;
            }
            if (!stall_file.empty()) stall_while_file_exists(stall_file, mu, stop);
            int n_logits = 0;
            for (const Item & it : items) {
                for (int k = 0; k < it.n; ++k) {
                    ForwardRow row;
                    row.pos = it.req->computed + k;
                    row.token = it.req->tokens[size_t(row.pos)];
                    row.blocks = it.req->block_ptrs.data();
                    row.logits_index = (it.sample && k == it.n - 1) ? n_logits : -1;
                    rows.push_back(row);
                }
                if (it.sample) ++n_logits;
            }
            const size_t vocab = size_t(model.cfg.vocab_size);
            logits.resize(size_t(n_logits) * vocab);
            std::string error;
            const auto step_start = std::chrono::steady_clock::now();
            try {
                std::lock_guard<std::mutex> clk(compute_mu);  // the pool serves one caller at a time
                forward->run(rows, logits.data());
            } catch (const std::exception & e) {
                error = std::string("forward pass failed: ") + e.what();
            }
            // Masks that arrived during the forward pass (the caller computes token t + 1's mask while the step
            // that reads token t runs): those rows draw now, from this step's logits, with the others. Only the
            // rows still without a mask are deferred, their logits copied aside.
            if (error.empty()) {
                std::lock_guard<std::mutex> lk(mu);
                take_masks_arrived_locked(items);
            }
            // Draws read only engine-owned request fields: they run outside mu.
            draws.clear();
            int row_index = 0;
            for (const Item & it : items) {
                if (!it.sample) continue;
                if (!it.defer)
                    draws.push_back({it.req, uint64_t(it.req->generated_offset) + uint64_t(it.req->generated),
                                     logits.data() + size_t(row_index) * vocab, it.mask.empty() ? nullptr : it.mask.data()});
                ++row_index;
            }
            sampled.assign(draws.size(), 0);
            sampled_logprobs.assign(draws.size(), no_logprobs());
            if (error.empty()) {
                try {
                    std::lock_guard<std::mutex> clk(compute_mu);
                    sample_all_locked(draws, sampled, sampled_logprobs);
                } catch (const std::exception & e) {
                    error = std::string("sampling failed: ") + e.what();
                }
            }
            last_iteration_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - step_start).count();
            // Deferred rows keep their logits until the mask arrives (engine-owned fields: outside mu).
            if (error.empty()) {
                int row = 0;
                for (const Item & it : items) {
                    if (!it.sample) continue;
                    if (it.defer) it.req->held_logits.assign(logits.data() + size_t(row) * vocab, logits.data() + size_t(row + 1) * vocab);
                    ++row;
                }
            }
            std::lock_guard<std::mutex> lk(mu);
            if (!error.empty()) { fail_running_locked(error); continue; }
            int si = 0;
            std::vector<Request *> done;
            for (const Item & it : items) {
                Request & r = *it.req;
                if (r.computed < r.prompt_len) prompt_tokens += uint64_t(it.n);
                r.computed += it.n;
                publish_full_blocks_locked(r);
                if (!it.sample) continue;
                if (it.defer) { r.awaiting_mask = true; continue; }  // sampled by sample_held once its mask is set
                const size_t d = size_t(si++);
                if (accept_token_locked(r, sampled[d], r.logprobs ? &sampled_logprobs[d] : nullptr)) done.push_back(&r);
            }
            erase_done_locked(running, done);
        }
    }
};

namespace {

trtd_status segments_of(trtd_executor * ex, const Held & h, trtd_kv_segment * segs, int32_t max, int32_t * n_out) {
    const int n = int(h.blocks.size());
    if (n_out) *n_out = n;
    if (max < n) return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "segment buffer holds " + std::to_string(max) +
                                                               ", need " + std::to_string(n));
    if (!segs) return fail(TRTD_STATUS_INVALID_ARGUMENT, "segments is NULL");
    for (int i = 0; i < n; ++i) {
        segs[i].data = ex->block_ptr(h.blocks[size_t(i)]);
        segs[i].size = ex->geo.block_floats() * 4;
        segs[i].memory_kind = TRTD_MEMORY_HOST;
        segs[i].device_id = -1;
    }
    return TRTD_STATUS_OK;
}

}  // namespace

extern "C" {

int32_t trtd_abi_version(void) { return TRTD_ABI_VERSION; }

const char * trtd_version(void) { return "trtd-ref 0.1.0 (CPU reference executor)"; }

const char * trtd_last_error(void) { return last_error(); }

trtd_executor_config trtd_executor_default_config(void) {
    trtd_executor_config c{};
    c.kv_memory_bytes = int64_t(64) << 20;
    c.max_batch_size = 32;
    c.max_tokens_per_iteration = 512;
    c.kv_tokens_per_block = 16;
    c.kv_block_count = 0;
    c.num_threads = 0;
    c.max_context_length = 0;
    c.device_id = -1;
    c.max_queued_requests = 0;
    c.enable_prefix_cache = true;
    c.kv_host_cache_bytes = 0;
    return c;
}

trtd_sampling_params trtd_sampling_default_params(void) {
    trtd_sampling_params p{};
    p.seed = 0;
    p.temperature = 0;
    p.top_p = 1;
    p.top_k = 0;
    p.repetition_penalty = 1;
    p.frequency_penalty = 0;
    p.presence_penalty = 0;
    p.min_p = 0;
    return p;
}

trtd_status trtd_executor_create(const char * model_dir, const trtd_executor_config * config,
                                 trtd_executor ** executor_out) {
    if (executor_out) *executor_out = nullptr;
    return guarded([&]() -> trtd_status {
        if (!model_dir || !config || !executor_out)
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "model_dir, config and executor_out must not be NULL");
        const trtd_executor_config & c = *config;
        if (trtd_status s = validate_config(c); s) return s;
        if (c.device_id < -1 || c.device_id > 0)
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "the reference executor runs on the CPU: device_id must be -1 or 0");

        std::unique_ptr<trtd_executor> ex(new trtd_executor());
        ex->cfg = c;
        try {
            load_model(model_dir, ex->model);
        } catch (const std::bad_alloc &) {
            return fail(TRTD_STATUS_OUT_OF_MEMORY, "out of memory loading the model");
        } catch (const std::exception & e) {
            return fail(TRTD_STATUS_MODEL_LOAD, e.what());
        }
        const ModelConfig & mc = ex->model.cfg;
        ex->max_ctx = c.max_context_length ? c.max_context_length : mc.max_position_embeddings;
        if (ex->max_ctx > mc.max_position_embeddings)
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "max_context_length " + std::to_string(ex->max_ctx) +
                                                          " exceeds the model's " + std::to_string(mc.max_position_embeddings));
        if (ex->max_ctx < 2) return fail(TRTD_STATUS_INVALID_ARGUMENT, "max_context_length must be >= 2");
        ex->geo.num_layers = mc.num_layers;
        ex->geo.num_kv_heads = mc.num_kv_heads;
        ex->geo.head_dim = mc.head_dim;
        ex->geo.tokens_per_block = c.kv_tokens_per_block;
        const uint64_t block_bytes = ex->geo.block_floats() * 4;
        int64_t blocks = c.kv_block_count ? c.kv_block_count
                                          : (c.kv_memory_bytes ? c.kv_memory_bytes : (int64_t(64) << 20)) / int64_t(block_bytes);
        if (blocks < 1) return fail(TRTD_STATUS_INVALID_ARGUMENT, "the KV budget holds no block (" +
                                                                      std::to_string(block_bytes) + " bytes each)");
        if (blocks > (int64_t(1) << 30)) return fail(TRTD_STATUS_INVALID_ARGUMENT, "too many KV blocks");
        ex->cfg.kv_block_count = int32_t(blocks);
        ex->pool.assign(size_t(blocks) * ex->geo.block_floats(), 0.0f);
        ex->blocks.reset(new KvBlockPool(int(blocks), c.kv_tokens_per_block, ex->model.fingerprint, c.enable_prefix_cache));
        if (c.kv_host_cache_bytes > 0) {
            const int64_t slots = c.kv_host_cache_bytes / int64_t(block_bytes);
            if (slots < 1) return fail(TRTD_STATUS_INVALID_ARGUMENT, "kv_host_cache_bytes holds no block (" +
                                                                         std::to_string(block_bytes) + " bytes each)");
            if (slots > (int64_t(1) << 30)) return fail(TRTD_STATUS_INVALID_ARGUMENT, "kv_host_cache_bytes: too many blocks");
            ex->host_tier.assign(size_t(slots) * ex->geo.block_floats(), 0.0f);
            ex->host_copier.pool = ex->pool.data();
            ex->host_copier.slots = ex->host_tier.data();
            ex->host_copier.block_floats = ex->geo.block_floats();
            ex->blocks->enable_host_tier(int(slots), &ex->host_copier);
        }
        int nt = c.num_threads ? c.num_threads : int(std::max(1u, std::thread::hardware_concurrency()));
        ex->cfg.num_threads = nt;
        ex->threads.reset(new ThreadPool(nt));
        ex->forward.reset(new Forward(ex->model, *ex->threads, ex->geo));
        ex->draw_scratch.resize(size_t(ex->threads->size()));
        for (DrawScratch & s : ex->draw_scratch) s.reserve(ex->model.cfg.vocab_size);
        if (!ex->responses.open())
            return fail(TRTD_STATUS_INTERNAL, std::string("socketpair failed: ") + std::strerror(errno));
        if (const char * f = std::getenv("TRTD_TEST_STALL_EXECUTOR_FILE")) ex->stall_file = f;
        trtd_executor * raw = ex.get();
        ex->engine = std::thread([raw] { raw->loop(); });
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
    if (ex->engine.joinable()) ex->engine.join();
    delete ex;
}

trtd_status trtd_executor_model_info(const trtd_executor * ex, trtd_model_info * out) {
    if (!ex || !out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and info_out must not be NULL");
    const ModelConfig & c = ex->model.cfg;
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
    copy_fixed(out->fingerprint, sizeof(out->fingerprint), ex->model.fingerprint);
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_enqueue(trtd_executor * ex, const trtd_request * req, trtd_request_id * id_out) {
    if (id_out) *id_out = 0;
    return guarded([&]() -> trtd_status {
        if (!ex || !req || !id_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor, request and id_out must not be NULL");
        if (trtd_status s = validate_request(req, ex->model.cfg.vocab_size, ex->max_ctx); s) return s;
        const trtd_sampling_params & sp = req->sampling;
        const bool gen_only = req->type == TRTD_REQUEST_GENERATION_ONLY;

        auto r = std::make_unique<Request>();
        r->type = req->type;
        r->tokens.assign(req->prompt, req->prompt + req->prompt_len);
        r->prompt_len = req->prompt_len;
        r->max_new = req->max_new_tokens;
        r->generated_offset = req->generated_offset;
        r->constrained = req->constrained;
        r->end_id = req->end_id;
        if (req->num_stop_token_ids) r->stop.assign(req->stop_token_ids, req->stop_token_ids + req->num_stop_token_ids);
        r->sampling.seed = sp.seed;
        r->sampling.temperature = sp.temperature;
        r->sampling.top_p = sp.top_p;
        r->sampling.top_k = sp.top_k;
        r->sampling.min_p = sp.min_p;
        r->controls = LogitControls::from_request(*req);
        r->logprobs = req->logprobs;
        r->num_top_logprobs = req->num_top_logprobs;
        const int T = ex->geo.tokens_per_block;
        const int kv_tokens = req->type == TRTD_REQUEST_CONTEXT_ONLY
                                  ? r->prompt_len
                                  : int(std::min<int64_t>(int64_t(r->prompt_len) + r->max_new, ex->max_ctx)) - 1;
        r->blocks_needed = ceil_div(kv_tokens, T);
        if (!gen_only && ex->cfg.enable_prefix_cache) r->prompt_hashes = ex->blocks->chain_hashes(r->tokens.data(), r->prompt_len);

        std::lock_guard<std::mutex> lk(ex->mu);
        if (ex->stop) return fail(TRTD_STATUS_SHUT_DOWN, "the executor is shutting down");
        if (r->blocks_needed > ex->cfg.kv_block_count)
            return fail(TRTD_STATUS_KV_CAPACITY, "the request needs " + std::to_string(r->blocks_needed) +
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

trtd_status trtd_executor_set_token_mask(trtd_executor * ex, trtd_request_id id, const uint32_t * bitmask, int32_t num_words) {
    if (!ex) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and bitmask must not be NULL");
    if (trtd_status s = validate_token_mask(bitmask, num_words, ex->model.cfg.vocab_size); s != TRTD_STATUS_OK) return s;
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->live.find(id);
    if (it == ex->live.end()) return fail(TRTD_STATUS_NOT_FOUND, "no live request " + std::to_string(id));
    if (trtd_status s = set_token_mask_locked(*it->second, id, bitmask, num_words); s != TRTD_STATUS_OK) return s;
    ex->dirty = true;
    ex->work_cv.notify_one();
    return TRTD_STATUS_OK;
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

trtd_status trtd_executor_await_responses(trtd_executor * ex, int32_t timeout_ms, trtd_response * responses,
                                          int32_t max_responses, trtd_token * tokens, int32_t max_tokens,
                                          int32_t * n_out) {
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

trtd_status trtd_executor_context_phase_state(trtd_executor * ex, trtd_request_id id, void * buffer,
                                              uint64_t buffer_size, uint64_t * size_out) {
    (void)buffer;
    (void)buffer_size;
    if (!ex || !size_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and size_out must not be NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    if (!ex->exports.count(id)) return fail(TRTD_STATUS_NOT_FOUND, "no finished context-only request " + std::to_string(id));
    *size_out = 0;  // the reference executor carries its state as KV segments only
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
    out->bytes_per_block = ex->geo.block_floats() * 4;
    out->num_layers = ex->geo.num_layers;
    out->num_kv_heads = ex->geo.num_kv_heads;
    out->head_dim = ex->geo.head_dim;
    out->tokens_per_block = ex->geo.tokens_per_block;
    out->dtype = TRTD_KV_FLOAT32;
    out->memory_kind = TRTD_MEMORY_HOST;
    const int32_t fields[6] = {out->num_layers, out->num_kv_heads, out->head_dim, out->tokens_per_block, out->dtype, 0};
    uint64_t h = hash_bytes(ex->model.fingerprint.data(), ex->model.fingerprint.size(), 0x6b766c61796f7574ull);
    h = hash_bytes(fields, sizeof(fields), h);
    copy_fixed(out->fingerprint, sizeof(out->fingerprint), hex64(h));
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_kv_export_info(trtd_executor * ex, trtd_request_id id, trtd_kv_export_info * out) {
    if (!ex || !out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and info_out must not be NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->exports.find(id);
    if (it == ex->exports.end()) {
        if (ex->live.count(id)) return fail(TRTD_STATUS_INVALID_STATE, "request " + std::to_string(id) +
                                                                          " is not a finished context-only request");
        return fail(TRTD_STATUS_NOT_FOUND, "no pinned KV for request " + std::to_string(id));
    }
    out->num_tokens = it->second.num_tokens;
    out->num_blocks = int32_t(it->second.blocks.size());
    out->bytes = uint64_t(out->num_blocks) * ex->geo.block_floats() * 4;
    out->memory_kind = TRTD_MEMORY_HOST;
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_kv_export_segments(trtd_executor * ex, trtd_request_id id, trtd_kv_segment * segs,
                                             int32_t max, int32_t * n_out) {
    if (!ex || !n_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and num_segments_out must not be NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->exports.find(id);
    if (it == ex->exports.end()) return fail(TRTD_STATUS_NOT_FOUND, "no pinned KV for request " + std::to_string(id));
    return segments_of(ex, it->second, segs, max, n_out);
}

trtd_status trtd_executor_kv_export_copy(trtd_executor * ex, trtd_request_id id, void * buffer, uint64_t size) {
    if (!ex || !buffer) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and buffer must not be NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->exports.find(id);
    if (it == ex->exports.end()) return fail(TRTD_STATUS_NOT_FOUND, "no pinned KV for request " + std::to_string(id));
    const uint64_t bb = ex->geo.block_floats() * 4, need = bb * it->second.blocks.size();
    if (size < need) return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "buffer has " + std::to_string(size) + " bytes, need " + std::to_string(need));
    unsigned char * dst = static_cast<unsigned char *>(buffer);
    for (size_t i = 0; i < it->second.blocks.size(); ++i) std::memcpy(dst + i * bb, ex->block_ptr(it->second.blocks[i]), bb);
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_kv_export_release(trtd_executor * ex, trtd_request_id id) {
    if (!ex) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->exports.find(id);
    if (it == ex->exports.end()) return fail(TRTD_STATUS_NOT_FOUND, "no pinned KV for request " + std::to_string(id));
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
        const int need = ceil_div(num_tokens, ex->geo.tokens_per_block);
        std::lock_guard<std::mutex> lk(ex->mu);
        if (need > ex->cfg.kv_block_count)
            return fail(TRTD_STATUS_KV_CAPACITY, "the import needs " + std::to_string(need) + " KV blocks; the pool has " +
                                                     std::to_string(ex->cfg.kv_block_count));
        Held h;
        h.num_tokens = num_tokens;
        if (!ex->blocks->allocate(need, h.blocks))
            return fail(TRTD_STATUS_KV_EXHAUSTED, "the import needs " + std::to_string(need) + " KV blocks; " +
                                                      std::to_string(ex->blocks->free_count()) + " are free now");
        const trtd_kv_import_id id = ex->next_id++;
        ex->imports[id] = std::move(h);
        *id_out = id;
        return TRTD_STATUS_OK;
    });
}

trtd_status trtd_executor_kv_import_segments(trtd_executor * ex, trtd_kv_import_id id, trtd_kv_segment * segs,
                                             int32_t max, int32_t * n_out) {
    if (!ex || !n_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and num_segments_out must not be NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->imports.find(id);
    if (it == ex->imports.end()) return fail(TRTD_STATUS_NOT_FOUND, "unknown or consumed import " + std::to_string(id));
    return segments_of(ex, it->second, segs, max, n_out);
}

trtd_status trtd_executor_kv_import_abort(trtd_executor * ex, trtd_kv_import_id id) {
    if (!ex) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor is NULL");
    std::lock_guard<std::mutex> lk(ex->mu);
    auto it = ex->imports.find(id);
    if (it == ex->imports.end()) return fail(TRTD_STATUS_NOT_FOUND, "unknown or consumed import " + std::to_string(id));
    ex->free_locked(it->second.blocks);
    ex->imports.erase(it);
    return TRTD_STATUS_OK;
}

trtd_status trtd_executor_device_uuid(const trtd_executor * ex, char * buf, int32_t size) {
    (void)ex; (void)buf; (void)size;
    return fail(TRTD_STATUS_UNSUPPORTED, "the reference executor keeps KV in host memory: no device");
}

trtd_status trtd_executor_kv_export_device(trtd_executor * ex, trtd_request_id id, void * buffer, uint64_t size,
                                           uint64_t * size_out) {
    (void)ex; (void)id; (void)buffer; (void)size;
    if (size_out) *size_out = 0;
    return fail(TRTD_STATUS_UNSUPPORTED, "the reference executor keeps KV in host memory: use the KV segments");
}

trtd_status trtd_executor_kv_import_device(trtd_executor * ex, trtd_kv_import_id id, const void * desc, uint64_t size) {
    (void)ex; (void)id; (void)desc; (void)size;
    return fail(TRTD_STATUS_UNSUPPORTED, "the reference executor keeps KV in host memory: use the KV segments");
}

trtd_status trtd_executor_compute_logits(trtd_executor * ex, const trtd_token * tokens, int32_t n, float * logits,
                                         int64_t max_logits) {
    return guarded([&]() -> trtd_status {
        if (!ex || !tokens || !logits) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor, tokens and logits must not be NULL");
        if (n < 1 || n > ex->max_ctx) return fail(TRTD_STATUS_INVALID_ARGUMENT, "num_tokens must be in [1, max context]");
        const int vocab = ex->model.cfg.vocab_size;
        for (int i = 0; i < n; ++i)
            if (trtd_status s = check_token(tokens[i], vocab, "token id"); s) return s;
        if (max_logits < int64_t(n) * vocab)
            return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "logits buffer holds " + std::to_string(max_logits) +
                                                          " floats, need " + std::to_string(int64_t(n) * vocab));
        const int T = ex->geo.tokens_per_block, nb = ceil_div(n, T);
        std::vector<float> scratch(size_t(nb) * ex->geo.block_floats());
        std::vector<float *> ptrs;
        for (int b = 0; b < nb; ++b) ptrs.push_back(scratch.data() + size_t(b) * ex->geo.block_floats());
        std::vector<ForwardRow> rows(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) rows[size_t(i)] = ForwardRow{tokens[i], i, ptrs.data(), i};
        std::lock_guard<std::mutex> clk(ex->compute_mu);
        ex->forward->run(rows, logits);
        return TRTD_STATUS_OK;
    });
}

}  // extern "C"
