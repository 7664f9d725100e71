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
#pragma once
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

#include "../../include/trtd_executor.h"

namespace trtd {

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
    bool allocate(int n, std::vector<int> & out);
    // Drops one reference on each block and clears the list. A block whose count reaches 0 becomes idle cached
    // if it holds a cached prefix, else empty. Released in reverse order, so a chain's tail is evicted before
    // its head (a head alone is still a hit; a tail alone is not).
    void release(std::vector<int> & blocks);
    // Offers a held block whose KV now holds the full block `hash` (from block_hash) with these tokens.
    // Cached unless the cache is off or another block already holds that hash (then this one stays private).
    void publish(int block, uint64_t hash, uint64_t parent, const int * block_tokens);

    // Counters for the executor stats.
    uint64_t hit_tokens = 0, miss_tokens = 0, evicted_blocks = 0;

    // KV events (trtd_executor_kv_events): stored and removed hashes, oldest first, at most max_events queued;
    // on overflow the queue is dropped and events_lost set until the next snapshot.
    struct Event { uint64_t hash; bool stored; };
    std::vector<Event> events;
    bool events_lost = false;
    size_t max_events = 65536;
    // Every cached block's hash; drops the queued events and clears events_lost (the snapshot supersedes them).
    std::vector<uint64_t> snapshot_and_reset_events();

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

    void uncache(int block);
    void record(uint64_t hash, bool stored);
};

// The bodies of trtd_executor_kv_events and trtd_executor_kv_cache_snapshot, the same in every executor that
// uses a KvBlockPool; the caller holds the executor's lock and has checked the executor pointer.
trtd_status drain_kv_events(KvBlockPool & pool, trtd_kv_event * events, int32_t max_events, int32_t * num_events_out,
                            bool * lost_out);
trtd_status kv_cache_snapshot(KvBlockPool & pool, uint64_t * hashes, int32_t max_hashes, int32_t * num_hashes_out);

}  // namespace trtd
