#include "logit_controls.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace trtd {

LogitControls LogitControls::from_request(const trtd_request & req) {
    LogitControls c;
    c.repetition_penalty = req.sampling.repetition_penalty;
    c.frequency_penalty = req.sampling.frequency_penalty;
    c.presence_penalty = req.sampling.presence_penalty;
    if (req.num_logit_bias > 0) {
        c.bias_ids.assign(req.logit_bias_ids, req.logit_bias_ids + req.num_logit_bias);
        c.bias_values.assign(req.logit_bias_values, req.logit_bias_values + req.num_logit_bias);
    }
    c.min_new_tokens = req.min_new_tokens;
    if (req.end_id >= 0) c.end_ids.push_back(req.end_id);
    for (int i = 0; i < req.num_stop_token_ids; ++i) c.end_ids.push_back(req.stop_token_ids[i]);
    return c;
}

void LogitControlsApplier::reserve(int vocab) {
    counts_.assign(size_t(vocab), 0);
    touched_.reserve(size_t(vocab));
}

void LogitControlsApplier::apply(float * logits, int vocab, const LogitControls & c, const DrawContext & d) {
    if (counts_.size() != size_t(vocab)) reserve(vocab);
    for (size_t i = 0; i < c.bias_ids.size(); ++i) logits[c.bias_ids[i]] += c.bias_values[i];
    if (d.n < c.min_new_tokens)
        for (int id : c.end_ids) logits[id] = -std::numeric_limits<float>::infinity();
    if (c.repetition_penalty != 1) {
        // Each distinct id once (transformers gathers, then scatters: a repeated id is penalized once).
        const float r = c.repetition_penalty;
        for (int i = 0; i < d.num_tokens; ++i) {
            const int id = d.tokens[i];
            if (counts_[size_t(id)]) continue;
            counts_[size_t(id)] = 1;
            touched_.push_back(id);
            float & l = logits[id];
            l = l > 0 ? l / r : l * r;
        }
        for (int id : touched_) counts_[size_t(id)] = 0;
        touched_.clear();
    }
    if (c.frequency_penalty != 0 || c.presence_penalty != 0) {
        for (int i = std::max(d.output_begin, 0); i < d.num_tokens; ++i) {
            const int id = d.tokens[i];
            if (counts_[size_t(id)]++ == 0) touched_.push_back(id);
        }
        for (int id : touched_) {
            logits[id] -= float(counts_[size_t(id)]) * c.frequency_penalty + c.presence_penalty;
            counts_[size_t(id)] = 0;
        }
        touched_.clear();
    }
}

void apply_token_mask(float * row, int vocab, const uint32_t * mask) {
    // Word by word, visiting only the removed ids of a word: inside a JSON string most words hold a few removed ids
    // among allowed ones (a quote or backslash inside the token), so testing all 32 bits of each would dominate.
    for (int w = 0, base = 0; base < vocab; ++w, base += 32) {
        const int n = std::min(32, vocab - base);
        uint32_t removed = ~mask[w];
        if (n < 32) removed &= (1u << n) - 1u;
        if (removed == ~0u) { std::fill(row + base, row + base + 32, -INFINITY); continue; }
        for (; removed != 0; removed &= removed - 1u) row[base + __builtin_ctz(removed)] = -INFINITY;
    }
}

const float * prepare_draw_row(float * raw, int vocab, const uint32_t * mask, bool keep_raw, const LogitControls & c,
                               const DrawContext & d, LogitControlsApplier & applier, std::vector<float> & scratch) {
    if (!c.active() && !(mask && keep_raw)) {
        if (mask) apply_token_mask(raw, vocab, mask);
        return raw;
    }
    scratch.assign(raw, raw + vocab);
    if (mask) apply_token_mask(scratch.data(), vocab, mask);
    if (c.active()) {
        applier.apply(scratch.data(), vocab, c, d);
        if (mask && std::none_of(scratch.begin(), scratch.end(), [](float v) { return v > -INFINITY; })) {
            scratch.assign(raw, raw + vocab);
            apply_token_mask(scratch.data(), vocab, mask);
        }
    }
    return scratch.data();
}

trtd_token_logprobs no_logprobs() {
    trtd_token_logprobs e{};
    e.num_top = -1;
    return e;
}

void raw_logprobs(const float * logits, int vocab, int token, int num_top, trtd_token_logprobs & out,
                  std::vector<std::pair<float, int>> & scratch) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
    double sum = 0;
    for (int i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - double(mx));
    const double lse = double(mx) + std::log(sum);
    out = trtd_token_logprobs{};
    out.logprob = float(double(logits[token]) - lse);
    const int k = std::min(std::max(num_top, 0), std::min(vocab, int(TRTD_MAX_TOP_LOGPROBS)));
    out.num_top = k;
    if (k == 0) return;
    scratch.resize(size_t(vocab));
    for (int i = 0; i < vocab; ++i) scratch[size_t(i)] = {logits[i], i};
    std::partial_sort(scratch.begin(), scratch.begin() + k, scratch.end(), [](const auto & a, const auto & b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    for (int i = 0; i < k; ++i) {
        out.top_ids[i] = scratch[size_t(i)].second;
        out.top_logprobs[i] = float(double(scratch[size_t(i)].first) - lse);
    }
}

}  // namespace trtd
