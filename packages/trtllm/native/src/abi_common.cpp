#include "abi_common.hpp"

#include "logit_controls.hpp"

#include <algorithm>
#include <chrono>
#include <thread>
#include <cerrno>
#include <cmath>
#include <sys/socket.h>
#include <unistd.h>

namespace trtd {

namespace {
thread_local std::string g_last_error;
}

trtd_status fail(trtd_status s, const std::string & msg) {
    g_last_error = msg;
    return s;
}

const char * last_error() { return g_last_error.c_str(); }

trtd_status check_token(int t, int vocab, const char * what) {
    if (t < 0 || t >= vocab)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, std::string(what) + " " + std::to_string(t) +
                                                      " is out of range (vocab size " + std::to_string(vocab) + ")");
    return TRTD_STATUS_OK;
}

void copy_fixed(char * dst, size_t cap, const std::string & s) {
    const size_t n = std::min(cap - 1, s.size());
    std::memcpy(dst, s.data(), n);
    dst[n] = 0;
}

trtd_status validate_config(const trtd_executor_config & c) {
    if (c.max_batch_size < 1 || c.max_batch_size > 4096)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "max_batch_size must be in [1, 4096]");
    if (c.max_tokens_per_iteration < 1) return fail(TRTD_STATUS_INVALID_ARGUMENT, "max_tokens_per_iteration must be >= 1");
    if (c.kv_tokens_per_block < 1 || c.kv_tokens_per_block > 4096)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "kv_tokens_per_block must be in [1, 4096]");
    if (c.kv_block_count < 0 || c.kv_memory_bytes < 0)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "kv_block_count and kv_memory_bytes must be >= 0");
    if (c.num_threads < 0 || c.num_threads > 256) return fail(TRTD_STATUS_INVALID_ARGUMENT, "num_threads must be in [0, 256]");
    if (c.max_context_length < 0 || c.max_queued_requests < 0)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "max_context_length and max_queued_requests must be >= 0");
    if (c.kv_host_cache_bytes < 0) return fail(TRTD_STATUS_INVALID_ARGUMENT, "kv_host_cache_bytes must be >= 0");
    if (c.kv_host_cache_bytes > 0 && !c.enable_prefix_cache)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "kv_host_cache_bytes > 0 needs enable_prefix_cache (the host tier keeps evicted cached blocks)");
    return TRTD_STATUS_OK;
}

