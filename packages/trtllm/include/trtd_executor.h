/*
 * trtd_executor.h: the executor C ABI of trtd (one header, the contract).
 *
 * Modelled on TensorRT-LLM's C++ executor (requests of type context-and-generation, context-only,
 * generation-only; enqueue, await responses, cancel, stats; context phase params) and written in the
 * style of llama.cpp's llama.h (opaque handles, *_default_*() config constructors, explicit destroy,
 * status codes documented per function, caller-owned buffers with size-first queries).
 *
 * Implementations:
 *   - libtrtd_ref.so: the reference executor (C++17, CPU, KV in host memory).
 *   - libtrtd_executor_cuda.so: the CUDA executor (KV pool in device memory; host-staged export/import
 *     segments plus a device-to-device path between processes, see "Device KV transfer").
 *   - a TensorRT-LLM shim: KV in device memory, moved by TRT-LLM's cache transceiver. Such an
 *     implementation answers the KV export/import calls with TRTD_STATUS_ENGINE_NATIVE_TRANSFER and puts
 *     its state into the opaque context-phase blob instead (trtd_executor_context_phase_state).
 *
 * Threads: every function may be called from any thread; an executor serializes its calls with an
 * internal lock. Calls never block on model compute except trtd_executor_await_responses (bounded by its
 * timeout), trtd_executor_compute_logits (runs a forward pass) and trtd_executor_destroy (joins the engine
 * thread). The last-error string is per thread.
 *
 * Structs: pointers first, then 64-bit, then 32-bit fields, then bools, so that by-value copies stay
 * aligned and FFI struct definitions stay simple. Fields are added only at the end, with TRTD_ABI_VERSION
 * bumped; numbers of removed enum values stay reserved.
 */
#ifndef TRTD_EXECUTOR_H
#define TRTD_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define TRTD_API __declspec(dllexport)
#else
#define TRTD_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Bumped on every incompatible change of this header; compare with trtd_abi_version() at load time. */
#define TRTD_ABI_VERSION 5 /* 2: trtd_request.generated_offset; 3: device KV transfer functions;
                              4: constrained decoding (trtd_request.constrained, trtd_executor_set_token_mask);
                                 logit controls (penalties, min_p, logit bias, min_new_tokens) and logprobs
                                 (trtd_executor_await_responses_ext); prefix cache
                                 (trtd_executor_config.enable_prefix_cache, its stats, KV events);
                              5: host KV tier (trtd_executor_config.kv_host_cache_bytes, its stats) */

/** Most alternatives per token that trtd_token_logprobs carries (OpenAI's top_logprobs limit). */
#define TRTD_MAX_TOP_LOGPROBS 20

typedef struct trtd_executor trtd_executor; /* opaque */
typedef int32_t trtd_token;
typedef uint64_t trtd_request_id; /* > 0; 0 means "none" */
typedef uint64_t trtd_kv_import_id; /* > 0; 0 means "none" */

/* ------------------------------------------------------------------------------------------------
 * Status codes. Every fallible call returns one; on anything but TRTD_STATUS_OK the calling thread's
 * last-error string (trtd_last_error) says what went wrong. Negative values are errors.
 * ---------------------------------------------------------------------------------------------- */
typedef enum trtd_status {
    TRTD_STATUS_OK = 0,
    TRTD_STATUS_INVALID_ARGUMENT = -1,        /* bad input (ids >= vocab, sizes, sampling values, NULL) */
    TRTD_STATUS_NOT_FOUND = -2,               /* unknown or no longer live request / import id */
    TRTD_STATUS_INVALID_STATE = -3,           /* e.g. export of a request that is not a finished context-only one */
    TRTD_STATUS_KV_CAPACITY = -4,             /* can never fit: needs more KV blocks than the pool has */
    TRTD_STATUS_KV_EXHAUSTED = -5,            /* no free KV blocks now; retry later */
    TRTD_STATUS_BUFFER_TOO_SMALL = -6,        /* caller buffer too small; the size needed was written */
    TRTD_STATUS_MODEL_LOAD = -7,              /* model directory missing, unreadable or malformed */
    TRTD_STATUS_SHUT_DOWN = -8,               /* executor is shutting down */
    TRTD_STATUS_UNSUPPORTED = -9,             /* not offered by this implementation */
    TRTD_STATUS_ENGINE_NATIVE_TRANSFER = -10, /* KV moves inside the engine (e.g. TRT-LLM cache transceiver):
                                                 carry trtd_executor_context_phase_state instead */
    TRTD_STATUS_OUT_OF_MEMORY = -11,
    TRTD_STATUS_QUEUE_FULL = -12,             /* max_queued_requests reached; retry later */
    TRTD_STATUS_INTERNAL = -100
} trtd_status;

