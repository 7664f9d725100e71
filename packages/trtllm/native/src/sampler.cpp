#include "sampler.hpp"

#include <algorithm>
#include <cmath>

namespace trtd {

namespace {
uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
}  // namespace

double counter_uniform(uint64_t seed, uint64_t n) {
    const uint64_t z = mix64(mix64(seed ^ 0x6A09E667F3BCC909ull) + (n + 1) * 0x9E3779B97F4A7C15ull);
    return double(z >> 11) * (1.0 / 9007199254740992.0);
}

int Sampler::sample(const float * logits, int vocab, const SamplingParams & p, uint64_t n) {
    if (p.temperature <= 0) {
        int best = 0;
        for (int i = 1; i < vocab; ++i) if (logits[i] > logits[best]) best = i;
        return best;
    }
    const double inv_t = 1.0 / double(p.temperature);
    const double u = counter_uniform(p.seed, n);
    const bool filter = p.top_k > 0 || p.top_p < 1.0f;
    if (!filter) {  // plain softmax sampling in index order: no sort needed
        float mx = logits[0];
        for (int i = 1; i < vocab; ++i) mx = std::max(mx, logits[i]);
        prob_.resize(size_t(vocab));
        double total = 0;
        for (int i = 0; i < vocab; ++i) total += (prob_[size_t(i)] = std::exp((double(logits[i]) - mx) * inv_t));
        const double target = u * total;
        double acc = 0;
        for (int i = 0; i < vocab; ++i) {
            acc += prob_[size_t(i)];
            if (acc > target) return i;
        }
        return vocab - 1;
    }
    cand_.resize(size_t(vocab));
    for (int i = 0; i < vocab; ++i) cand_[size_t(i)] = {logits[i], i};
    // Descending by logit, ties by lower id: a total order, so the result is deterministic.
    auto cmp = [](const std::pair<float, int> & a, const std::pair<float, int> & b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    size_t k = size_t(vocab);
    if (p.top_k > 0 && p.top_k < vocab) {
        k = size_t(p.top_k);
        std::partial_sort(cand_.begin(), cand_.begin() + long(k), cand_.end(), cmp);
    } else {
        std::sort(cand_.begin(), cand_.end(), cmp);
    }
    prob_.resize(k);
    double total = 0;
    const double mx = cand_[0].first;
    for (size_t i = 0; i < k; ++i) total += (prob_[i] = std::exp((double(cand_[i].first) - mx) * inv_t));
    if (p.top_p < 1.0f) {
        const double limit = double(p.top_p) * total;
        double acc = 0;
        size_t keep = k;
        for (size_t i = 0; i < k; ++i) {
            acc += prob_[i];
            if (acc >= limit) { keep = i + 1; break; }
        }
        k = keep;
        total = acc;
    }
    const double target = u * total;
    double acc = 0;
    for (size_t i = 0; i < k; ++i) {
        acc += prob_[i];
        if (acc > target) return cand_[i].second;
    }
    return cand_[k - 1].second;
}

}  // namespace trtd