trtd_status validate_request(const trtd_request * req, int vocab, int max_ctx) {
    if (req->type < TRTD_REQUEST_CONTEXT_AND_GENERATION || req->type > TRTD_REQUEST_GENERATION_ONLY)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "unknown request type " + std::to_string(req->type));
    if (req->prompt_len < 1 || !req->prompt) return fail(TRTD_STATUS_INVALID_ARGUMENT, "the prompt is empty");
    if (req->prompt_len >= max_ctx)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "the prompt has " + std::to_string(req->prompt_len) +
                                                      " tokens; the context holds " + std::to_string(max_ctx) +
                                                      " (prompt plus at least one generated token)");
    for (int i = 0; i < req->prompt_len; ++i)
        if (trtd_status s = check_token(req->prompt[i], vocab, "prompt token id"); s) return s;
    if (req->max_new_tokens < 1)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "max_new_tokens must be >= 1 (got " + std::to_string(req->max_new_tokens) + ")");
    if (req->generated_offset < 0)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "generated_offset must be >= 0 (got " + std::to_string(req->generated_offset) + ")");
    if (req->end_id != -1)
        if (trtd_status s = check_token(req->end_id, vocab, "end id"); s) return s;
    if (req->num_stop_token_ids < 0 || req->num_stop_token_ids > 1024 || (req->num_stop_token_ids && !req->stop_token_ids))
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "num_stop_token_ids must be in [0, 1024] with a stop_token_ids array");
    for (int i = 0; i < req->num_stop_token_ids; ++i)
        if (trtd_status s = check_token(req->stop_token_ids[i], vocab, "stop token id"); s) return s;
    const trtd_sampling_params & sp = req->sampling;
    if (!std::isfinite(sp.temperature) || sp.temperature < 0)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "temperature must be a finite number >= 0");
    if (!std::isfinite(sp.top_p) || sp.top_p <= 0 || sp.top_p > 1) return fail(TRTD_STATUS_INVALID_ARGUMENT, "top_p must be in (0, 1]");
    if (sp.top_k < 0) return fail(TRTD_STATUS_INVALID_ARGUMENT, "top_k must be >= 0 (0 = off)");
    if (!std::isfinite(sp.repetition_penalty) || sp.repetition_penalty <= 0)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "repetition_penalty must be a finite number > 0 (1 = off)");
    if (!std::isfinite(sp.frequency_penalty)) return fail(TRTD_STATUS_INVALID_ARGUMENT, "frequency_penalty must be finite");
    if (!std::isfinite(sp.presence_penalty)) return fail(TRTD_STATUS_INVALID_ARGUMENT, "presence_penalty must be finite");
    if (!std::isfinite(sp.min_p) || sp.min_p < 0 || sp.min_p > 1) return fail(TRTD_STATUS_INVALID_ARGUMENT, "min_p must be in [0, 1]");
    if (req->num_logit_bias < 0 || req->num_logit_bias > vocab ||
        (req->num_logit_bias && (!req->logit_bias_ids || !req->logit_bias_values)))
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "num_logit_bias must be in [0, vocab size] with logit_bias_ids and logit_bias_values arrays");
    {
        std::vector<int> seen;
        seen.reserve(size_t(req->num_logit_bias));
        for (int i = 0; i < req->num_logit_bias; ++i) {
            if (trtd_status s = check_token(req->logit_bias_ids[i], vocab, "logit bias id"); s) return s;
            if (!std::isfinite(req->logit_bias_values[i]))
                return fail(TRTD_STATUS_INVALID_ARGUMENT, "logit_bias_values[" + std::to_string(i) + "] must be finite");
            seen.push_back(req->logit_bias_ids[i]);
        }
        std::sort(seen.begin(), seen.end());
        if (std::adjacent_find(seen.begin(), seen.end()) != seen.end())
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "logit_bias_ids has id " + std::to_string(*std::adjacent_find(seen.begin(), seen.end())) + " twice");
    }
    if (req->min_new_tokens < 0)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "min_new_tokens must be >= 0 (got " + std::to_string(req->min_new_tokens) + ")");
    if (req->num_top_logprobs < 0 || req->num_top_logprobs > TRTD_MAX_TOP_LOGPROBS || (!req->logprobs && req->num_top_logprobs))
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "num_top_logprobs must be in [0, " + std::to_string(TRTD_MAX_TOP_LOGPROBS) +
                                                      "], and 0 without logprobs");
    const bool gen_only = req->type == TRTD_REQUEST_GENERATION_ONLY;
    if (gen_only && !req->context_phase)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "a generation-only request needs context phase params");
    if (!gen_only && req->context_phase)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "context phase params are only for generation-only requests");
    if (gen_only) {
        if (trtd_status s = check_token(req->context_phase->first_token, vocab, "first token"); s) return s;
        if (!req->context_phase->kv_import_id)
            return fail(TRTD_STATUS_INVALID_ARGUMENT, "this executor continues from imported KV: kv_import_id is 0");
    }
    return TRTD_STATUS_OK;
}

ResponseQueue::~ResponseQueue() {
    if (notify_w_ >= 0) close(notify_w_);
    if (notify_r_ >= 0 && !taken_) close(notify_r_);
}

bool ResponseQueue::open() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
    notify_r_ = sv[0];
    notify_w_ = sv[1];
    shutdown(sv[0], SHUT_WR);
    return true;
}

