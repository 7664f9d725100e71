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

// log_softmax(logits)[token] and the num_top most likely ids (logit descending, lower id first) of a raw row.
// scratch is reused across calls.
void raw_logprobs(const float * logits, int vocab, int token, int num_top, trtd_token_logprobs & out,
                  std::vector<std::pair<float, int>> & scratch);

// The "not recorded" entry (num_top = -1).
trtd_token_logprobs no_logprobs();

}  // namespace trtd