typedef enum trtd_request_type {
    TRTD_REQUEST_CONTEXT_AND_GENERATION = 0,
    TRTD_REQUEST_CONTEXT_ONLY = 1,    /* one final response carrying the first token; KV stays pinned for export */
    TRTD_REQUEST_GENERATION_ONLY = 2  /* continues from trtd_context_phase_params */
} trtd_request_type;

typedef enum trtd_finish_reason {
    TRTD_FINISH_NOT_FINISHED = 0,
    TRTD_FINISH_LENGTH = 1,     /* max_new_tokens reached or the context is full */
    TRTD_FINISH_END_ID = 2,     /* the end id was generated (it is the last token of the output) */
    TRTD_FINISH_STOP_TOKEN = 3, /* a stop token id was generated (it is the last token of the output) */
    TRTD_FINISH_CANCELLED = 4,
    TRTD_FINISH_ERROR = 5       /* see trtd_response.error_status / error_message */
} trtd_finish_reason;

typedef enum trtd_memory_kind {
    TRTD_MEMORY_HOST = 0,          /* plain host memory: the segment pointer may be dereferenced */
    TRTD_MEMORY_HOST_PINNED = 1,   /* page-locked host memory */
    TRTD_MEMORY_CUDA_DEVICE = 2,   /* device pointer on device_id; not dereferenceable on the host */
    TRTD_MEMORY_ENGINE_HANDLE = 3  /* opaque engine handle (e.g. an IPC handle); not a pointer */
} trtd_memory_kind;

typedef enum trtd_kv_dtype {
    TRTD_KV_FLOAT32 = 0,
    TRTD_KV_FLOAT16 = 1,
    TRTD_KV_BFLOAT16 = 2,
    TRTD_KV_FP8_E4M3 = 3
} trtd_kv_dtype;

/* ------------------------------------------------------------------------------------------------
 * Library
 * ---------------------------------------------------------------------------------------------- */

/** TRTD_ABI_VERSION of the library. A binding refuses a library whose value differs from its own. */
TRTD_API int32_t trtd_abi_version(void);

/** Implementation name and version, e.g. "trtd-ref 0.1.0". Static storage; never NULL. */
TRTD_API const char * trtd_version(void);

/** The calling thread's last error message ("" if none). Valid until the next call on this thread. */
TRTD_API const char * trtd_last_error(void);

/* ------------------------------------------------------------------------------------------------
 * Executor lifecycle
 * ---------------------------------------------------------------------------------------------- */

typedef struct trtd_executor_config {
    int64_t kv_memory_bytes;          /* KV pool budget in bytes, used when kv_block_count == 0 (0 = 64 MiB) */
    int32_t max_batch_size;           /* most requests in flight per iteration (default 32) */
    int32_t max_tokens_per_iteration; /* token budget per iteration; long prompts are chunked (default 512) */
    int32_t kv_tokens_per_block;      /* tokens per KV block (default 16) */
    int32_t kv_block_count;           /* blocks in the pool; 0 = from kv_memory_bytes */
    int32_t num_threads;              /* compute threads; 0 = hardware concurrency */
    int32_t max_context_length;       /* prompt + generated tokens per request; 0 = model's max_position_embeddings */
    int32_t device_id;                /* accelerator ordinal; -1 = CPU (the reference executor needs -1 or 0) */
    int32_t max_queued_requests;      /* enqueue fails with QUEUE_FULL past this many waiting; 0 = unbounded */
    /* Added in ABI 4. Reuse full KV blocks across requests whose tokens start the same way (default true; see
     * "Prefix cache" below). Off: every prompt is computed from scratch and a freed block holds nothing. */
    bool    enable_prefix_cache;
    /* Added in ABI 5. Bytes of host memory for the host KV tier (see "Host KV tier" below); 0 = off (default);
     * > 0 needs enable_prefix_cache and room for at least one block (trtd_kv_layout.bytes_per_block). */
    int64_t kv_host_cache_bytes;
} trtd_executor_config;

/** Defaults, to be adjusted field by field. */
TRTD_API trtd_executor_config trtd_executor_default_config(void);

/**
 * Loads the model in model_dir (config.json + safetensors, see docs/design/contracts.md), allocates the
 * KV pool and starts the engine thread.
 * @return OK and *executor_out set; INVALID_ARGUMENT for a bad config; MODEL_LOAD for a missing or
 *         malformed model; OUT_OF_MEMORY. On failure *executor_out is NULL and nothing is left allocated.
 */
TRTD_API trtd_status trtd_executor_create(const char * model_dir, const trtd_executor_config * config,
                                          trtd_executor ** executor_out);

/**
 * Stops the engine thread, drops every request, export and import, frees all memory and closes the
 * notification fd unless it was taken. Pointers from export/import segment calls become invalid.
 * NULL is a no-op.
 */
