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
    bool copied = false;
    for (int k = 0; k < n; ++k) {
        int b;
        if (!empty_.empty()) {
            b = empty_.back();
            empty_.pop_back();
        } else {
            b = idle_.front();
            idle_.pop_front();
            // The copy happens here, at eviction, because this is the last moment the block's KV is intact: the
            // caller writes the block next. Blocks that are never evicted never cost a copy.
            if (tier_) {
                offload(b);
                copied = true;
            }
            uncache(b);
            ++evicted_blocks;
        }
        refs_[size_t(b)] = 1;
        out.push_back(b);
    }
    if (copied) copier_->wait();  // the caller may write the evicted blocks as soon as they are returned
    return true;
}

int KvBlockPool::allocate_restoring(int n, const std::vector<uint64_t> & hashes, const int * tokens, int first,
                                    int max_blocks, std::vector<int> & out) {
    if (n > free_count()) return -1;
    std::vector<int> slots;
    if (tier_) {
        uint64_t parent = first > 0 ? hashes[size_t(first) - 1] : root_;
        for (int i = first; i < max_blocks && i < int(hashes.size()) && int(slots.size()) < n; ++i) {
            const int s = tier_->find(hashes[size_t(i)], parent, tokens + size_t(i) * size_t(tpb_));
            if (s < 0) break;
            slots.push_back(s);
            parent = hashes[size_t(i)];
        }
    }
    // Pinned, so that the evictions of this allocation (which go to the tier) cannot take the slots being restored.
    for (int s : slots) tier_->pin(s);
    const size_t start = out.size();
    allocate(n, out);
    for (size_t k = 0; k < slots.size(); ++k) copier_->from_host(slots[k], out[start + k]);
    if (!slots.empty()) copier_->wait();  // the caller reads these blocks next (they are its prefix's KV)
    for (size_t k = 0; k < slots.size(); ++k) {
        const int i = first + int(k);
        tier_->unpin(slots[k]);
        tier_->drop(slots[k]);
        // No event: the worker held this block all along (in the tier); it only moved.
        publish_impl(out[start + k], hashes[size_t(i)], i > 0 ? hashes[size_t(i) - 1] : root_,
                     tokens + size_t(i) * size_t(tpb_));
        ++host_hit_blocks;
    }
    return int(slots.size());
}

void KvBlockPool::enable_host_tier(int num_slots, KvHostCopier * copier) {
    if (!prefix_cache_) throw std::invalid_argument("KvBlockPool: the host tier needs the prefix cache");
    if (num_slots < 1 || !copier) throw std::invalid_argument("KvBlockPool: a host tier needs slots and a copier");
    tier_.reset(new KvHostTier(num_slots, tpb_));
    copier_ = copier;
}

void KvBlockPool::offload(int block) {
    const uint64_t h = hash_[size_t(block)];
    if (tier_->contains(h)) return;  // the tier already holds this block (computed afresh while it was there)
    bool evicted = false;
    uint64_t evicted_hash = 0;
    const int slot = tier_->take_slot(&evicted, &evicted_hash);
    if (evicted) {
        ++host_evicted_blocks;
        if (!index_.count(evicted_hash)) record(evicted_hash, false);
    }
    if (slot < 0) return;  // every slot is being restored: this block is dropped
    copier_->to_host(block, slot);
    tier_->store(slot, h, parent_[size_t(block)], &tokens_[size_t(block) * size_t(tpb_)]);
    ++host_stored_blocks;
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
    // A block the host tier holds is already known to the router: storing it again in the pool is no event.
    if (publish_impl(block, hash, parent, block_tokens) && !(tier_ && tier_->contains(hash))) record(hash, true);
}

