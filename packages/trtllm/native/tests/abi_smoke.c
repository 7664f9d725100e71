/* A plain C99 client of trtd_executor.h: aggregated vs disaggregated (context-only on A, KV segments copied to
 * an import on B, generation-only on B), a seeded resume with generated_offset on B, logit bias, min_new_tokens and
 * logprobs through trtd_executor_await_responses_ext (ABI 4), bad requests, and leak checks. Prints "ok" and exits 0 on success.
 * Usage: trtd_abi_smoke MODEL_DIR [THREADS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../include/trtd_executor.h"

#define CHECK(cond, what)                                                                   \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "FAILED: %s (%s) last error: %s\n", what, #cond, trtd_last_error()); \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

/* Runs one request to completion; returns the number of tokens written to out. */
static int run(trtd_executor * ex, const trtd_request * req, trtd_token * out, int cap, trtd_request_id * id_out) {
    trtd_request_id id = 0;
    CHECK(trtd_executor_enqueue(ex, req, &id) == TRTD_STATUS_OK, "enqueue");
    if (id_out) *id_out = id;
    int n = 0;
    for (int tries = 0; tries < 1000; ++tries) {
        trtd_response resp[8];
        trtd_token toks[256];
        int32_t got = 0;
        CHECK(trtd_executor_await_responses(ex, 100, resp, 8, toks, 256, &got) == TRTD_STATUS_OK, "await");
        for (int i = 0; i < got; ++i) {
            CHECK(resp[i].request_id == id, "response for our request");
            for (int k = 0; k < resp[i].num_tokens && n < cap; ++k) out[n++] = toks[resp[i].token_offset + k];
            if (resp[i].is_final) {
                CHECK(resp[i].finish_reason != TRTD_FINISH_ERROR, resp[i].error_message);
                return n;
            }
        }
    }
    CHECK(0, "request finished within 100 s");
    return n;
}