TRTD_API void trtd_executor_destroy(trtd_executor * executor);

typedef struct trtd_model_info {
    int32_t vocab_size;
    int32_t num_layers;
    int32_t hidden_size;
    int32_t num_heads;
    int32_t num_kv_heads;
    int32_t head_dim;
    int32_t max_context_length;  /* effective limit (config or model) */
    int32_t num_eos_token_ids;   /* entries used in eos_token_ids */
    int32_t eos_token_ids[8];
    char    fingerprint[32];     /* NUL-terminated hex digest of config + weights */
} trtd_model_info;

/** Fills *info_out. @return OK, or INVALID_ARGUMENT for NULL arguments. */
TRTD_API trtd_status trtd_executor_model_info(const trtd_executor * executor, trtd_model_info * info_out);

/* ------------------------------------------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------------------------------------- */

/*
 * Logit controls (ABI 4). The logits row of a draw goes through, in this order (vLLM's and transformers' order),
 * after a constrained request's token mask (see "Constrained decoding"):
 *   1. logit bias: logits[id] += value for each trtd_request.logit_bias_ids / logit_bias_values pair;
 *   2. min_new_tokens: while fewer than min_new_tokens tokens were generated (counting generated_offset), the
 *      end id and the stop token ids are set to -inf (transformers' MinNewTokensLengthLogitsProcessor);
 *   3. repetition_penalty r over every distinct id of the prompt and the generated tokens: a logit l > 0 becomes
 *      l / r, else l * r (CTRL; transformers' RepetitionPenaltyLogitsProcessor);
 *   4. frequency and presence penalties over the generated tokens (the last generated_offset prompt ids count
 *      as generated): l -= count * frequency_penalty + (count > 0) * presence_penalty (OpenAI's formula);
 * then the draw: greedy argmax, or temperature, top_k, top_p, then min_p (transformers' warper order: tokens whose
 * probability after temperature is below min_p times the largest are dropped from what top_k/top_p kept; all
 * three keep a prefix of the order (logit descending, id ascending), so min_p intersects that prefix). With
 * min_p alone the draw walks index order over the kept ids. The random draw still depends only on (seed, n).
 */
typedef struct trtd_sampling_params {
    uint64_t seed;        /* the draw for the n-th generated token depends only on (seed, n); n starts at
                             trtd_request.generated_offset */
    float    temperature; /* 0 = greedy (argmax); else > 0 */
    float    top_p;       /* in (0, 1]; 1 = off */
    int32_t  top_k;       /* 0 = off; else >= 1 */
    /* Added in ABI 4 (see "Logit controls" above). */
    float    repetition_penalty; /* > 0; 1 = off */
    float    frequency_penalty;  /* finite; 0 = off */
    float    presence_penalty;   /* finite; 0 = off */
    float    min_p;              /* in [0, 1]; 0 = off; ignored when greedy */
} trtd_sampling_params;

/* greedy, top_p 1, top_k 0, seed 0, repetition_penalty 1, frequency and presence penalties 0, min_p 0 */
TRTD_API trtd_sampling_params trtd_sampling_default_params(void);

/**
 * What a generation-only request continues from: the context-only request's first token plus either
 * KV imported through trtd_executor_kv_import_reserve (kv_import_id) or an engine's opaque state
 * (opaque_state; e.g. TRT-LLM's serialized ContextPhaseParams). The reference executor needs kv_import_id
 * and ignores opaque_state.
 */
typedef struct trtd_context_phase_params {
    const void * opaque_state;      /* may be NULL; copied at enqueue */
    uint64_t     opaque_state_size;
    trtd_kv_import_id kv_import_id; /* 0 = none; on successful enqueue the request takes ownership */
    trtd_token   first_token;
} trtd_context_phase_params;

