// The KV block pool of both executors (the CPU reference and the CUDA one): which blocks are free, who holds
// each block (reference counts), and the prefix cache, so that a full block of KV computed once is reused by
// every later request whose tokens start the same way. Only block ids live here; the KV bytes stay in the
// executor's pool (host or device memory). Not thread-safe: the executor's lock guards every call.
//
// A full block is keyed by a hash chained over the model identity, the block's position and its token ids:
//   root      = hash_bytes(model fingerprint, 0x70726566697863ull)
//   hash(i)   = hash_bytes([parent u64][i u32][tokens_per_block token ids as i32], 0x6b76626c6f636bull)
// with parent = hash(i - 1), or root for block 0 (all little-endian). Equal hashes mean equal prefixes up to a
// 64-bit collision; a hit is also checked against the block's stored token ids and parent hash, so a collision
// costs a miss, never wrong KV.
//
// Block states: held (reference count > 0: by requests, pinned exports, reserved imports), idle cached
// (count 0, holding a cached prefix; reused on a hit, evicted least recently used first when a caller needs
// space) and empty. free_count() counts empty and idle cached blocks: both can be handed out.
//
// Host tier (optional, enable_host_tier): a second, larger and slower level under the prefix cache. An idle
// cached block that allocate() evicts is first copied to a host slot (all layers, K and V, as the executor stores
// them), keyed by the same hash with its tokens and parent; allocate_restoring() continues a request's prefix match
// through the tier and copies the blocks it finds back into the blocks it allocates. The tier is exclusive: a
// block restored to the pool leaves its slot. The executor supplies only the copies (KvHostCopier); slots are
// bookkept here, evicted least recently used first when the tier is full.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "../../include/trtd_executor.h"

namespace trtd {

// What an executor supplies for the host tier: copies of one block between its KV pool and a host slot (slot
// memory belongs to the executor). Copies may be asynchronous; wait() returns once every copy issued is complete.
// KvBlockPool calls wait() before it hands out a block it copied from or into, so a block is never reused while a
// copy out of it runs, nor read while a copy into it runs.
struct KvHostCopier {
    virtual ~KvHostCopier() = default;
    virtual void to_host(int block, int slot) = 0;
    virtual void from_host(int slot, int block) = 0;
    virtual void wait() = 0;
};

// The host tier's bookkeeping: which slot holds which block hash (with its tokens and parent, checked on a hit as
// for a pool block), least recently used first, and the slots pinned by a restore in progress.
class KvHostTier {
public:
    KvHostTier(int num_slots, int tokens_per_block);
    int total() const { return int(hash_.size()); }
    int held() const { return int(index_.size()); }
    bool contains(uint64_t hash) const { return index_.count(hash) != 0; }
    // The slot holding hash with these tokens and parent, or -1.
    int find(uint64_t hash, uint64_t parent, const int * block_tokens) const;
    // A slot for a new entry: an empty one, else the least recently used unpinned one (its hash goes to
    // *evicted_hash, *evicted set). -1 when every slot is pinned.
    int take_slot(bool * evicted, uint64_t * evicted_hash);
    // Fills a slot from take_slot (most recently used).
    void store(int slot, uint64_t hash, uint64_t parent, const int * block_tokens);
    void pin(int slot) { pinned_[size_t(slot)] = 1; }
    void unpin(int slot) { pinned_[size_t(slot)] = 0; }
    // Empties a slot (its block went back to the pool).
    void drop(int slot);
    void append_hashes(std::vector<uint64_t> & out) const;

private:
    int tpb_;
    std::vector<uint64_t> hash_, parent_;
    std::vector<int> tokens_;
    std::vector<char> used_, pinned_;
    std::vector<int> empty_;
    std::list<int> lru_;  // used slots, least recently used first
    std::vector<std::list<int>::iterator> lru_pos_;
    std::unordered_map<uint64_t, int> index_;
};

class KvBlockPool {
public:
    // prefix_cache false: nothing is ever cached; blocks go straight back to the empty list.
    KvBlockPool(int num_blocks, int tokens_per_block, const std::string & model_fingerprint, bool prefix_cache);

    int total() const { return int(refs_.size()); }
    int free_count() const { return int(empty_.size() + idle_.size()); }
    int held_count() const { return total() - free_count(); }
    int idle_cached_count() const { return int(idle_.size()); }
    int cached_count() const { return int(index_.size()); }
    bool prefix_cache() const { return prefix_cache_; }
    int tokens_per_block() const { return tpb_; }

    // Chain hashes of the full blocks of tokens[0, n): floor(n / tokens_per_block) values.
    std::vector<uint64_t> chain_hashes(const int * tokens, int n) const;
    uint64_t block_hash(uint64_t parent, int index, const int * block_tokens) const;
    uint64_t root() const { return root_; }

