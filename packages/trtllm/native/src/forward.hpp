// The batched Llama forward pass over paged KV: each row is one token of one sequence at a position.
#pragma once
#include <cstddef>
#include <vector>

#include "model.hpp"
#include "thread_pool.hpp"

namespace trtd {

// Shape of one KV block: [layer][K then V][token in block][kv head][head_dim] floats.
struct KvGeometry {
    int num_layers = 0, num_kv_heads = 0, head_dim = 0, tokens_per_block = 0;
    size_t token_stride() const { return size_t(num_kv_heads) * size_t(head_dim); }
    size_t kv_stride() const { return size_t(tokens_per_block) * token_stride(); }
    size_t layer_stride() const { return 2 * kv_stride(); }
    size_t block_floats() const { return size_t(num_layers) * layer_stride(); }
};

struct ForwardRow {
    int token = 0;
    int pos = 0;                      // position of this token; KV for [0, pos) is already in blocks
    float * const * blocks = nullptr; // the sequence's block table (base pointers)
    int logits_index = -1;            // >= 0: logits row; rows that want logits are numbered 0, 1, ... in row order
};

class Forward {
public:
    Forward(const Model & model, ThreadPool & pool, KvGeometry geometry);
    // Writes each row's K and V into its blocks, then computes the rows' outputs. Rows of one sequence must
    // appear in position order. Every row's result is independent of the other rows in the batch.
    void run(const std::vector<ForwardRow> & rows, float * logits);

private:
    void matmul(const float * x, int rows, int in, const float * w, int out, float * y);
    void attention(const std::vector<ForwardRow> & rows, int layer);

    const Model & m_;
    ThreadPool & pool_;
    KvGeometry g_;
    std::vector<float> x_, xn_, qkv_, attn_, gu_, tmp_, final_;
};

}  // namespace trtd