typedef struct trtd_request {
    const trtd_token * prompt;                       /* prompt_len ids, each in [0, vocab_size) */
    const trtd_token * stop_token_ids;               /* num_stop_token_ids ids; may be NULL */
    const trtd_context_phase_params * context_phase; /* required for GENERATION_ONLY, else NULL */
    trtd_sampling_params sampling;
    int32_t prompt_len;         /* >= 1 and < max context length */
    int32_t max_new_tokens;     /* >= 1; includes the first token, also for GENERATION_ONLY */
    int32_t end_id;             /* -1 = none */
    int32_t num_stop_token_ids; /* >= 0 */
    int32_t type;               /* trtd_request_type */
    /* Added in ABI 2. Index of the first token this request generates, for resuming a sampled sequence
     * elsewhere (request migration: the prompt ends with the generated_offset tokens already produced);
     * 0 normally; >= 0. The n-th token of this request is drawn with (seed, generated_offset + n).
     * max_new_tokens still counts only this request's tokens (pass the original limit minus the offset),
     * and the context limit applies to prompt_len + this request's tokens as usual. Implementations that
     * cannot offset their draws refuse a non-zero value with TRTD_STATUS_UNSUPPORTED. */
    int32_t generated_offset;
    /* Added in ABI 4. The request's sampled tokens are constrained by allowed-token bitmasks that the caller
     * supplies one per sampled token with trtd_executor_set_token_mask (see "Constrained decoding").
     * Implementations without it refuse true with TRTD_STATUS_UNSUPPORTED. */
    bool constrained;
    /* Added in ABI 4 (logit controls, see trtd_sampling_params; logprobs, see trtd_token_logprobs). An
     * implementation that does not offer one refuses a non-default value with TRTD_STATUS_UNSUPPORTED. */
    const trtd_token * logit_bias_ids; /* num_logit_bias distinct ids; may be NULL when num_logit_bias is 0 */
    const float * logit_bias_values;   /* num_logit_bias finite values added to those ids' logits */
    int32_t num_logit_bias;            /* in [0, vocab_size] */
    int32_t min_new_tokens;            /* >= 0; the end id and stop token ids cannot be drawn before this many
                                          tokens were generated (counting generated_offset); 0 = off */
    int32_t num_top_logprobs;          /* with logprobs: alternatives per token, in [0, TRTD_MAX_TOP_LOGPROBS];
                                          0 without logprobs */
    bool    logprobs;                  /* record every drawn token's logprob, see trtd_token_logprobs */
} trtd_request;

/**
 * Validates and queues a request (copies everything it needs; the caller's buffers may be freed after).
 * A request whose KV need (prompt + max_new_tokens, capped at the context) fits the pool but not its free
 * blocks waits in the queue until blocks are free.
 * @return OK and *id_out set; INVALID_ARGUMENT (message names the field); KV_CAPACITY when it can never
 *         fit; NOT_FOUND for an unknown kv_import_id; QUEUE_FULL when the queue limit is reached;
 *         UNSUPPORTED for a field this implementation cannot honour (generated_offset != 0 on the
 *         TensorRT-LLM shim; constrained on an implementation without constrained decoding); SHUT_DOWN. On failure nothing changed (an import stays owned by the caller).
 */
TRTD_API trtd_status trtd_executor_enqueue(trtd_executor * executor, const trtd_request * request,
                                           trtd_request_id * id_out);

/**
 * Asks the engine to stop a queued or running request. Its final response (finish reason CANCELLED) comes
 * through trtd_executor_await_responses, and its KV blocks are freed. A finished context-only request's
 * pinned KV is released with trtd_executor_kv_export_release, not here.
 * @return OK; NOT_FOUND when the id is unknown or already finished.
 */
TRTD_API trtd_status trtd_executor_cancel(trtd_executor * executor, trtd_request_id id);

/* ------------------------------------------------------------------------------------------------
 * Constrained decoding (ABI 4)
 *
 * A request enqueued with constrained = true samples each of its tokens from the tokens that a bitmask allows
 * (grammar-guided decoding: the caller runs a grammar matcher, e.g. xgrammar, beside the executor). Bit t
 * (word t / 32, bit t % 32, least significant first) allows token t; bits at or past vocab_size are ignored.
 * Disallowed logits are set to -infinity first, before the logit controls (see "Logit controls"), temperature,
 * top-k and top-p; no control raises a -infinity logit, so a disallowed token is never drawn, and a mask that allows
 * every token gives exactly the unconstrained draw (same seed, same token). Where the controls leave no allowed
 * token (min_new_tokens against a mask that allows only the end and stop ids), the mask wins: that draw is made
 * from the masked row without the controls. Logprobs stay those of the raw row, unmasked.
 *
 * One mask per sampled token, in order: the mask for the request's first sampled token may be given any time
 * after enqueue (a generation-only request's first token comes from the context phase and is not sampled: its
 * first mask is for its second token); each later mask after the previous sampled token was delivered as a
 * response. Masks stay off the batch's critical path: the engine runs a constrained request's forward pass
 * without waiting, and only its sampling waits for the mask: a mask given while that forward pass runs is used
 * in the same step's draws; a later one finds the logits held aside (the reference executor), and the other
 * requests of the batch sample and go on as usual. So the caller computes the next mask while the next step's
 * forward pass runs (xgrammar's intended overlap). A request waiting for its mask holds its KV blocks; cancel it
 * as usual.
 * ---------------------------------------------------------------------------------------------- */

