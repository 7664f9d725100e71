#include "kv_block_pool.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "abi_common.hpp"
#include "model_config.hpp"

namespace trtd {

namespace {
constexpr uint64_t kRootSeed = 0x70726566697863ull;   // "prefixc"
constexpr uint64_t kBlockSeed = 0x6b76626c6f636bull;  // "kvblock"
}  // namespace

KvBlockPool::KvBlockPool(int num_blocks, int tokens_per_block, const std::string & model_fingerprint, bool prefix_cache)
    : tpb_(tokens_per_block), prefix_cache_(prefix_cache),
      root_(hash_bytes(model_fingerprint.data(), model_fingerprint.size(), kRootSeed)) {
    if (num_blocks < 1 || tokens_per_block < 1) throw std::invalid_argument("KvBlockPool: empty pool");
    refs_.assign(size_t(num_blocks), 0);
    hash_.assign(size_t(num_blocks), 0);
    parent_.assign(size_t(num_blocks), 0);
    cached_.assign(size_t(num_blocks), 0);
    idle_pos_.resize(size_t(num_blocks));
    if (prefix_cache_) tokens_.assign(size_t(num_blocks) * size_t(tokens_per_block), 0);
    empty_.reserve(size_t(num_blocks));
    for (int b = num_blocks - 1; b >= 0; --b) empty_.push_back(b);  // block 0 is handed out first
}

uint64_t KvBlockPool::block_hash(uint64_t parent, int index, const int * block_tokens) const {
    std::vector<unsigned char> buf(12 + size_t(tpb_) * 4);
    const uint32_t i = uint32_t(index);
    std::memcpy(buf.data(), &parent, 8);
    std::memcpy(buf.data() + 8, &i, 4);
    std::memcpy(buf.data() + 12, block_tokens, size_t(tpb_) * 4);
    return hash_bytes(buf.data(), buf.size(), kBlockSeed);
}

std::vector<uint64_t> KvBlockPool::chain_hashes(const int * tokens, int n) const {
    std::vector<uint64_t> out;
    uint64_t parent = root_;
    for (int i = 0; (i + 1) * tpb_ <= n; ++i) {
        parent = block_hash(parent, i, tokens + size_t(i) * size_t(tpb_));
        out.push_back(parent);
    }
    return out;
}

std::vector<int> KvBlockPool::match(const std::vector<uint64_t> & hashes, const int * tokens, int max_blocks) const {
    std::vector<int> out;
    if (!prefix_cache_) return out;
    uint64_t parent = root_;
    for (int i = 0; i < max_blocks && i < int(hashes.size()); ++i) {
        auto it = index_.find(hashes[size_t(i)]);
        if (it == index_.end()) break;
        const int b = it->second;
        if (parent_[size_t(b)] != parent ||
            std::memcmp(&tokens_[size_t(b) * size_t(tpb_)], tokens + size_t(i) * size_t(tpb_), size_t(tpb_) * 4) != 0)
            break;  // a 64-bit collision: treat as a miss
        out.push_back(b);
        parent = hashes[size_t(i)];
    }
    return out;
}

bool KvBlockPool::can_allocate(int n, const std::vector<int> & matched) const {
    int idle_matched = 0;
    for (int b : matched)
        if (refs_[size_t(b)] == 0) ++idle_matched;
    return n <= free_count() - idle_matched;
}

void KvBlockPool::acquire(const std::vector<int> & blocks) {
    for (int b : blocks) {
        if (refs_[size_t(b)]++ == 0) idle_.erase(idle_pos_[size_t(b)]);
    }
}

bool KvBlockPool::allocate(int n, std::vector<int> & out) {
    if (n > free_count()) return false;
    for (int k = 0; k < n; ++k) {
        int b;
        if (!empty_.empty()) {
            b = empty_.back();
            empty_.pop_back();
        } else {
            b = idle_.front();
            idle_.pop_front();
            uncache(b);
            ++evicted_blocks;
        }
        refs_[size_t(b)] = 1;
        out.push_back(b);
    }
    return true;
}

void KvBlockPool::release(std::vector<int> & blocks) {
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
        const int b = *it;
        if (refs_[size_t(b)] <= 0) throw std::logic_error("KvBlockPool: release of a free block");
        if (--refs_[size_t(b)] > 0) continue;
        if (cached_[size_t(b)]) idle_pos_[size_t(b)] = idle_.insert(idle_.end(), b);
        else empty_.push_back(b);
    }
    blocks.clear();
}

void KvBlockPool::publish(int block, uint64_t hash, uint64_t parent, const int * block_tokens) {
    if (!prefix_cache_ || cached_[size_t(block)] || index_.count(hash)) return;
    cached_[size_t(block)] = 1;
    hash_[size_t(block)] = hash;
    parent_[size_t(block)] = parent;
    std::memcpy(&tokens_[size_t(block) * size_t(tpb_)], block_tokens, size_t(tpb_) * 4);
    index_.emplace(hash, block);
    record(hash, true);
}

void KvBlockPool::record(uint64_t hash, bool stored) {
    if (events.size() >= max_events) {
        events.clear();
        events_lost = true;
    }
    events.push_back({hash, stored});
}

std::vector<uint64_t> KvBlockPool::snapshot_and_reset_events() {
    std::vector<uint64_t> out;
    out.reserve(index_.size());
    for (const auto & kv : index_) out.push_back(kv.first);
    events.clear();
    events_lost = false;
    return out;
}

trtd_status drain_kv_events(KvBlockPool & pool, trtd_kv_event * events, int32_t max_events, int32_t * num_events_out,
                            bool * lost_out) {
    if (!num_events_out || !lost_out || max_events < 0 || (max_events > 0 && !events))
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "kv_events: events (max_events > 0), num_events_out and lost_out are required");
    const size_t n = std::min(size_t(max_events), pool.events.size());
    for (size_t i = 0; i < n; ++i) {
        events[i].block_hash = pool.events[i].hash;
        events[i].type = pool.events[i].stored ? TRTD_KV_EVENT_STORED : TRTD_KV_EVENT_REMOVED;
        events[i].reserved = 0;
    }
    pool.events.erase(pool.events.begin(), pool.events.begin() + long(n));
    *num_events_out = int32_t(n);
    *lost_out = pool.events_lost;
    return TRTD_STATUS_OK;
}

trtd_status kv_cache_snapshot(KvBlockPool & pool, uint64_t * hashes, int32_t max_hashes, int32_t * num_hashes_out) {
    if (!num_hashes_out || max_hashes < 0 || (max_hashes > 0 && !hashes))
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "kv_cache_snapshot: hashes (max_hashes > 0) and num_hashes_out are required");
    *num_hashes_out = int32_t(pool.cached_count());
    if (max_hashes < pool.cached_count())
        return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "the snapshot holds " + std::to_string(pool.cached_count()) + " hashes; the buffer " +
                                                      std::to_string(max_hashes));
    const std::vector<uint64_t> all = pool.snapshot_and_reset_events();
    std::copy(all.begin(), all.end(), hashes);
    return TRTD_STATUS_OK;
}

void KvBlockPool::uncache(int block) {
    index_.erase(hash_[size_t(block)]);
    cached_[size_t(block)] = 0;
    record(hash_[size_t(block)], false);
}

}  // namespace trtd
