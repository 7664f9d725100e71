/*
 * trtd_bpe.h: a byte-pair encoder with tiktoken's semantics for the split patterns it implements exactly.
 *
 * One opaque handle per vocabulary. Text goes in as UTF-8 (pointer + length), ids come out in a caller buffer.
 * Special tokens are not handled here: the caller splits them out and encodes the ordinary text between them,
 * as tiktoken's core does (its split regex runs on each stretch between specials separately).
 *
 * Threads: a handle is immutable after creation; trtd_bpe_encode may run on several threads at once on one
 * handle. trtd_bpe_free must not overlap any other call on that handle.
 */
#ifndef TRTD_BPE_H
#define TRTD_BPE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TRTD_BPE_API __attribute__((visibility("default")))
#else
#define TRTD_BPE_API
#endif

/* Bumped when a signature or a meaning below changes. */
#define TRTD_BPE_ABI_VERSION 1

/* The split patterns, each implemented by a hand-written scanner (no regex engine). */
typedef int32_t trtd_bpe_pattern;
/* cl100k_base's pattern, which Llama 3 uses too:
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
#define TRTD_BPE_PATTERN_CL100K 1
/* The same with \p{N} instead of \p{N}{1,3} (Qwen2's tokenizer.json). */
#define TRTD_BPE_PATTERN_CL100K_SINGLE_DIGITS 2
/* GPT-2's pattern (gpt2, r50k_base, p50k_base, tokenizer.json ByteLevel):
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
#define TRTD_BPE_PATTERN_GPT2 3

typedef struct trtd_bpe trtd_bpe;

/* TRTD_BPE_ABI_VERSION of the built library. */
TRTD_BPE_API int32_t trtd_bpe_abi_version(void);

/*
 * Builds an encoder from tiktoken ranks text: `<base64> <rank>` lines (a Llama-3-style tokenizer.model), or the
 * compact `! <first rank> <base64> <base64> ...` lines of the tiktoken package's bundled encodings.
 * Returns NULL when the text is malformed (bad base64, a rank that is not a non-negative 32-bit integer, an
 * empty token), when a byte string appears twice, when one of the 256 single bytes has no rank, or when
 * `pattern` is not one of TRTD_BPE_PATTERN_*. Free with trtd_bpe_free.
 */
TRTD_BPE_API trtd_bpe *trtd_bpe_create(const char *ranks_text, uint64_t ranks_len, trtd_bpe_pattern pattern);

/* Releases an encoder. NULL is ignored. */
TRTD_BPE_API void trtd_bpe_free(trtd_bpe *bpe);

/*
 * Encodes `text` (UTF-8, `len` bytes, no special tokens recognised) into `ids_out`.
 * Returns the number of ids (0 for empty text). When `capacity` is too small, writes the first `capacity` ids
 * and returns minus the number needed; a capacity of `len` always suffices (each id covers at least one byte).
 * Returns INT64_MIN when `bpe` is NULL, or when `text` or `ids_out` is NULL with a non-zero length or capacity.
 * Invalid UTF-8 does not fault: each byte that does not start a valid sequence is taken as one character of no
 * class (tiktoken cannot receive such text at all; callers convert from JavaScript strings, which yields U+FFFD).
 */
TRTD_BPE_API int64_t trtd_bpe_encode(const trtd_bpe *bpe, const uint8_t *text, uint64_t len, uint32_t *ids_out,
                                     uint64_t capacity);

/* Number of ranks loaded (for checks). */
TRTD_BPE_API int64_t trtd_bpe_rank_count(const trtd_bpe *bpe);

#ifdef __cplusplus
}
#endif

#endif /* TRTD_BPE_H */