/**
 * Gives a constrained request the allowed-token bitmask of its next sampled token (copied; num_words ==
 * (vocab_size + 31) / 32). At most one mask waits per request.
 * @return OK; NOT_FOUND (unknown or finished request); INVALID_STATE (the request is not constrained, or a mask
 *         is already waiting); INVALID_ARGUMENT (NULL mask, wrong num_words, or no token in [0, vocab_size)
 *         allowed); UNSUPPORTED (an implementation without constrained decoding).
 */
TRTD_API trtd_status trtd_executor_set_token_mask(trtd_executor * executor, trtd_request_id id,
                                                  const uint32_t * bitmask, int32_t num_words);

/* ------------------------------------------------------------------------------------------------
 * Responses
 *
 * The engine accumulates output per request; one drain returns at most one response per request with
 * all its tokens since the previous drain. Tokens go into the caller's token buffer at token_offset.
 * ---------------------------------------------------------------------------------------------- */

typedef struct trtd_response {
    trtd_request_id request_id;
    int32_t token_offset;       /* index of this response's first token in the token buffer */
    int32_t num_tokens;         /* new tokens (may be 0 in a final response) */
    int32_t finish_reason;      /* trtd_finish_reason; NOT_FINISHED unless is_final */
    int32_t error_status;       /* trtd_status; OK unless finish_reason == ERROR */
    char    error_message[200]; /* NUL-terminated; "" unless finish_reason == ERROR */
    bool    is_final;           /* the last response for this request id */
} trtd_response;

/**
 * Moves ready responses into the caller's buffers, waiting up to timeout_ms for the first one
 * (0 = never wait, -1 = wait without bound: avoid). When the buffers fill up, the rest stays queued
 * (a response may then be split: its first part is not final).
 * @return OK with *num_responses_out >= 0 (0 on timeout); INVALID_ARGUMENT.
 */
TRTD_API trtd_status trtd_executor_await_responses(trtd_executor * executor, int32_t timeout_ms,
                                                   trtd_response * responses, int32_t max_responses,
                                                   trtd_token * tokens, int32_t max_tokens,
                                                   int32_t * num_responses_out);

/**
 * Logprobs of one output token (ABI 4), for requests with trtd_request.logprobs. They are of the raw model
 * distribution: log_softmax of the model's logits, before the logit controls, temperature and top_k/top_p/min_p
 * (vLLM's default, "raw_logprobs"), so they do not depend on the sampling parameters.
 */
typedef struct trtd_token_logprobs {
    float      logprob;       /* of the output token */
    int32_t    num_top;       /* entries used in top_ids / top_logprobs (the request's num_top_logprobs); -1 = not
                                 recorded: a request without logprobs, or the first token of a generation-only
                                 request (it was drawn by the context-only request, whose response carried it) */
    trtd_token top_ids[TRTD_MAX_TOP_LOGPROBS];      /* the most likely ids, logprob descending, lower id first on ties */
    float      top_logprobs[TRTD_MAX_TOP_LOGPROBS];
} trtd_token_logprobs;

/**
 * trtd_executor_await_responses plus each token's logprobs (ABI 4): logprobs is NULL (then the same as
 * trtd_executor_await_responses) or holds max_tokens entries, written parallel to tokens (entry i describes
 * tokens[i]). @return as trtd_executor_await_responses.
 */
TRTD_API trtd_status trtd_executor_await_responses_ext(trtd_executor * executor, int32_t timeout_ms,
                                                       trtd_response * responses, int32_t max_responses,
                                                       trtd_token * tokens, int32_t max_tokens,
                                                       trtd_token_logprobs * logprobs, int32_t * num_responses_out);

/**
 * A file descriptor that becomes readable when responses are ready, for event loops: the engine writes a
 * byte to it whenever the response queue goes from empty to non-empty; after readiness, drain with
 * trtd_executor_await_responses(timeout 0) until it returns 0 responses, and read (discard) the bytes.
 * Ownership: with take == false the executor keeps the fd and closes it in destroy; with take == true the
 * caller owns it from now on and must close it (allowed once).
 * @return OK and *fd_out set; UNSUPPORTED; INVALID_STATE if already taken.
 */
TRTD_API trtd_status trtd_executor_notify_fd(trtd_executor * executor, bool take, int32_t * fd_out);

/**
 * Size-first query of the opaque engine state of a finished context-only request (for
 * trtd_context_phase_params.opaque_state). *size_out receives the size; with buffer == NULL or a buffer
 * that is too small nothing is copied (BUFFER_TOO_SMALL when buffer != NULL). The reference executor has
 * no such state: size 0.
 * @return OK; NOT_FOUND; BUFFER_TOO_SMALL.
 */
TRTD_API trtd_status trtd_executor_context_phase_state(trtd_executor * executor, trtd_request_id id,
                                                       void * buffer, uint64_t buffer_size,
                                                       uint64_t * size_out);

