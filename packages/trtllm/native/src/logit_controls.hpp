// The logit controls of trtd_executor.h (ABI 4) on one logits row, and raw logprobs: shared by the reference
// executor and the CUDA executor's host path, so both apply them with the same arithmetic.
#pragma once
#include <cstdint>
#include <vector>

#include "../../include/trtd_executor.h"

namespace trtd {

// A request's controls, copied at enqueue (trtd_sampling_params' penalties, trtd_request's bias and minimum).
struct LogitControls {
    float repetition_penalty = 1, frequency_penalty = 0, presence_penalty = 0;
    std::vector<int> bias_ids;
    std::vector<float> bias_values;
    int min_new_tokens = 0;
    std::vector<int> end_ids;  // the end id and stop token ids: masked before min_new_tokens
    // Whether apply() can change anything (a request without controls skips the row copy).
    bool active() const {
        return repetition_penalty != 1 || frequency_penalty != 0 || presence_penalty != 0 || !bias_ids.empty() ||
               (min_new_tokens > 0 && !end_ids.empty());
    }
    // From the ABI structs (already validated).
    static LogitControls from_request(const trtd_request & req);
};

// Where a draw stands in its sequence: the ids so far (prompt, then generated), and which of them were generated.
struct DrawContext {
    const int * tokens;
    int num_tokens;
    int output_begin;  // tokens[output_begin, num_tokens) are generated ones (migration: the prompt's last generated_offset ids)
    int64_t n;         // index of the token being drawn in the whole sequence (generated_offset + generated)
};

class LogitControlsApplier {
public:
    // Sizes the scratch for this vocabulary, so apply() never allocates after it.
    void reserve(int vocab);
    // Applies the controls to logits in place, in the header's order.
    void apply(float * logits, int vocab, const LogitControls & c, const DrawContext & d);

private:
    std::vector<int> counts_;   // per id, zero between calls
    std::vector<int> touched_;  // ids whose count is set
};

// Constrained decoding (trtd_executor_set_token_mask): disallowed tokens (bit t % 32 of word t / 32 clear) get
// -infinity, so greedy, softmax, top-k and top-p never pick them, and a mask that allows everything changes nothing.
void apply_token_mask(float * row, int vocab, const uint32_t * mask);

// The row a draw samples from, in the header's order: the token mask (may be NULL), then the logit controls. The
// mask is the hard constraint: no control raises a -inf logit, and where the controls leave no allowed token
// (min_new_tokens against a mask allowing only end and stop ids) the masked row without the controls is used.
// `raw` is masked in place when nothing reads it afterwards (keep_raw false, no controls); otherwise a copy in
// `scratch` is. Returns raw or scratch.data(). Shared by both executors so that their draws agree row for row.
const float * prepare_draw_row(float * raw, int vocab, const uint32_t * mask, bool keep_raw, const LogitControls & c,
                               const DrawContext & d, LogitControlsApplier & applier, std::vector<float> & scratch);

// log_softmax(logits)[token] and the num_top most likely ids (logit descending, lower id first) of a raw row.
// scratch is reused across calls.
void raw_logprobs(const float * logits, int vocab, int token, int num_top, trtd_token_logprobs & out,
                  std::vector<std::pair<float, int>> & scratch);

// The "not recorded" entry (num_top = -1).
trtd_token_logprobs no_logprobs();

}  // namespace trtd