    // The cached blocks that start tokens (hashes from chain_hashes), at most max_blocks, in order. Does not
    // take them: call acquire() under the same lock before anything else allocates.
    std::vector<int> match(const std::vector<uint64_t> & hashes, const int * tokens, int max_blocks) const;
    // Whether n more blocks can be allocated once `matched` (idle ones leave the free set) has been acquired.
    bool can_allocate(int n, const std::vector<int> & matched) const;
    // One more reference on each block (idle cached ones stop being evictable).
    void acquire(const std::vector<int> & blocks);
    // Appends n blocks with one reference each: empty ones first, then evicts idle cached ones (least recently
    // used first). Returns false and changes nothing when fewer than n are free.
    // With a host tier, an evicted block's KV is copied to the tier first (see enable_host_tier).
    bool allocate(int n, std::vector<int> & out);
    // allocate(n, out), restoring from the host tier the prefix blocks that the pool no longer holds: starting at
    // block index `first` (the blocks before it are the pool's match, already acquired into out), hashes[i] found in
    // the tier with tokens[i * tokens_per_block ...] and the right parent, in order and at most up to block
    // max_blocks - 1, are copied into the first blocks allocated, published as cached and leave the tier. Returns
    // how many blocks were restored (0 without a tier), or -1 when fewer than n blocks are free (nothing changed).
    int allocate_restoring(int n, const std::vector<uint64_t> & hashes, const int * tokens, int first, int max_blocks,
                           std::vector<int> & out);
    // Drops one reference on each block and clears the list. A block whose count reaches 0 becomes idle cached
    // if it holds a cached prefix, else empty. Released in reverse order, so a chain's tail is evicted before
    // its head (a head alone is still a hit; a tail alone is not).
    void release(std::vector<int> & blocks);
    // Offers a held block whose KV now holds the full block `hash` (from block_hash) with these tokens.
    // Cached unless the cache is off or another block already holds that hash (then this one stays private).
    void publish(int block, uint64_t hash, uint64_t parent, const int * block_tokens);

    // The host tier: num_slots host slots that the copier fills and reads. Needs the prefix cache; call once,
    // before any allocation. The copier must outlive the pool's last allocate.
    void enable_host_tier(int num_slots, KvHostCopier * copier);
    bool host_tier() const { return tier_ != nullptr; }
    int host_slots_total() const { return tier_ ? tier_->total() : 0; }
    int host_slots_held() const { return tier_ ? tier_->held() : 0; }

    // Counters for the executor stats. Restored blocks count in hit_tokens too (the executor adds them).
    uint64_t hit_tokens = 0, miss_tokens = 0, evicted_blocks = 0;
    uint64_t host_stored_blocks = 0, host_hit_blocks = 0, host_evicted_blocks = 0;

    // KV events (trtd_executor_kv_events): stored and removed hashes, oldest first, at most max_events queued;
    // on overflow the queue is dropped and events_lost set until the next snapshot. The events describe what the
    // worker holds in any tier: a block moving from the pool to the host tier or back is no event; "removed" comes
    // when the last copy goes (evicted without a tier, or evicted from the tier).
    struct Event { uint64_t hash; bool stored; };
    std::vector<Event> events;
    bool events_lost = false;
    size_t max_events = 65536;
    // Every cached block's hash, in the pool or the host tier, each once; drops the queued events and clears
    // events_lost (the snapshot supersedes them).
    std::vector<uint64_t> snapshot_and_reset_events();
    // The size of that snapshot.
    int snapshot_size() const;

private:
    int tpb_;
    bool prefix_cache_;
    uint64_t root_;
    std::vector<int> refs_;
    std::vector<uint64_t> hash_, parent_;          // per block, meaningful while cached_[b]
    std::vector<char> cached_;
    std::vector<int> tokens_;                       // per block, tokens_per_block ids (only with the cache on)
    std::vector<int> empty_;
    std::list<int> idle_;                           // idle cached blocks, least recently used first
    std::vector<std::list<int>::iterator> idle_pos_;
    std::unordered_map<uint64_t, int> index_;       // hash -> block, for every cached block (held or idle)

    std::unique_ptr<KvHostTier> tier_;
    KvHostCopier * copier_ = nullptr;

    void uncache(int block);
    void offload(int block);  // copies an idle cached block being evicted to the host tier
    bool publish_impl(int block, uint64_t hash, uint64_t parent, const int * block_tokens);
    void record(uint64_t hash, bool stored);
};

// The bodies of trtd_executor_kv_events and trtd_executor_kv_cache_snapshot, the same in every executor that
// uses a KvBlockPool; the caller holds the executor's lock and has checked the executor pointer.
trtd_status drain_kv_events(KvBlockPool & pool, trtd_kv_event * events, int32_t max_events, int32_t * num_events_out,
                            bool * lost_out);
trtd_status kv_cache_snapshot(KvBlockPool & pool, uint64_t * hashes, int32_t max_hashes, int32_t * num_hashes_out);

}  // namespace trtd