void ResponseQueue::emit_locked(trtd_request_id id, const int * toks, int n, bool final, int reason, int status,
                                const std::string & msg, const trtd_token_logprobs * logprobs) {
    const bool was_empty = pending_.empty();
    Pending & p = pending_[id];
    if (n > 0 && (logprobs || !p.logprobs.empty())) {
        p.logprobs.resize(p.tokens.size(), no_logprobs());
        if (logprobs) p.logprobs.insert(p.logprobs.end(), logprobs, logprobs + n);
        else p.logprobs.resize(p.tokens.size() + size_t(n), no_logprobs());
    }
    p.tokens.insert(p.tokens.end(), toks, toks + n);
    if (final) { p.final = true; p.reason = reason; p.status = status; p.message = msg; }
    if (was_empty && !signalled_ && notify_w_ >= 0) {
        const char b = 1;
        // Non-blocking; a full socket already holds a wake-up byte. MSG_NOSIGNAL: no SIGPIPE if the reader
        // closed its end.
        (void)!send(notify_w_, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        signalled_ = true;
    }
}

int ResponseQueue::drain_locked(trtd_response * responses, int max_responses, trtd_token * tokens, int max_tokens,
                                trtd_token_logprobs * logprobs) {
    int n = 0, used = 0;
    for (auto it = pending_.begin(); it != pending_.end() && n < max_responses;) {
        Pending & p = it->second;
        const int space = max_tokens - used, have = int(p.tokens.size());
        const int take = std::min(space, have);
        if (take == 0 && have > 0) break;
        trtd_response & out = responses[n++];
        std::memset(&out, 0, sizeof(out));
        out.request_id = it->first;
        out.token_offset = used;
        out.num_tokens = take;
        std::copy(p.tokens.begin(), p.tokens.begin() + take, tokens + used);
        if (logprobs)
            for (int i = 0; i < take; ++i)
                logprobs[used + i] = size_t(i) < p.logprobs.size() ? p.logprobs[size_t(i)] : no_logprobs();
        used += take;
        if (take < have) {  // buffer full: the rest of this request's output waits for the next drain
            p.tokens.erase(p.tokens.begin(), p.tokens.begin() + take);
            if (!p.logprobs.empty()) p.logprobs.erase(p.logprobs.begin(), p.logprobs.begin() + take);
            out.finish_reason = TRTD_FINISH_NOT_FINISHED;
            break;
        }
        out.is_final = p.final;
        out.finish_reason = p.final ? p.reason : TRTD_FINISH_NOT_FINISHED;
        out.error_status = p.status;
        copy_fixed(out.error_message, sizeof(out.error_message), p.message);
        it = pending_.erase(it);
    }
    if (pending_.empty()) signalled_ = false;
    return n;
}

trtd_status ResponseQueue::notify_fd_locked(bool take, int32_t * fd_out) {
    if (taken_) return fail(TRTD_STATUS_INVALID_STATE, "the notification fd was already taken");
    *fd_out = notify_r_;
    if (take) taken_ = true;
    return TRTD_STATUS_OK;
}

trtd_status validate_token_mask(const uint32_t * bitmask, int32_t num_words, int vocab) {
    if (!bitmask) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and bitmask must not be NULL");
    const int words = (vocab + 31) / 32;
    if (num_words != words)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "num_words is " + std::to_string(num_words) + "; a vocabulary of " +
                                                      std::to_string(vocab) + " tokens needs " + std::to_string(words));
    const uint32_t last = (vocab % 32) ? ((1u << (vocab % 32)) - 1u) : ~0u;
    bool any = (bitmask[words - 1] & last) != 0;
    for (int w = 0; w + 1 < words && !any; ++w) any = bitmask[w] != 0;
    if (!any) return fail(TRTD_STATUS_INVALID_ARGUMENT, "the token mask allows no token");
    return TRTD_STATUS_OK;
}

void stall_while_file_exists(const std::string & file, std::mutex & mu, const bool & stop) {
    while (access(file.c_str(), F_OK) == 0) {
        {
            std::lock_guard<std::mutex> lk(mu);
            if (stop) return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

}  // namespace trtd
