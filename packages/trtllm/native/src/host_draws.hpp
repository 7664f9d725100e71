// Drawing tokens on the host from logits rows, spread over a thread pool: every draw of the reference executor, and
// the CUDA executor's rows that need what its device sampler lacks (token masks, logit controls, logprobs, min_p).
// One implementation, so that both executors draw alike row for row.
#pragma once
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "logit_controls.hpp"
#include "sampler.hpp"
#include "thread_pool.hpp"

namespace trtd {

// One compute thread's scratch for draws: reused across rows, never shared between threads at once.
struct DrawScratch {
    Sampler sampler;
    LogitControlsApplier controls;
    std::vector<float> row;                   // the masked or controlled copy of a row, when the raw one is kept
    std::vector<std::pair<float, int>> top;   // the top-logprobs sort
    // Sizes everything for this vocabulary, so that draws never allocate (and never throw) afterwards.
    void reserve(int vocab);
};

// One token from one raw logits row: the token mask (may be NULL), the logit controls and the draw
// (prepare_draw_row, Sampler), then the raw row's logprobs when asked. A pure function of (row, mask, controls,
// ctx, params, ctx.n): the draw's random number is counter_uniform(params.seed, ctx.n), and the scratch only
// lends memory, so which thread draws a row, and in what order, changes no token.
void draw_token(DrawScratch & s, float * raw, int vocab, const uint32_t * mask, const LogitControls & controls,
                const DrawContext & ctx, const SamplingParams & params, bool logprobs, int num_top, int & token,
                trtd_token_logprobs & lp);

// Runs draw(part, i) for every i in [0, n) over the pool: part p takes i = p, p + P, ... (P = min(pool size, n),
// and scratch[p] is part p's own). Not reentrant (the pool's rule): one caller at a time.
void parallel_draws(ThreadPool & pool, int n, const std::function<void(int part, int i)> & draw);

}  // namespace trtd
