// What every implementation of trtd_executor.h does the same way: the per-thread last error, exception
// guards, request validation, and the response queue with its notification fd.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../include/trtd_executor.h"

namespace trtd {

// Sets the calling thread's last error (one per library) and returns s.
trtd_status fail(trtd_status s, const std::string & msg);
const char * last_error();

template <typename F> trtd_status guarded(F && f) {
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return fail(TRTD_STATUS_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception & e) {
        return fail(TRTD_STATUS_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
        return fail(TRTD_STATUS_INTERNAL, "internal error");
    }
}

trtd_status check_token(int t, int vocab, const char * what);
void copy_fixed(char * dst, size_t cap, const std::string & s);

// The checks of trtd_executor_enqueue that do not depend on the implementation (fields, ranges, ids).
trtd_status validate_request(const trtd_request * req, int vocab, int max_ctx);

// The config fields both executors check the same way (the device rule is each one's own).
trtd_status validate_config(const trtd_executor_config & c);

// trtd_executor_set_token_mask's checks of the mask itself (size for the vocabulary, at least one token allowed),
// made before the request is looked up.
trtd_status validate_token_mask(const uint32_t * bitmask, int32_t num_words, int vocab);

// Hands a validated mask to a constrained request (its engine thread draws with it); the caller holds the lock.
template <class Request>
trtd_status set_token_mask_locked(Request & r, trtd_request_id id, const uint32_t * bitmask, int32_t num_words) {
    if (!r.constrained) return fail(TRTD_STATUS_INVALID_STATE, "request " + std::to_string(id) + " is not constrained");
    if (r.mask_ready)
        return fail(TRTD_STATUS_INVALID_STATE, "request " + std::to_string(id) + " already has a token mask waiting");
    r.mask.assign(bitmask, bitmask + num_words);
    r.mask_ready = true;
    return TRTD_STATUS_OK;
}

// The engine thread's bookkeeping both executors share. Request is each executor's own type; the fields used here
// (cancel, awaiting_mask, mask_ready, mask) mean the same in both. The caller holds the executor's lock.

// Removes the finished requests from `running`, keeping the others' order (admission order).
template <class Request>
void erase_done_locked(std::vector<std::unique_ptr<Request>> & running, const std::vector<Request *> & done) {
    if (done.empty()) return;
    running.erase(std::remove_if(running.begin(), running.end(),
                                 [&](const std::unique_ptr<Request> & r) {
                                     return std::find(done.begin(), done.end(), r.get()) != done.end();
                                 }),
                  running.end());
}

// A constrained request that holds its logits and whose mask has now arrived, with that mask moved out of it.
template <class Request> struct ReadyMask {
    Request * req;
    std::vector<uint32_t> mask;
};

// The held requests that can be drawn now (constrained decoding: their logits wait for their mask).
template <class Request>
std::vector<ReadyMask<Request>> take_ready_masks_locked(std::vector<std::unique_ptr<Request>> & running) {
    std::vector<ReadyMask<Request>> ready;
    for (auto & r : running)
        if (r->awaiting_mask && r->mask_ready && !r->cancel) {
            ready.push_back({r.get(), std::move(r->mask)});
            r->mask_ready = false;
        }
    return ready;
}

// Test hook TRTD_TEST_STALL_EXECUTOR_FILE, off by default (both executors): while `file` exists the engine loop
// sleeps between counting an iteration and running it, holding no lock (it takes `mu` only to read `stop`). The
// executor stops progressing with work in hand while the process and every ABI call stay responsive: a wedged
// engine as a worker's progress watchdog sees it (tests/reliability/test/wedged-workers.test.ts), or a step whose
// forward pass lasts as long as a test needs (packages/trtllm/test/constrained.test.ts). Never set it in production.
void stall_while_file_exists(const std::string & file, std::mutex & mu, const bool & stop);

// A step's constrained sampling rows, at assembly: a row whose mask is there takes it (moved out of its request);
// the others are deferred (their mask for this token cannot exist yet: the caller computes it from the token
// delivered at the end of the previous step). Item is each executor's own step item with req, sample, defer, mask.
template <class Item> void assign_step_masks_locked(std::vector<Item> & items) {
    for (Item & it : items) {
        if (!it.sample || !it.req->constrained) continue;
        if (it.req->mask_ready) {
            it.mask = std::move(it.req->mask);
            it.req->mask_ready = false;
        } else {
            it.defer = true;
        }
    }
}

// Right after the step's forward pass: the deferred rows whose mask arrived while it ran take it and are drawn in
// this step, from its logits, with the others. Returns how many; the rows still deferred are held for their mask.
template <class Item> int take_masks_arrived_locked(std::vector<Item> & items) {
    int taken = 0;
    for (Item & it : items)
        if (it.defer && it.req->mask_ready && !it.req->cancel) {
            it.mask = std::move(it.req->mask);
            it.req->mask_ready = false;
            it.defer = false;
            ++taken;
        }
    return taken;
}

// Responses accumulated per request until drained; writes a wake-up byte to the notify socket when the queue
// goes from empty to non-empty. The owner's mutex guards every call (the *_locked names).
class ResponseQueue {
public:
    ~ResponseQueue();
    // Creates the socket pair; returns false with errno set on failure.
    bool open();
    // logprobs: n entries for toks, or NULL when not recorded.
    void emit_locked(trtd_request_id id, const int * toks, int n, bool final, int reason, int status = 0,
                     const std::string & msg = "", const trtd_token_logprobs * logprobs = nullptr);
    bool empty_locked() const { return pending_.empty(); }
    // trtd_executor_await_responses' copy-out (after its wait).
    // logprobs: NULL, or max_tokens entries written parallel to tokens.
    int drain_locked(trtd_response * responses, int max_responses, trtd_token * tokens, int max_tokens,
                     trtd_token_logprobs * logprobs = nullptr);
    trtd_status notify_fd_locked(bool take, int32_t * fd_out);

private:
    struct Pending {
        std::vector<int> tokens;
        // Parallel to tokens once any token of the request carried logprobs (earlier ones: "not recorded").
        std::vector<trtd_token_logprobs> logprobs;
        bool final = false;
        int reason = TRTD_FINISH_NOT_FINISHED, status = TRTD_STATUS_OK;
        std::string message;
    };
    std::map<trtd_request_id, Pending> pending_;
    bool signalled_ = false, taken_ = false;
    int notify_r_ = -1, notify_w_ = -1;
};

}  // namespace trtd
