/* Compiled as C99 into the library: the header must be plain C, and the struct sizes below are the ones the
 * koffi binding (src/native.ts) declares. A change here is an ABI change: bump TRTD_ABI_VERSION. */
#include "../../include/trtd_executor.h"

#include <stddef.h>

#define TRTD_CHECK_SIZE(type, size) typedef char trtd_check_##type[(sizeof(type) == (size)) ? 1 : -1]
/* Fields added in the tail padding of a struct leave its size unchanged: their offsets are pinned too. */
#define TRTD_CHECK_OFFSET(type, field, offset) \
    typedef char trtd_check_##type##_##field[(offsetof(type, field) == (offset)) ? 1 : -1]

TRTD_CHECK_SIZE(trtd_executor_config, 56);
TRTD_CHECK_OFFSET(trtd_executor_config, enable_prefix_cache, 40); /* ABI 4 */
TRTD_CHECK_OFFSET(trtd_executor_config, kv_host_cache_bytes, 48); /* ABI 5 */
TRTD_CHECK_SIZE(trtd_model_info, 96);
TRTD_CHECK_SIZE(trtd_sampling_params, 40); /* ABI 4: penalties and min_p appended */
TRTD_CHECK_SIZE(trtd_context_phase_params, 32);
TRTD_CHECK_SIZE(trtd_request, 128);
TRTD_CHECK_OFFSET(trtd_request, type, 80);
TRTD_CHECK_OFFSET(trtd_request, generated_offset, 84); /* ABI 2: fits the tail padding of ABI 1's struct */
TRTD_CHECK_OFFSET(trtd_request, constrained, 88);      /* ABI 4: constrained decoding */
TRTD_CHECK_OFFSET(trtd_request, logit_bias_ids, 96);   /* ABI 4: the logit controls and logprobs after it */
TRTD_CHECK_OFFSET(trtd_request, logprobs, 124);
TRTD_CHECK_SIZE(trtd_token_logprobs, 168);
TRTD_CHECK_SIZE(trtd_response, 232);
TRTD_CHECK_SIZE(trtd_executor_stats, 112);
TRTD_CHECK_OFFSET(trtd_executor_stats, kv_blocks_cached, 52); /* ABI 4: in ABI 3's tail padding */
TRTD_CHECK_OFFSET(trtd_executor_stats, kv_host_stored_blocks, 80); /* ABI 5: host KV tier */
TRTD_CHECK_OFFSET(trtd_executor_stats, kv_host_blocks_held, 108);
TRTD_CHECK_SIZE(trtd_kv_event, 16); /* ABI 4 */
TRTD_CHECK_SIZE(trtd_kv_layout, 64);
TRTD_CHECK_SIZE(trtd_kv_segment, 24);
TRTD_CHECK_SIZE(trtd_kv_export_info, 24);