/* ------------------------------------------------------------------------------------------------
 * Stats
 * ---------------------------------------------------------------------------------------------- */

/*
 * Prefix cache (ABI 4). A full KV block (tokens_per_block tokens) is keyed by a hash chained over the model
 * identity, the block's position and its token ids, so a block is reused only where every token before it is
 * equal too. Blocks are shared across requests with reference counts and never written while shared: a request
 * reuses at most its prompt's leading full blocks short of its last prompt token. When no request, export or
 * import holds a cached block it stays cached, counted in kv_blocks_free and kv_blocks_cached, until a block is
 * needed and none is empty: then the least recently used is evicted. Output with a cached prefix equals
 * output without it, token for token.
 */
typedef struct trtd_executor_stats {
    uint64_t iterations;         /* engine iterations run so far */
    uint64_t generated_tokens;   /* tokens sampled so far */
    uint64_t prompt_tokens;      /* prompt tokens processed so far (prefix-cache hits are not processed) */
    int32_t  active_requests;    /* admitted, holding KV, not finished */
    int32_t  queued_requests;    /* waiting for admission */
    int32_t  kv_blocks_total;
    int32_t  kv_blocks_used;     /* held by requests, pinned exports and pending imports; 0 when all are done */
    int32_t  kv_blocks_free;     /* not held: empty, or cached and evictable (kv_blocks_cached); used + free = total */
    int32_t  pinned_exports;     /* finished context-only requests not yet released */
    int32_t  pending_imports;    /* reserved imports not yet consumed or aborted */
    /* Added in ABI 4 (prefix cache). */
    int32_t  kv_blocks_cached;             /* free blocks that hold a cached prefix (part of kv_blocks_free) */
    uint64_t prefix_cache_hit_tokens;      /* prompt tokens whose KV came from the cache, at admission */
    uint64_t prefix_cache_miss_tokens;     /* prompt tokens that had to be computed (all of them with the cache
                                              off; generation-only requests count neither) */
    uint64_t prefix_cache_evicted_blocks;  /* cached blocks evicted from the pool to make room (also those that
                                              moved to the host tier) */
    /* Added in ABI 5 (host KV tier; all 0 when it is off). */
    uint64_t kv_host_stored_blocks;        /* blocks copied from the pool to the host tier on eviction */
    uint64_t kv_host_hit_blocks;           /* blocks copied back from the host tier on a prefix match (their tokens
                                              count in prefix_cache_hit_tokens too) */
    uint64_t kv_host_evicted_blocks;       /* blocks dropped from the full host tier, least recently used first */
    int32_t  kv_host_blocks_total;         /* slots in the host tier: kv_host_cache_bytes / bytes_per_block */
    int32_t  kv_host_blocks_held;          /* slots that hold a block */
} trtd_executor_stats;

TRTD_API trtd_status trtd_executor_get_stats(trtd_executor * executor, trtd_executor_stats * stats_out);

/* ------------------------------------------------------------------------------------------------
 * KV events (ABI 4): what the prefix cache stores and evicts, for a KV-aware router. A block is named by its
 * chained hash (see "Prefix cache" above), which a router computes from token ids the same way.
 * The executor queues events from creation on, at most TRTD_KV_EVENT_QUEUE_MAX; past that the queue is dropped
 * and the next drain reports it lost: the consumer rebuilds its view from trtd_executor_kv_cache_snapshot.
 * ---------------------------------------------------------------------------------------------- */

#define TRTD_KV_EVENT_QUEUE_MAX 65536

typedef enum trtd_kv_event_type {
    TRTD_KV_EVENT_STORED = 0,  /* a full block entered the cache */
    TRTD_KV_EVENT_REMOVED = 1  /* a cached block was evicted */
} trtd_kv_event_type;

typedef struct trtd_kv_event {
    uint64_t block_hash;
    int32_t  type;      /* trtd_kv_event_type */
    int32_t  reserved;  /* 0 */
} trtd_kv_event;

/*
 * Host KV tier (ABI 5, trtd_executor_config.kv_host_cache_bytes > 0). A second level under the prefix cache, in
 * host memory (pinned for the CUDA executor): when a cached block is evicted from the pool, its bytes (every
 * layer's K and V, the layout above) are first copied to a host slot, keyed by the same chained hash, its tokens
 * and its parent. A request's prefix match continues through the tier after the pool's cached blocks stop
 * matching; blocks found there are copied back into newly allocated pool blocks, cached again and leave the tier
 * (it is exclusive). A full tier drops its least recently used block. Output equals output without any cache,
 * token for token.
 *
 * KV events and snapshots name what the worker holds in either level: a block moving between the pool and the
 * tier is no event, "removed" comes when its last copy goes, and a snapshot lists the hashes of both levels. A
 * router that sends a request to a worker whose tier holds its prefix saves the prefill (the copy back costs
 * far less), so the two levels count the same for routing.
 */

