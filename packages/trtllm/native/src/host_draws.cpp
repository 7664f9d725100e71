#include "host_draws.hpp"

#include <algorithm>

namespace trtd {

void DrawScratch::reserve(int vocab) {
    sampler.reserve(vocab);
    controls.reserve(vocab);
    row.reserve(size_t(vocab));
    top.reserve(size_t(vocab));
}

void draw_token(DrawScratch & s, float * raw, int vocab, const uint32_t * mask, const LogitControls & controls,
                const DrawContext & ctx, const SamplingParams & params, bool logprobs, int num_top, int & token,
                trtd_token_logprobs & lp) {
    const float * row = prepare_draw_row(raw, vocab, mask, logprobs, controls, ctx, s.controls, s.row);
    token = s.sampler.sample(row, vocab, params, uint64_t(ctx.n));
    if (logprobs) raw_logprobs(raw, vocab, token, num_top, lp, s.top);
}

void parallel_draws(ThreadPool & pool, int n, const std::function<void(int part, int i)> & draw) {
    const int parts = std::min(pool.size(), n);
    auto body = [&](int part_begin, int part_end) {
        for (int part = part_begin; part < part_end; ++part)
            for (int i = part; i < n; i += parts) draw(part, i);
    };
    if (parts <= 1) body(0, parts);
    else pool.parallel_for(parts, body);  // n == parts: part p runs exactly [p, p + 1)
}

}  // namespace trtd
