// Sampler against straightforward references (run by test/sampler-reference.test.ts), over many distributions
// (Gaussian, quantized with many ties, all equal, +0/-0 mixes, -inf, one dominant), vocabularies, temperatures,
// top_k, top_p (near 0 and near 1) and draws (seed, n):
//  - top_k in (0, vocab), with or without top_p: the token equals a full-sort reference token for token (the same
//    double arithmetic in the same order, so any difference in order or rounding shows up);
//  - top-p alone (top_k 0 or >= vocab): the token lies in the reference nucleus (full sort, smallest prefix whose
//    mass reaches top_p), is the token of the walk in full-sort order up to rounding (top_p_walk_token), and on
//    small distributions the draw frequencies match p_i / nucleus mass.
//  - hoare_partition leaves the same permutation as the textbook two-pointer loop (libstdc++'s std::partition).
//  - plain sampling (temperature only, top_k 0, top_p 1): the token equals the index-order walk token for token,
//    also on rows with removed (-inf) ids scattered as a grammar's mask leaves them (the sampler computes their
//    weights without exp and finds the walk's stop by binary search).
//  - min_p (ABI 4): with top_k, the token equals the full-sort reference cut where the relative probability drops
//    below min_p; alone, the index-order walk over the kept ids token for token; with top-p alone, the token lies in
//    the nucleus and above the cut; alone, the draw frequencies match p_i / kept mass.
// Prints "ok <cases>" and exits 0, or prints the first mismatch and exits 1.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "../src/hoare_partition.hpp"
#include "../src/sampler.hpp"

using trtd::SamplingParams;