/**
 * Moves up to max_events queued events into events, oldest first. *lost_out is true when events were dropped
 * (the queue overflowed) since the last snapshot: the events returned then start after the gap, so rebuild from
 * a snapshot. With the prefix cache off there are never events.
 * @return OK; INVALID_ARGUMENT; UNSUPPORTED (an implementation without a prefix cache).
 */
TRTD_API trtd_status trtd_executor_kv_events(trtd_executor * executor, trtd_kv_event * events, int32_t max_events,
                                             int32_t * num_events_out, bool * lost_out);

/**
 * Size-first: the hashes of every block in the prefix cache (held or not), in no particular order. With
 * max_hashes < the count, only *num_hashes_out is written and BUFFER_TOO_SMALL returned. A complete snapshot
 * also drops the queued events and clears the lost flag, under the same lock: the next events continue from it.
 * @return OK; INVALID_ARGUMENT; BUFFER_TOO_SMALL; UNSUPPORTED.
 */
TRTD_API trtd_status trtd_executor_kv_cache_snapshot(trtd_executor * executor, uint64_t * hashes, int32_t max_hashes,
                                                     int32_t * num_hashes_out);

/* ------------------------------------------------------------------------------------------------
 * KV cache layout, export and import (disaggregation)
 *
 * The cache is paged. One block holds, contiguously, every layer's K and V for tokens_per_block tokens:
 * [layer][K then V][token in block][kv head][head_dim] of dtype. A request's KV is therefore a list of
 * equal-size segments (the last one possibly partly used). Two executors with equal layout fingerprints
 * can exchange segments byte for byte.
 * ---------------------------------------------------------------------------------------------- */

typedef struct trtd_kv_layout {
    uint64_t bytes_per_block;
    int32_t  num_layers;
    int32_t  num_kv_heads;
    int32_t  head_dim;
    int32_t  tokens_per_block;
    int32_t  dtype;          /* trtd_kv_dtype */
    int32_t  memory_kind;    /* trtd_memory_kind of the pool */
    char     fingerprint[32]; /* NUL-terminated hex: model fingerprint + all fields above */
} trtd_kv_layout;

TRTD_API trtd_status trtd_executor_kv_layout(const trtd_executor * executor, trtd_kv_layout * layout_out);

typedef struct trtd_kv_segment {
    void *   data;        /* host pointer, device pointer or engine handle, see memory_kind */
    uint64_t size;        /* bytes (bytes_per_block) */
    int32_t  memory_kind; /* trtd_memory_kind */
    int32_t  device_id;   /* -1 for host memory */
} trtd_kv_segment;

typedef struct trtd_kv_export_info {
    uint64_t bytes;       /* num_blocks * bytes_per_block */
    int32_t  num_tokens;  /* tokens with KV (the prompt length) */
    int32_t  num_blocks;
    int32_t  memory_kind;
} trtd_kv_export_info;

/**
 * Describes the pinned KV of a finished context-only request (it stays pinned until
 * trtd_executor_kv_export_release or destroy).
 * @return OK; NOT_FOUND; INVALID_STATE (not context-only, or not finished yet);
 *         ENGINE_NATIVE_TRANSFER (KV moves inside the engine; use the context phase state).
 */
TRTD_API trtd_status trtd_executor_kv_export_info(trtd_executor * executor, trtd_request_id id,
                                                  trtd_kv_export_info * info_out);

/**
 * Zero-copy views of the pinned blocks, in token order. Size first: with max_segments < num_blocks
 * nothing is written except *num_segments_out = num_blocks, and BUFFER_TOO_SMALL is returned (segments
 * may be NULL then). Views stay valid until release or destroy; treat them as read-only.
 */
TRTD_API trtd_status trtd_executor_kv_export_segments(trtd_executor * executor, trtd_request_id id,
                                                      trtd_kv_segment * segments, int32_t max_segments,
                                                      int32_t * num_segments_out);

/**
 * Copies the pinned KV (num_blocks segments back to back, bytes in all) into a caller buffer.
 * @return OK; NOT_FOUND; INVALID_STATE; BUFFER_TOO_SMALL (buffer_size < bytes; nothing copied).
 */
TRTD_API trtd_status trtd_executor_kv_export_copy(trtd_executor * executor, trtd_request_id id,
                                                  void * buffer, uint64_t buffer_size);

/** Unpins and frees the exported blocks; the request id is forgotten. @return OK; NOT_FOUND. */
TRTD_API trtd_status trtd_executor_kv_export_release(trtd_executor * executor, trtd_request_id id);