int main(int argc, char ** argv) {
    CHECK(argc == 2 || argc == 3, "usage: trtd_abi_smoke MODEL_DIR [THREADS]");
    CHECK(trtd_abi_version() == TRTD_ABI_VERSION, "ABI version");
    trtd_executor_config cfg = trtd_executor_default_config();
    cfg.num_threads = argc == 3 ? atoi(argv[2]) : 1;
    cfg.kv_tokens_per_block = 8;
    trtd_executor *a = NULL, *b = NULL;
    CHECK(trtd_executor_create("/nonexistent/model", &cfg, &a) == TRTD_STATUS_MODEL_LOAD && a == NULL, "missing model");
    CHECK(strstr(trtd_last_error(), "not found") != NULL, "message names the problem");
    CHECK(trtd_executor_create(argv[1], &cfg, &a) == TRTD_STATUS_OK, "create A");
    CHECK(trtd_executor_create(argv[1], &cfg, &b) == TRTD_STATUS_OK, "create B");

    const trtd_token prompt[] = {100264, 882, 198, 9906, 1917, 0, 42, 7, 99, 1000, 2000};
    trtd_request req;
    memset(&req, 0, sizeof req);
    req.prompt = prompt;
    req.prompt_len = (int32_t)(sizeof prompt / sizeof prompt[0]);
    req.max_new_tokens = 12;
    req.end_id = -1;
    req.sampling = trtd_sampling_default_params();
    req.sampling.temperature = 0.7f;
    req.sampling.top_k = 20;
    req.sampling.seed = 42;
    req.type = TRTD_REQUEST_CONTEXT_AND_GENERATION;
    req.generated_offset = 0;
    trtd_token agg[64], first[4], dis[64];
    const int n_agg = run(a, &req, agg, 64, NULL);
    CHECK(n_agg == 12, "aggregated length");

    req.type = TRTD_REQUEST_CONTEXT_ONLY;
    trtd_request_id ctx_id = 0;
    CHECK(run(a, &req, first, 4, &ctx_id) == 1 && first[0] == agg[0], "context-only gives the first token");
    trtd_kv_export_info info;
    CHECK(trtd_executor_kv_export_info(a, ctx_id, &info) == TRTD_STATUS_OK && info.num_tokens == req.prompt_len, "export info");
    int32_t nseg = 0;
    CHECK(trtd_executor_kv_export_segments(a, ctx_id, NULL, 0, &nseg) == TRTD_STATUS_BUFFER_TOO_SMALL && nseg == info.num_blocks, "size first");
    trtd_kv_segment * src = calloc((size_t)nseg, sizeof *src);
    trtd_kv_segment * dst = calloc((size_t)nseg, sizeof *dst);
    CHECK(trtd_executor_kv_export_segments(a, ctx_id, src, nseg, &nseg) == TRTD_STATUS_OK, "export segments");
    trtd_kv_import_id imp = 0;
    CHECK(trtd_executor_kv_import_reserve(b, info.num_tokens, &imp) == TRTD_STATUS_OK, "import reserve");
    CHECK(trtd_executor_kv_import_segments(b, imp, dst, nseg, &nseg) == TRTD_STATUS_OK, "import segments");
    for (int i = 0; i < nseg; ++i) {
        CHECK(src[i].memory_kind == TRTD_MEMORY_HOST && src[i].size == dst[i].size, "segment shapes");
        memcpy(dst[i].data, src[i].data, (size_t)src[i].size);
    }
    CHECK(trtd_executor_kv_export_release(a, ctx_id) == TRTD_STATUS_OK, "release export");

    trtd_context_phase_params cp;
    memset(&cp, 0, sizeof cp);
    cp.first_token = first[0];
    cp.kv_import_id = imp;
    req.type = TRTD_REQUEST_GENERATION_ONLY;
    req.context_phase = &cp;
    const int n_dis = run(b, &req, dis, 64, NULL);
    CHECK(n_dis == n_agg && memcmp(dis, agg, sizeof(trtd_token) * (size_t)n_agg) == 0, "disaggregated == aggregated");

    /* Resume after 5 tokens elsewhere: prompt + those tokens, draws from n = 5, the 7 remaining tokens. */
    trtd_token resumed_prompt[32], tail[64];
    const int k = 5;
    memcpy(resumed_prompt, prompt, sizeof prompt);
    memcpy(resumed_prompt + req.prompt_len, agg, sizeof(trtd_token) * (size_t)k);
    trtd_request resume = req;
    resume.context_phase = NULL;
    resume.type = TRTD_REQUEST_CONTEXT_AND_GENERATION;
    resume.prompt = resumed_prompt;
    resume.prompt_len = req.prompt_len + k;
    resume.max_new_tokens = n_agg - k;
    resume.generated_offset = k;
    const int n_tail = run(b, &resume, tail, 64, NULL);
    CHECK(n_tail == n_agg - k && memcmp(tail, agg + k, sizeof(trtd_token) * (size_t)n_tail) == 0, "resumed == tail");
    trtd_request_id bad = 0;
    resume.generated_offset = -1;
    CHECK(trtd_executor_enqueue(b, &resume, &bad) == TRTD_STATUS_INVALID_ARGUMENT && bad == 0, "negative offset refused");

    /* ABI 4: a logit bias forces a token that is also a stop token; min_new_tokens holds it back for 3 tokens; the
     * logprobs (raw distribution, bias not included) come parallel to the tokens. */
    {
        const trtd_token forced = agg[2];
        const float bias = 100.0f;
        trtd_request lp = req;
        lp.context_phase = NULL;
        lp.type = TRTD_REQUEST_CONTEXT_AND_GENERATION;
        lp.sampling = trtd_sampling_default_params();
        lp.max_new_tokens = 8;
        lp.logit_bias_ids = &forced;
        lp.logit_bias_values = &bias;
        lp.num_logit_bias = 1;
        lp.stop_token_ids = &forced;
        lp.num_stop_token_ids = 1;
        lp.min_new_tokens = 3;
        lp.logprobs = true;
        lp.num_top_logprobs = 2;
        trtd_request_id id = 0;
        CHECK(trtd_executor_enqueue(a, &lp, &id) == TRTD_STATUS_OK, "enqueue with logit controls");
        trtd_token toks[64], out[64];
        trtd_token_logprobs lps[64], got_lp[64];
        int n = 0, final = 0;
        for (int tries = 0; tries < 1000 && !final; ++tries) {
            trtd_response resp[4];
            int32_t got = 0;
            CHECK(trtd_executor_await_responses_ext(a, 100, resp, 4, toks, 64, lps, &got) == TRTD_STATUS_OK, "await ext");
            for (int i = 0; i < got; ++i) {
                for (int j = 0; j < resp[i].num_tokens && n < 64; ++j, ++n) {
                    out[n] = toks[resp[i].token_offset + j];
                    got_lp[n] = lps[resp[i].token_offset + j];
                }
                if (resp[i].is_final) {
                    CHECK(resp[i].finish_reason == TRTD_FINISH_STOP_TOKEN, "the forced stop token ends it");
                    final = 1;
                }
            }
        }
        CHECK(final && n == 4 && out[3] == forced, "three tokens held back, then the forced one");
        for (int i = 0; i < 3; ++i) CHECK(out[i] != forced, "min_new_tokens masks the stop token");
        for (int i = 0; i < n; ++i) {
            CHECK(got_lp[i].num_top == 2 && got_lp[i].top_logprobs[0] >= got_lp[i].top_logprobs[1], "two alternatives, best first");
            CHECK(got_lp[i].logprob <= got_lp[i].top_logprobs[0] && got_lp[i].logprob < 0.0f, "a logprob of the raw distribution");
        }
        CHECK(got_lp[3].logprob < -1.0f, "the bias is not in the logprob");
        lp.num_top_logprobs = TRTD_MAX_TOP_LOGPROBS + 1;
        CHECK(trtd_executor_enqueue(a, &lp, &bad) == TRTD_STATUS_INVALID_ARGUMENT && bad == 0, "too many alternatives refused");
    }

    req.context_phase = NULL;
    req.type = TRTD_REQUEST_CONTEXT_AND_GENERATION;
    req.max_new_tokens = 0;
    CHECK(trtd_executor_enqueue(a, &req, &bad) == TRTD_STATUS_INVALID_ARGUMENT && bad == 0, "zero max tokens refused");

    trtd_executor_stats sa, sb;
    CHECK(trtd_executor_get_stats(a, &sa) == TRTD_STATUS_OK && trtd_executor_get_stats(b, &sb) == TRTD_STATUS_OK, "stats");
    CHECK(sa.kv_blocks_used == 0 && sb.kv_blocks_used == 0 && sa.pinned_exports == 0 && sb.pending_imports == 0, "no leaks");
    free(src);
    free(dst);
    trtd_executor_destroy(a);
    trtd_executor_destroy(b);
    printf("ok\n");
    return 0;
}
