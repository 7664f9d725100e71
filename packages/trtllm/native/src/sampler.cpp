#include "sampler.hpp"

#include "hoare_partition.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace trtd {

namespace {
uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// The largest logit, as the first-to-last std::max scan finds it, but over 8 running maxima: one chain of dependent
// max operations over the whole row took ~4 cycles an id. Both give the same value (max is associative and
// commutative; a NaN at id 0 poisons both, a later one neither; only the sign of a zero maximum can differ, which
// changes no exp((logit - max) / T)).
float row_max(const float * x, int n) {
    float m[8];
    for (float & v : m) v = x[0];
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) m[j] = std::max(m[j], x[i + j]);
    float mx = m[0];
    for (int j = 1; j < 8; ++j) mx = std::max(mx, m[j]);
    for (; i < n; ++i) mx = std::max(mx, x[i]);
    return mx;
}

// Whether the row has removed (-inf) ids: a token mask or a min_new_tokens rule set them.
bool has_removed(const float * x, int n) {
    uint32_t any = 0;  // on bits, so that the loop is vectorized
    for (int i = 0; i < n; ++i) {
        uint32_t b;
        std::memcpy(&b, &x[i], sizeof b);
        any |= uint32_t(b == 0xFF800000u);
    }
    return any != 0;
}

// For a row with removed (-inf) ids, a first pass before the exp calls: arg[i] = (logit - mx) * inv_t, or -1 for a
// removed id, and factor[i] = 1, or 0 for a removed id. The weight is then exp(arg[i]) * factor[i]: for a kept id the
// same exp call on the same argument, for a removed one exactly 0, the value exp(-inf) gives. Calling exp(-inf)
// instead costs ~+20% a row when the removed ids lie scattered (a grammar's mask inside a JSON string: ~4 800 of
// 100 352 ids, in 2 450 of 3 136 mask words): glibc's exp takes a special-case branch for it that mispredicts, and
// `logit == -inf ? 0 : exp(..)` compiles into the same kind of branch. The selects here are made on bits, which
// also lets the compiler vectorize this pass.
void removed_args(const float * logits, int vocab, float mx, double inv_t, double * arg, double * factor) {
    constexpr uint64_t kMinusOne = 0xBFF0000000000000ull, kOne = 0x3FF0000000000000ull;
    constexpr uint32_t kMinusInf = 0xFF800000u;
    for (int i = 0; i < vocab; ++i) {
        uint32_t lb;
        std::memcpy(&lb, &logits[i], sizeof lb);
        const uint64_t keep = uint64_t(0) - uint64_t(lb != kMinusInf);  // all ones, or 0 for a removed id
        const double x = (double(logits[i]) - mx) * inv_t;
        uint64_t xb;
        std::memcpy(&xb, &x, sizeof xb);
        const uint64_t ab = (xb & keep) | (kMinusOne & ~keep), fb = kOne & keep;
        std::memcpy(&arg[i], &ab, sizeof ab);
        std::memcpy(&factor[i], &fb, sizeof fb);
    }
}
}  // namespace

double counter_uniform(uint64_t seed, uint64_t n) {
    const uint64_t z = mix64(mix64(seed ^ 0x6A09E667F3BCC909ull) + (n + 1) * 0x9E3779B97F4A7C15ull);
    return double(z >> 11) * (1.0 / 9007199254740992.0);
}

