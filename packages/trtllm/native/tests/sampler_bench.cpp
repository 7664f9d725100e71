// The draw alone (nx run trtllm:bench-sampler): Sampler::sample at temperature 1 (no top-k/top-p: the plain path
// that temperature-only requests and the grammar bench use) on rows of 100 352 Gaussian logits, unmasked and with a
// grammar-like mask (4 839 ids removed at random places, as cl100k's mask inside a JSON string removes the tokens
// holding a quote, a backslash or a control byte), against the baseline measured in the same run: the index-order
// walk the sampler did before (one exp per id, -inf included, then a linear walk), kept here as it was. The cases
// take turns draw by draw; medians of 500 draws each. Every draw's token is checked against the baseline's.
// Last line: one JSON object.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "../src/sampler.hpp"

namespace {

// The previous plain draw (commit 014f664), min_p 0: a std::exp per id into a buffer, then the index-order walk.
int baseline_draw(const float * logits, int vocab, double inv_t, double u, std::vector<double> & prob) {
    float mx = logits[0];
    for (int i = 1; i < vocab; ++i) mx = std::max(mx, logits[i]);
    prob.resize(size_t(vocab));
    double total = 0;
    for (int i = 0; i < vocab; ++i) total += (prob[size_t(i)] = std::exp((double(logits[i]) - mx) * inv_t));
    const double target = u * total;
    double acc = 0;
    for (int i = 0; i < vocab; ++i) {
        if (prob[size_t(i)] == 0) continue;
        acc += prob[size_t(i)];
        if (acc > target) return i;
    }
    return vocab - 1;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main() {
    const int vocab = 100352, rows = 16, removed = 4839, draws = 500;
    std::mt19937_64 rng(20261207);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<std::vector<float>> plain(rows), masked(rows);
    for (int r = 0; r < rows; ++r) {
        plain[size_t(r)].resize(size_t(vocab));
        for (float & x : plain[size_t(r)]) x = normal(rng);
        masked[size_t(r)] = plain[size_t(r)];
        for (int k = 0; k < removed;) {
            float & x = masked[size_t(r)][size_t(rng() % uint64_t(vocab))];
            if (x != -INFINITY) { x = -INFINITY; ++k; }
        }
    }
    trtd::Sampler sampler;
    sampler.reserve(vocab);
    std::vector<double> prob;
    const trtd::SamplingParams p{7, 1.0f, 1.0f, 0};
    std::vector<double> t[4];  // baseline unmasked, sampler unmasked, baseline masked, sampler masked
    long mismatches = 0;
    for (int n = 0; n < draws + 20; ++n)
        for (int c = 0; c < 4; ++c) {
            const float * row = (c < 2 ? plain : masked)[size_t(n % rows)].data();
            const auto t0 = std::chrono::steady_clock::now();
            const int tok = (c % 2) ? sampler.sample(row, vocab, p, uint64_t(n))
                                    : baseline_draw(row, vocab, 1.0, trtd::counter_uniform(p.seed, uint64_t(n)), prob);
            const auto t1 = std::chrono::steady_clock::now();
            if (n >= 20) t[c].push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
            if (c % 2) mismatches += tok != baseline_draw(row, vocab, 1.0, trtd::counter_uniform(p.seed, uint64_t(n)), prob);
        }
    const double bu = median(t[0]), su = median(t[1]), bm = median(t[2]), sm = median(t[3]);
    std::printf("draw of one 100 352-id row, temperature 1, median of %d (us):\n", draws);
    std::printf("  baseline (one exp per id, linear walk): unmasked %.1f, masked %.1f (masked/unmasked x%.3f)\n", bu, bm, bm / bu);
    std::printf("  sampler:                                unmasked %.1f, masked %.1f (masked/unmasked x%.3f)\n", su, sm, sm / su);
    std::printf("  sampler/baseline: unmasked x%.3f, masked x%.3f; token mismatches %ld\n", su / bu, sm / bm, mismatches);
    std::printf("{\"vocab\":%d,\"removed\":%d,\"draws\":%d,\"baselineUnmaskedUs\":%.1f,\"baselineMaskedUs\":%.1f,"
                "\"samplerUnmaskedUs\":%.1f,\"samplerMaskedUs\":%.1f,\"baselineMaskedOverUnmasked\":%.3f,"
                "\"samplerMaskedOverUnmasked\":%.3f,\"samplerOverBaselineUnmasked\":%.3f,\"samplerOverBaselineMasked\":%.3f,"
                "\"mismatches\":%ld}\n",
                vocab, removed, draws, bu, bm, su, sm, bm / bu, sm / su, su / bu, sm / bm, mismatches);
    return mismatches == 0 ? 0 : 1;
}