/**
 * Reserves blocks for num_tokens tokens of KV to be written by the caller, then consumed by a
 * GENERATION_ONLY request (trtd_context_phase_params.kv_import_id). Segments have the export shape.
 * @return OK and *import_id_out set; INVALID_ARGUMENT (num_tokens < 1 or >= max context);
 *         KV_CAPACITY (can never fit); KV_EXHAUSTED (not enough free blocks now);
 *         ENGINE_NATIVE_TRANSFER (the engine moves KV itself).
 */
TRTD_API trtd_status trtd_executor_kv_import_reserve(trtd_executor * executor, int32_t num_tokens,
                                                     trtd_kv_import_id * import_id_out);

/** Writable zero-copy views of a reserved import's blocks; size first as for export segments. */
TRTD_API trtd_status trtd_executor_kv_import_segments(trtd_executor * executor, trtd_kv_import_id id,
                                                      trtd_kv_segment * segments, int32_t max_segments,
                                                      int32_t * num_segments_out);

/** Frees a reserved import that was not consumed. @return OK; NOT_FOUND (unknown or consumed). */
TRTD_API trtd_status trtd_executor_kv_import_abort(trtd_executor * executor, trtd_kv_import_id id);

/* ------------------------------------------------------------------------------------------------
 * Device KV transfer (ABI 3)
 *
 * For executors whose KV pool lives in device memory: a prefill process and a decode process whose
 * devices can reach each other (the same GPU, or GPUs with peer access) move KV device to device.
 * The exporter describes a finished context-only request's pinned blocks with an opaque descriptor
 * (for the CUDA executor: a CUDA IPC handle of its pool, the block offsets, the layout fingerprint and
 * a checksum of the blocks computed on the device); the importer maps the pool once per peer, copies the
 * blocks into a reserved import with one gather kernel, verifies the checksum and returns. The exporter's
 * KV is complete when the context-only request's final response is delivered; the exporter must not
 * release the export before the importer's call returned (the decode side acks, then prefill releases).
 * Host-memory executors answer UNSUPPORTED; callers then use the segment path above.
 * ---------------------------------------------------------------------------------------------- */

/**
 * Identity of the device that holds the KV pool, NUL-terminated in buf ("GPU-" + UUID for CUDA), so that
 * two processes can tell whether they share a GPU. @return OK; BUFFER_TOO_SMALL (buf_size < 64);
 * UNSUPPORTED (host executor).
 */
TRTD_API trtd_status trtd_executor_device_uuid(const trtd_executor * executor, char * buf, int32_t buf_size);

/**
 * Size-first: writes the device descriptor of a finished context-only request's pinned KV. *size_out gets
 * the size; with buffer == NULL or too small nothing is copied (BUFFER_TOO_SMALL when buffer != NULL).
 * The descriptor stays valid until trtd_executor_kv_export_release or destroy.
 * @return OK; NOT_FOUND; INVALID_STATE; BUFFER_TOO_SMALL; UNSUPPORTED.
 */
TRTD_API trtd_status trtd_executor_kv_export_device(trtd_executor * executor, trtd_request_id id, void * buffer,
                                                    uint64_t buffer_size, uint64_t * size_out);

/**
 * Copies the KV that a descriptor from trtd_executor_kv_export_device (any process) names into a reserved
 * import, device to device, and verifies its checksum; returns when the copy is complete. The import is
 * then consumed by a GENERATION_ONLY request as usual (or aborted).
 * @return OK; NOT_FOUND (import); INVALID_ARGUMENT (malformed descriptor, other layout, token count differs
 *         from the import's); UNSUPPORTED (this device cannot reach the exporter's memory: use the segment
 *         path); INTERNAL (checksum mismatch or a CUDA error; the import is left reserved).
 */
TRTD_API trtd_status trtd_executor_kv_import_device(trtd_executor * executor, trtd_kv_import_id id,
                                                    const void * descriptor, uint64_t descriptor_size);

/* ------------------------------------------------------------------------------------------------
 * Testing and debugging
 * ---------------------------------------------------------------------------------------------- */

/**
 * [DEBUG] Runs a full forward pass over tokens on the calling thread (scratch KV, not the pool) and
 * writes the logits of every position: num_tokens * vocab_size floats, row-major. Serialized with the
 * engine's iterations.
 * @return OK; INVALID_ARGUMENT (ids, length); BUFFER_TOO_SMALL (max_logits too small; nothing written);
 *         UNSUPPORTED.
 */
TRTD_API trtd_status trtd_executor_compute_logits(trtd_executor * executor, const trtd_token * tokens,
                                                  int32_t num_tokens, float * logits, int64_t max_logits);

#ifdef __cplusplus
}
#endif

#endif /* TRTD_EXECUTOR_H */