void Sampler::reserve(int vocab) {
    const size_t n = size_t(vocab);
    cand_.reserve(n);
    nuc_.reserve(n);
    prob_.reserve(n);
    keys_.reserve(n);
    keys_tmp_.reserve(n);
    ids_.reserve(n);
    ids_tmp_.reserve(n);
    left_.resize(n);
    right_.resize(n);
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
    // min_p keeps the ids whose probability relative to the largest, exp((l - max) / T), is at least min_p: with
    // probabilities computed relative to the max, a dropped id just has mass 0 in the walks below.
    const double min_p = double(p.min_p);
    if (!filter) {  // plain softmax sampling in index order: no sort needed
        const float mx = row_max(logits, vocab);
        cum_.resize(size_t(vocab));
        double * cum = cum_.data();
        // cum[i]: the sum of the weights of ids 0..i in index order (min_p zeroes a weight below it), which are
        // exactly the running sums of the index-order walk.
        double total = 0;
        if (has_removed(logits, vocab)) {
            prob_.resize(size_t(vocab));
            removed_args(logits, vocab, mx, inv_t, prob_.data(), cum);  // cum holds the factors until overwritten
            for (int i = 0; i < vocab; ++i) {
                double w = std::exp(prob_[size_t(i)]) * cum[i];
                if (w < min_p) w = 0;
                cum[i] = (total += w);
            }
        } else {
            for (int i = 0; i < vocab; ++i) {
                double w = std::exp((double(logits[i]) - mx) * inv_t);
                if (w < min_p) w = 0;
                cum[i] = (total += w);
            }
        }
        // The walk returns the first id whose running sum exceeds the target (a zero weight never moves the sum, so
        // the id found has mass); cum is nondecreasing, so that is a binary search. With a NaN logit the target
        // is NaN and, as in the walk, nothing exceeds it.
        const double target = u * total;
        const int at = int(std::upper_bound(cum, cum + vocab, target) - cum);
        if (at < vocab) return at;
        if (min_p <= 0) return vocab - 1;
        // Rounding left the walk: the last id with mass (rare, so recomputed rather than tracked).
        for (int i = vocab - 1; i > 0; --i) {
            const double w = std::exp((double(logits[i]) - mx) * inv_t);
            if (!(w < min_p) && w != 0) return i;
        }
        return 0;
    }
    if (p.top_k <= 0 || p.top_k >= vocab) return sample_top_p(logits, vocab, double(p.top_p), inv_t, u, min_p);
    size_t k = size_t(p.top_k);
    top_k_sorted(logits, vocab, k);
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
    if (min_p > 0) {  // a prefix of the sorted order: cut it where the relative probability drops below min_p
        size_t keep = 1;
        double acc = prob_[0];
        while (keep < k && prob_[keep] >= min_p) acc += prob_[keep++];
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

namespace {
// Radix key whose ascending order is logit descending: IEEE-754 bits made monotonic, then inverted. -0.0 is
// folded into +0.0 first, because the comparison order treats them as equal (the id decides).
inline uint32_t desc_key(float f) {
    if (f == 0.0f) f = 0.0f;
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    const uint32_t asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~asc;
}
}  // namespace

// The k best by (logit descending, id ascending), a total order: any correct sort gives the same sequence, so
// this returns exactly what std::sort / std::partial_sort with that comparison return. Small k: partial_sort,
// O(vocab log k). Large k: a stable LSD radix sort (3 passes of 11 bits) of the keys over ids fed in ascending
// order, so equal logits stay by lower id: O(vocab) instead of O(vocab log k), which made top_k in the tens of
// thousands cost ~10 ms per token on a 100k vocabulary.
void Sampler::top_k_sorted(const float * logits, int vocab, size_t k) {
    const size_t n = size_t(vocab);
    cand_.resize(n);
    if (k <= 1024) {
        for (int i = 0; i < vocab; ++i) cand_[size_t(i)] = {logits[i], i};
        auto cmp = [](const std::pair<float, int> & a, const std::pair<float, int> & b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
        };
        std::partial_sort(cand_.begin(), cand_.begin() + long(k), cand_.end(), cmp);
        return;
    }
    keys_.resize(n);
    keys_tmp_.resize(n);
    ids_.resize(n);
    ids_tmp_.resize(n);
    for (size_t i = 0; i < n; ++i) {
        keys_[i] = desc_key(logits[i]);
        ids_[i] = int(i);
    }
    constexpr int kBits = 11, kBuckets = 1 << kBits;
    size_t count[kBuckets];
    for (int shift = 0; shift < 32; shift += kBits) {
        std::fill(count, count + kBuckets, size_t(0));
        for (size_t i = 0; i < n; ++i) ++count[(keys_[i] >> shift) & (kBuckets - 1)];
        size_t sum = 0;
        for (size_t & c : count) {
            const size_t here = c;
            c = sum;
            sum += here;
        }
        for (size_t i = 0; i < n; ++i) {
            const size_t at = count[(keys_[i] >> shift) & (kBuckets - 1)]++;
            keys_tmp_[at] = keys_[i];
            ids_tmp_[at] = ids_[i];
        }
        keys_.swap(keys_tmp_);
        ids_.swap(ids_tmp_);
    }
    for (size_t i = 0; i < k; ++i) cand_[i] = {logits[ids_[i]], ids_[i]};
}

size_t Sampler::walk_to_mass(size_t lo, size_t hi, double above, double limit, bool inclusive, size_t * end) {
    auto desc = [](const Cand & a, const Cand & b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
    auto reached = [&](double mass) { return inclusive ? mass >= limit : mass > limit; };
    while (true) {  // invariant: above = mass of nuc_[0, lo), all before the target in the walk
        if (hi - lo <= 64) {
            std::sort(nuc_.begin() + long(lo), nuc_.begin() + long(hi), desc);
            for (size_t i = lo; i < hi; ++i)
                if (reached(above += nuc_[i].p)) return i;
            *end = hi;
            return kNotReached;
        }
        // Median of three (deterministic) as the pivot; 3-way partition: greater | equal | smaller.
        const float a = nuc_[lo].logit, b = nuc_[lo + (hi - lo) / 2].logit, c = nuc_[hi - 1].logit;
        const float pivot = std::max(std::min(a, b), std::min(std::max(a, b), c));
        const size_t g = hoare_partition(nuc_, lo, hi, [pivot](const Cand & x) { return x.logit > pivot; }, left_, right_);
        const size_t e = hoare_partition(nuc_, g, hi, [pivot](const Cand & x) { return x.logit == pivot; }, left_, right_);
        double mass_gt = 0;
        for (size_t i = lo; i < g; ++i) mass_gt += nuc_[i].p;
        if (reached(above + mass_gt) && g > lo) { hi = g; continue; }
        above += mass_gt;
        std::sort(nuc_.begin() + long(g), nuc_.begin() + long(e), desc);  // equal logits: lower id first
        for (size_t i = g; i < e; ++i)
            if (reached(above += nuc_[i].p)) return i;
        if (e == hi) { *end = hi; return kNotReached; }
        lo = e;
    }
}

// Top-p over the whole vocabulary without sorting it: a deterministic quickselect on logits, carrying
// probability mass, finds the nucleus (the smallest set of highest logits, ties by lower id, whose mass reaches
// top_p); a second selection over the nucleus finds the draw of the walk in (logit desc, id asc) order.
// Expected O(vocab).
int Sampler::sample_top_p(const float * logits, int vocab, double top_p, double inv_t, double u, double min_p) {
    const float mx = row_max(logits, vocab);
    nuc_.resize(size_t(vocab));
    double total = 0;
    if (has_removed(logits, vocab)) {  // a masked row: no exp(-inf) (removed_args says why)
        prob_.resize(size_t(vocab));
        cum_.resize(size_t(vocab));
        removed_args(logits, vocab, mx, inv_t, prob_.data(), cum_.data());
        for (int i = 0; i < vocab; ++i) {
            const double pr = std::exp(prob_[size_t(i)]) * cum_[size_t(i)];
            nuc_[size_t(i)] = {logits[i], i, pr};
            total += pr;
        }
    } else {
        for (int i = 0; i < vocab; ++i) {
            const double pr = std::exp((double(logits[i]) - mx) * inv_t);
            nuc_[size_t(i)] = {logits[i], i, pr};
            total += pr;
        }
    }
    size_t end = 0;
    const size_t last_in = walk_to_mass(0, size_t(vocab), 0, top_p * total, true, &end);
    const size_t keep = last_in == kNotReached ? end : last_in + 1;
    // The nucleus is nuc_[0, keep), in the order the selection left it, its last id in (logit desc, id asc) order at
    // keep - 1. The draw is the first id of the nucleus, in that order, whose running mass exceeds u * kept: the walk
    // of a top-k row and of the CUDA executor's sampler, so the token moves only to a neighbour in that order when
    // the logits move a little (a walk in selection order jumps to an unrelated token), and a row drawn here equals
    // the device's draw of it. It is found by the same selection, not by sorting the nucleus (O(nucleus)).
    const int last_id = nuc_[keep - 1].id;
    // min_p drops ids of the nucleus whose relative probability is below it (a tail of the walk order).
    if (min_p > 0)
        for (size_t i = 0; i < keep; ++i)
            if (nuc_[i].p < min_p) nuc_[i].p = 0;
    double kept = 0;
    for (size_t i = 0; i < keep; ++i) kept += nuc_[i].p;
    const double target = u * kept;
    const size_t drawn = walk_to_mass(0, keep, 0, target, false, &end);
    if (drawn != kNotReached) return nuc_[drawn].id;
    // Rounding left the walk (the running sums came out below kept): the last id of the walk, or with min_p the
    // last one with mass (rare, so searched rather than tracked).
    if (min_p <= 0) return last_id;
    auto desc = [](const Cand & a, const Cand & b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
    size_t last = 0;
    for (size_t i = 1; i < keep; ++i)
        if (nuc_[i].p > 0 && (nuc_[last].p == 0 || desc(nuc_[last], nuc_[i]))) last = i;
    return nuc_[last].id;
}

}  // namespace trtd
