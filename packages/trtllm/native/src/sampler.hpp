// Token sampling: greedy, or temperature + top-k + top-p with a counter-based random draw, so the draw
// for the n-th generated token depends only on (seed, n) and a request can resume on another executor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace trtd {

struct SamplingParams {
    uint64_t seed = 0;
    float temperature = 0;  // 0 = greedy
    float top_p = 1;
    int top_k = 0;
    float min_p = 0;  // 0 = off: drops ids whose probability (after temperature) is below min_p times the largest
};

// Uniform double in [0, 1) from (seed, n): a splitmix64-style counter-based generator.
double counter_uniform(uint64_t seed, uint64_t n);

class Sampler {
public:
    int sample(const float * logits, int vocab, const SamplingParams & p, uint64_t n);
    // Sizes the scratch for this vocabulary up front, so sample() never allocates (and never throws) after it.
    void reserve(int vocab);

private:
    int sample_top_p(const float * logits, int vocab, double top_p, double inv_t, double u, double min_p);
    // Fills cand_[0, k) with the k best (logit descending, lower id first on ties), in that order.
    void top_k_sorted(const float * logits, int vocab, std::size_t k);
    struct Cand {
        float logit;
        int id;
        double p;
    };
    // The walk of nuc_[lo, hi) in (logit desc, id asc) order, by quickselect rather than a sort: the index of the first
    // id at which the running mass, from `above`, reaches `limit` (>= when inclusive, else >), with nuc_ in walk order
    // up to it. kNotReached when rounding leaves the walk short; *end is then the end of the last range searched.
    static constexpr std::size_t kNotReached = ~std::size_t(0);
    std::size_t walk_to_mass(std::size_t lo, std::size_t hi, double above, double limit, bool inclusive, std::size_t * end);
    std::vector<std::pair<float, int>> cand_;
    std::vector<Cand> nuc_;
    std::vector<double> prob_;
    std::vector<double> cum_;  // plain sampling: running sums of the weights in index order
    std::vector<uint32_t> keys_, keys_tmp_;  // radix sort scratch, reused across tokens
    std::vector<int> ids_, ids_tmp_;
    std::vector<size_t> left_, right_;  // hoare_partition scratch
};

}  // namespace trtd