namespace {

std::vector<int> full_sort_order(const std::vector<float> & lg) {
    std::vector<int> ids(lg.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int(i);
    std::sort(ids.begin(), ids.end(), [&](int a, int b) { return lg[size_t(a)] > lg[size_t(b)] || (lg[size_t(a)] == lg[size_t(b)] && a < b); });
    return ids;
}

// Top-k (+ top-p) by a full sort: the sorted prefix of k, probabilities relative to the best, top-p cut on the
// cumulative mass in that order, then the draw u * kept mass walked in that order.
int reference_top_k(const std::vector<float> & lg, const std::vector<int> & ids, const SamplingParams & p, uint64_t n) {
    const double inv_t = 1.0 / double(p.temperature);
    const double u = trtd::counter_uniform(p.seed, n);
    size_t k = size_t(p.top_k);
    std::vector<double> pr(k);
    double total = 0;
    const double mx = lg[size_t(ids[0])];
    for (size_t i = 0; i < k; ++i) total += (pr[i] = std::exp((double(lg[size_t(ids[i])]) - mx) * inv_t));
    if (p.top_p < 1.0f) {
        const double limit = double(p.top_p) * total;
        double acc = 0;
        size_t keep = k;
        for (size_t i = 0; i < k; ++i) {
            acc += pr[i];
            if (acc >= limit) { keep = i + 1; break; }
        }
        k = keep;
        total = acc;
    }
    if (p.min_p > 0) {  // the sorted prefix whose probability relative to the best is at least min_p
        size_t keep = 1;
        double acc = pr[0];
        while (keep < k && pr[keep] >= double(p.min_p)) acc += pr[keep++];
        k = keep;
        total = acc;
    }
    double acc = 0;
    for (size_t i = 0; i < k; ++i) {
        acc += pr[i];
        if (acc > u * total) return ids[i];
    }
    return ids[k - 1];
}

// Plain sampling, and min_p alone: index order over the ids whose probability relative to the best is at least
// min_p (0: all), one exp per id and a linear walk.
int reference_index_walk(const std::vector<float> & lg, const SamplingParams & p, uint64_t n) {
    const double inv_t = 1.0 / double(p.temperature);
    const double u = trtd::counter_uniform(p.seed, n);
    const float mx = *std::max_element(lg.begin(), lg.end());
    std::vector<double> pr(lg.size());
    double total = 0;
    for (size_t i = 0; i < lg.size(); ++i) {
        const double x = std::exp((double(lg[i]) - mx) * inv_t);
        total += (pr[i] = x < double(p.min_p) ? 0 : x);
    }
    double acc = 0;
    int last = 0;
    for (size_t i = 0; i < lg.size(); ++i) {
        if (pr[i] == 0) continue;
        last = int(i);
        acc += pr[i];
        if (acc > u * total) return int(i);
    }
    return last;
}

// The top-p nucleus by a full sort, as ids with their probability. The sampler sums the total in index order and
// the nucleus mass in selection order, so where the sorted cumulative mass lands within rounding of the limit the
// boundary token may go either way: it is included here (the one ambiguity a reordered double sum can cause).
std::vector<std::pair<int, double>> reference_nucleus(const std::vector<float> & lg, const std::vector<int> & ids,
                                                     double top_p, double temperature) {
    const double mx = lg[size_t(ids[0])];
    std::vector<double> pr(ids.size());
    double total = 0;
    for (size_t i = 0; i < ids.size(); ++i) total += (pr[i] = std::exp((double(lg[size_t(ids[i])]) - mx) / temperature));
    const double limit = top_p * total, slack = 1e-12 * total;
    std::vector<std::pair<int, double>> out;
    double acc = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
        out.push_back({ids[i], pr[i]});
        acc += pr[i];
        if (acc >= limit + slack) break;
    }
    return out;
}

// Top-p alone: whether `got` is the token of the walk in full-sort order (the order top-k rows and the CUDA sampler
// walk), up to rounding. The sampler sums the total in index order and the nucleus mass in selection order, the
// reference in sorted order, so where a running mass lands within rounding of the top-p limit the nucleus may end
// one token earlier or later, and where it lands within rounding of the draw's target the token may be its
// neighbour. Accepted: got's interval [C[pos - 1], C[pos]) of the sorted running masses C holds u * C[keep - 1],
// within 1e-12 of the total, for the reference's nucleus size keep or one whose cut is itself within rounding.
bool top_p_walk_token(const std::vector<float> & lg, const std::vector<int> & ids, const SamplingParams & p, uint64_t n, int got) {
    const double inv_t = 1.0 / double(p.temperature), u = trtd::counter_uniform(p.seed, n);
    const size_t V = ids.size();
    const double mx = lg[size_t(ids[0])];
    std::vector<double> C(V);
    double acc = 0;
    for (size_t i = 0; i < V; ++i) C[i] = (acc += std::exp((double(lg[size_t(ids[i])]) - mx) * inv_t));
    const double limit = double(p.top_p) * acc, slack = 1e-12 * acc;
    size_t keep = V;
    for (size_t i = 0; i < V; ++i)
        if (C[i] >= limit) { keep = i + 1; break; }
    size_t pos = 0;
    while (pos < V && ids[pos] != got) ++pos;
    for (size_t k = keep > 1 ? keep - 1 : 1; k <= std::min(V, keep + 1); ++k) {
        if (k != keep && std::fabs(C[k - 1] - limit) > slack && std::fabs(C[keep - 1] - limit) > slack) continue;
        if (pos >= k) continue;
        const double target = u * C[k - 1], lo = pos ? C[pos - 1] : 0.0;
        if (lo - slack <= target && target < C[pos] + slack) return true;
    }
    return false;
}

// The two-pointer partition written out: the permutation hoare_partition must reproduce.
template <class T, class Pred>
size_t two_pointer_partition(std::vector<T> & v, size_t first, size_t last, Pred pred) {
    while (true) {
        while (true) {
            if (first == last) return first;
            if (!pred(v[first])) break;
            ++first;
        }
        --last;
        while (true) {
            if (first == last) return first;
            if (pred(v[last])) break;
            --last;
        }
        std::swap(v[first], v[last]);
        ++first;
    }
}

bool partition_matches(std::mt19937_64 & rng, long & cases) {
    std::vector<size_t> left, right;
    for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(3), size_t(17), size_t(64), size_t(1000), size_t(100352)})
        for (int density : {0, 1, 50, 99, 100})  // percent of elements satisfying pred
            for (int rep = 0; rep < 3; ++rep) {
                std::vector<std::pair<int, int>> a(n + 10);  // (value, original position); pred on value
                for (size_t i = 0; i < a.size(); ++i) a[i] = {int(rng() % 100) < density ? 1 : 0, int(i)};
                auto b = a;
                const size_t lo = n ? rng() % 5 : 0, hi = lo + n;
                auto pred = [](const std::pair<int, int> & x) { return x.first == 1; };
                const size_t ga = trtd::hoare_partition(a, lo, hi, pred, left, right);
                const size_t gb = two_pointer_partition(b, lo, hi, pred);
                ++cases;
                if (ga != gb || a != b) {
                    std::printf("PARTITION n %zu density %d: split %zu vs %zu, permutations %s\n", n, density, ga, gb,
                                a == b ? "equal" : "differ");
                    return false;
                }
            }
    return true;
}