bool KvBlockPool::publish_impl(int block, uint64_t hash, uint64_t parent, const int * block_tokens) {
    if (!prefix_cache_ || cached_[size_t(block)] || index_.count(hash)) return false;
    cached_[size_t(block)] = 1;
    hash_[size_t(block)] = hash;
    parent_[size_t(block)] = parent;
    std::memcpy(&tokens_[size_t(block) * size_t(tpb_)], block_tokens, size_t(tpb_) * 4);
    index_.emplace(hash, block);
    return true;
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
    if (tier_) {
        std::vector<uint64_t> host;
        tier_->append_hashes(host);
        for (uint64_t h : host)
            if (!index_.count(h)) out.push_back(h);
    }
    events.clear();
    events_lost = false;
    return out;
}

int KvBlockPool::snapshot_size() const {
    if (!tier_) return int(index_.size());
    std::vector<uint64_t> host;
    tier_->append_hashes(host);
    int n = int(index_.size());
    for (uint64_t h : host)
        if (!index_.count(h)) ++n;
    return n;
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
    const int count = pool.snapshot_size();
    *num_hashes_out = int32_t(count);
    if (max_hashes < count)
        return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "the snapshot holds " + std::to_string(count) + " hashes; the buffer " +
                                                      std::to_string(max_hashes));
    const std::vector<uint64_t> all = pool.snapshot_and_reset_events();
    std::copy(all.begin(), all.end(), hashes);
    return TRTD_STATUS_OK;
}

void KvBlockPool::uncache(int block) {
    const uint64_t h = hash_[size_t(block)];
    index_.erase(h);
    cached_[size_t(block)] = 0;
    if (!(tier_ && tier_->contains(h))) record(h, false);  // removed only when no tier holds it any more
}

KvHostTier::KvHostTier(int num_slots, int tokens_per_block) : tpb_(tokens_per_block) {
    hash_.assign(size_t(num_slots), 0);
    parent_.assign(size_t(num_slots), 0);
    tokens_.assign(size_t(num_slots) * size_t(tokens_per_block), 0);
    used_.assign(size_t(num_slots), 0);
    pinned_.assign(size_t(num_slots), 0);
    lru_pos_.resize(size_t(num_slots));
    for (int s = num_slots - 1; s >= 0; --s) empty_.push_back(s);
}

int KvHostTier::find(uint64_t hash, uint64_t parent, const int * block_tokens) const {
    auto it = index_.find(hash);
    if (it == index_.end()) return -1;
    const int s = it->second;
    if (parent_[size_t(s)] != parent ||
        std::memcmp(&tokens_[size_t(s) * size_t(tpb_)], block_tokens, size_t(tpb_) * 4) != 0)
        return -1;  // a 64-bit collision: a miss
    return s;
}

int KvHostTier::take_slot(bool * evicted, uint64_t * evicted_hash) {
    *evicted = false;
    if (!empty_.empty()) {
        const int s = empty_.back();
        empty_.pop_back();
        return s;
    }
    for (auto it = lru_.begin(); it != lru_.end(); ++it) {
        const int s = *it;
        if (pinned_[size_t(s)]) continue;
        *evicted = true;
        *evicted_hash = hash_[size_t(s)];
        lru_.erase(it);
        index_.erase(hash_[size_t(s)]);
        used_[size_t(s)] = 0;
        return s;
    }
    return -1;
}

void KvHostTier::store(int slot, uint64_t hash, uint64_t parent, const int * block_tokens) {
    hash_[size_t(slot)] = hash;
    parent_[size_t(slot)] = parent;
    std::memcpy(&tokens_[size_t(slot) * size_t(tpb_)], block_tokens, size_t(tpb_) * 4);
    used_[size_t(slot)] = 1;
    lru_pos_[size_t(slot)] = lru_.insert(lru_.end(), slot);
    index_[hash] = slot;
}

void KvHostTier::drop(int slot) {
    if (!used_[size_t(slot)]) return;
    lru_.erase(lru_pos_[size_t(slot)]);
    index_.erase(hash_[size_t(slot)]);
    used_[size_t(slot)] = 0;
    empty_.push_back(slot);
}

void KvHostTier::append_hashes(std::vector<uint64_t> & out) const {
    for (const auto & kv : index_) out.push_back(kv.first);
}

}  // namespace trtd
