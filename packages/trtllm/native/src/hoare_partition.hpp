// Partition with a fixed, specified permutation, so sampled tokens never depend on the standard library.
#pragma once
#include <cstddef>
#include <utility>
#include <vector>

namespace trtd {

// Moves the elements of v[lo, hi) satisfying pred to the front and returns the end of that part, leaving exactly
// the permutation of the classic two-pointer (Hoare) scheme: a left cursor stops at each element failing pred, a
// right cursor at each element satisfying it, and the two are swapped until the cursors meet. That is the scheme
// of libstdc++'s std::partition, so top-p draws stay what they were with it; std::partition itself leaves the
// order unspecified (libc++ or another version could differ), which would change which token a seed draws.
//
// Equivalent form used here, branch-free on the hot loops: with g = lo + count(pred), the m-th failing element
// of [lo, g) from the left swaps with the m-th satisfying element of [g, hi) from the right. Index lists go into
// caller-owned scratch (no allocation once it has grown to the vocabulary).
template <class T, class Pred>
std::size_t hoare_partition(std::vector<T> & v, std::size_t lo, std::size_t hi, Pred pred,
                            std::vector<std::size_t> & left, std::vector<std::size_t> & right) {
    std::size_t g = lo;
    for (std::size_t i = lo; i < hi; ++i) g += pred(v[i]) ? 1 : 0;
    if (left.size() < hi - lo) left.resize(hi - lo);
    if (right.size() < hi - lo) right.resize(hi - lo);
    std::size_t nl = 0, nr = 0;
    for (std::size_t i = lo; i < g; ++i) {
        left[nl] = i;
        nl += pred(v[i]) ? 0 : 1;
    }
    for (std::size_t j = hi; j > g; --j) {
        right[nr] = j - 1;
        nr += pred(v[j - 1]) ? 1 : 0;
    }
    for (std::size_t m = 0; m < nl; ++m) std::swap(v[left[m]], v[right[m]]);  // nl == nr
    return g;
}

}  // namespace trtd