struct Dist {
    const char * name;
    std::vector<float> logits;
};

std::vector<Dist> distributions(std::mt19937_64 & rng) {
    std::vector<Dist> out;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int vocab : {7, 300, 5000, 100352}) {
        const size_t nv = size_t(vocab);
        std::vector<float> g(nv), q(nv), z(nv), d(nv);
        for (int i = 0; i < vocab; ++i) {
            g[size_t(i)] = normal(rng) * 3.0f;
            q[size_t(i)] = std::round(normal(rng) * 2.0f) * 0.5f;  // a handful of values: ties everywhere
            z[size_t(i)] = (rng() & 1) ? 0.0f : -0.0f;             // all equal, mixed signs of zero
            d[size_t(i)] = normal(rng);
        }
        d[size_t(vocab / 3)] = 25.0f;  // one dominant token
        std::vector<float> m = g;  // a grammar's mask: ~5% of the ids removed at random places
        for (int i = 0; i < vocab; ++i)
            if (rng() % 20 == 0 && i != vocab / 2) m[size_t(i)] = -std::numeric_limits<float>::infinity();
        for (int i = 0; i < vocab; i += 5) q[size_t(i)] = -std::numeric_limits<float>::infinity();
        out.push_back({"gaussian", g});
        out.push_back({"quantized ties, -inf", q});
        out.push_back({"all equal, +0/-0", z});
        out.push_back({"one dominant", d});
        out.push_back({"gaussian, -inf at random ids", m});
    }
    return out;
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    trtd::Sampler sampler;
    long cases = 0;
    if (!partition_matches(rng, cases)) return 1;
    const float temperatures[] = {0.05f, 0.7f, 1.0f, 3.0f};
    const float top_ps[] = {1e-7f, 0.01f, 0.3f, 0.9f, 0.999f, 0.9999999f, 1.0f};
    for (const Dist & dist : distributions(rng)) {
        const int vocab = int(dist.logits.size());
        const std::vector<int> order = full_sort_order(dist.logits);  // the reference order; params don't change it
        const bool big = vocab > 10000;  // the reference's full sort is slow there: fewer draws
        const int ks[] = {1, 2, 5, 1024, 1025, 4000, vocab - 1, 0, vocab};
        for (int top_k : ks) {
            if (top_k < 0 || top_k > vocab) continue;
            for (float t : temperatures)
                for (float top_p : top_ps) {
                    if (big && top_p != 0.9f && top_p != 1e-7f && top_p != 0.9999999f) continue;
                    const bool top_p_only = top_k == 0 || top_k >= vocab;
                    if (top_p_only && top_p >= 1.0f && top_k == 0) continue;  // that is plain softmax sampling
                    std::vector<std::pair<int, double>> nucleus;
                    if (top_p_only) nucleus = reference_nucleus(dist.logits, order, double(top_p), double(t));
                    for (uint64_t seed : {uint64_t(1), uint64_t(0xDEADBEEFull)})
                        for (uint64_t n = 0; n < (big ? 2u : 6u); ++n) {
                            const SamplingParams p{seed, t, top_p, top_k};
                            const int got = sampler.sample(dist.logits.data(), vocab, p, n);
                            ++cases;
                            if (!top_p_only) {
                                const int want = reference_top_k(dist.logits, order, p, n);
                                if (got != want) {
                                    std::printf("MISMATCH %s vocab %d top_k %d top_p %g t %g seed %llu n %llu: got %d, reference %d\n",
                                                dist.name, vocab, top_k, double(top_p), double(t), (unsigned long long)seed,
                                                (unsigned long long)n, got, want);
                                    return 1;
                                }
                            } else if (std::none_of(nucleus.begin(), nucleus.end(), [&](const auto & e) { return e.first == got; })) {
                                std::printf("OUTSIDE NUCLEUS %s vocab %d top_k %d top_p %g t %g seed %llu n %llu: got %d, nucleus of %zu\n",
                                            dist.name, vocab, top_k, double(top_p), double(t), (unsigned long long)seed,
                                            (unsigned long long)n, got, nucleus.size());
                                return 1;
                            } else if (!top_p_walk_token(dist.logits, order, p, n, got)) {
                                SamplingParams full = p;
                                full.top_k = vocab;
                                std::printf("TOP-P WALK %s vocab %d top_k %d top_p %g t %g seed %llu n %llu: got %d, sorted walk %d\n",
                                            dist.name, vocab, top_k, double(top_p), double(t), (unsigned long long)seed,
                                            (unsigned long long)n, got, reference_top_k(dist.logits, order, full, n));
                                return 1;
                            }
                        }
                }
        }
    }
    // Plain sampling (no top-k, top-p or min_p): token for token against the index-order walk, many draws each.
    for (const Dist & dist : distributions(rng)) {
        const int vocab = int(dist.logits.size());
        for (float t : {0.05f, 0.7f, 1.0f, 3.0f})
            for (uint64_t n = 0; n < 40; ++n) {
                const SamplingParams p{0xC0FFEEull + n % 3, t, 1.0f, 0};
                const int got = sampler.sample(dist.logits.data(), vocab, p, n), want = reference_index_walk(dist.logits, p, n);
                ++cases;
                if (got != want) {
                    std::printf("PLAIN %s vocab %d t %g n %llu: got %d, reference %d\n", dist.name, vocab, double(t),
                                (unsigned long long)n, got, want);
                    return 1;
                }
            }
    }
    // min_p, with top_k (token for token), alone (token for token), with top-p alone (in the nucleus, above the cut).
    const float min_ps[] = {0.001f, 0.05f, 0.5f, 0.95f, 1.0f};
    for (const Dist & dist : distributions(rng)) {
        const int vocab = int(dist.logits.size());
        const std::vector<int> order = full_sort_order(dist.logits);
        const float mx = dist.logits[size_t(order[0])];
        for (float min_p : min_ps)
            for (float t : {0.7f, 1.0f, 3.0f})
                for (int mode = 0; mode < 3; ++mode) {  // 0: min_p alone, 1: top_k 5 + top_p 0.9, 2: top_p 0.9 alone
                    const int top_k = mode == 1 ? std::min(5, vocab - 1) : 0;
                    const float top_p = mode == 0 ? 1.0f : 0.9f;
                    std::vector<std::pair<int, double>> nucleus;
                    if (mode == 2) nucleus = reference_nucleus(dist.logits, order, double(top_p), double(t));
                    for (uint64_t n = 0; n < 4; ++n) {
                        SamplingParams p{0x5EEDull, t, top_p, top_k};
                        p.min_p = min_p;
                        const int got = sampler.sample(dist.logits.data(), vocab, p, n);
                        ++cases;
                        const double rel = std::exp((double(dist.logits[size_t(got)]) - mx) / double(t));
                        bool ok;
                        int want = -1;
                        if (mode == 0) ok = got == (want = reference_index_walk(dist.logits, p, n));
                        else if (mode == 1) ok = got == (want = reference_top_k(dist.logits, order, p, n));
                        else
                            ok = (rel >= double(min_p) || got == order[0]) &&
                                 std::any_of(nucleus.begin(), nucleus.end(), [&](const auto & e) { return e.first == got; });
                        if (!ok) {
                            std::printf("MIN_P %s vocab %d mode %d min_p %g t %g n %llu: got %d (relative p %g), reference %d\n", dist.name,
                                        vocab, mode, double(min_p), double(t), (unsigned long long)n, got, rel, want);
                            return 1;
                        }
                    }
                }
    }
    // min_p alone, draw frequencies: each kept id within 5 standard deviations of p_i / kept mass, none dropped drawn.
    {
        std::vector<float> lg(300);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (float & x : lg) x = normal(rng) * 3.0f;
        const float t = 1.5f, min_p = 0.1f;
        const float mx = *std::max_element(lg.begin(), lg.end());
        std::vector<double> q(lg.size());
        double mass = 0;
        for (size_t i = 0; i < lg.size(); ++i) {
            const double x = std::exp((double(lg[i]) - mx) / double(t));
            mass += (q[i] = x < double(min_p) ? 0 : x);
        }
        std::vector<long> count(lg.size(), 0);
        const long draws = 40000;
        SamplingParams p{9, t, 1.0f, 0};
        p.min_p = min_p;
        for (long n = 0; n < draws; ++n) ++count[size_t(sampler.sample(lg.data(), int(lg.size()), p, uint64_t(n)))];
        size_t kept = 0;
        for (size_t i = 0; i < lg.size(); ++i) {
            const double f = q[i] / mass, expect = f * double(draws), sd = std::sqrt(double(draws) * f * (1 - f));
            kept += q[i] > 0;
            if ((q[i] == 0 && count[i] != 0) || std::fabs(double(count[i]) - expect) > 5 * sd + 1) {
                std::printf("MIN_P FREQUENCY token %zu: %ld draws, expected %.1f (sd %.1f)\n", i, count[i], expect, sd);
                return 1;
            }
        }
        if (kept < 3 || kept > 60) {
            std::printf("MIN_P FREQUENCY kept %zu ids: pick another min_p\n", kept);
            return 1;
        }
        cases += draws;
    }
    // Top-p alone, draw frequencies: a 300-token Gaussian at a temperature that leaves a nucleus of a few tokens;
    // 40 000 draws, each nucleus token within 5 standard deviations of its expected count, nothing outside.
    {
        std::vector<float> lg(300);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (float & x : lg) x = normal(rng) * 3.0f;
        const double t = 1.5, top_p = 0.5;
        const auto nucleus = reference_nucleus(lg, full_sort_order(lg), top_p, t);
        double mass = 0;
        for (const auto & e : nucleus) mass += e.second;
        std::vector<long> count(lg.size(), 0);
        const long draws = 40000;
        for (long n = 0; n < draws; ++n) ++count[size_t(sampler.sample(lg.data(), int(lg.size()), {7, float(t), float(top_p), 0}, uint64_t(n)))];
        long inside = 0;
        for (const auto & e : nucleus) {
            const double q = e.second / mass, expect = q * double(draws), sd = std::sqrt(double(draws) * q * (1 - q));
            inside += count[size_t(e.first)];
            if (std::fabs(double(count[size_t(e.first)]) - expect) > 5 * sd + 1) {
                std::printf("FREQUENCY token %d: %ld draws, expected %.1f (sd %.1f), nucleus of %zu\n", e.first,
                            count[size_t(e.first)], expect, sd, nucleus.size());
                return 1;
            }
        }
        if (nucleus.size() < 3 || nucleus.size() > 40 || inside != draws) {
            std::printf("FREQUENCY nucleus of %zu, %ld of %ld draws inside\n", nucleus.size(), inside, draws);
            return 1;
        }
        cases += draws;
    }
    std::printf("ok %ld\n", cases);
    return 0;
}
