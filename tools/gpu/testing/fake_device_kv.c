/*
 * TEST ONLY. A stand-in for the ABI-3 device KV path on a CPU machine, so that the cross-process descriptor
 * flow of check_numerics.py (part d) and bench_cuda.py (part f) can be exercised without a GPU.
 *
 * Built as libtrtd_fake_device.so with libtrtd_ref.so as its DT_NEEDED dependency: dlsym() on this
 * library's handle finds the three device functions (and trtd_last_error, trtd_version) here and every other
 * symbol in the reference executor. The "device descriptor" names the exporter's host KV blocks by pid and
 * address; kv_import_device copies them into the reserved import with process_vm_readv (the importer must
 * be allowed to read the exporter: same user, and an ancestor of it under Yama ptrace_scope 1) and checks
 * an FNV-1a checksum, like the CUDA executor's descriptor (IPC handle + offsets + fingerprint + checksum).
 *
 *   cc -shared -fPIC -O2 -I packages/trtllm/include tools/gpu/testing/fake_device_kv.c \
 *      -o /tmp/libtrtd_fake_device.so -L packages/trtllm/build -l:libtrtd_ref.so -Wl,-rpath,<abs build dir> -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "trtd_executor.h"

#define MAGIC "TRTDFAKE"

typedef struct {
    char magic[8];
    int32_t pid;
    int32_t num_tokens;
    int32_t num_blocks;
    int32_t reserved;
    uint64_t bytes_per_block;
    uint64_t checksum;
    char fingerprint[32];
    uint64_t addrs[]; /* num_blocks block addresses in the exporter */
} fake_desc;

static __thread char tl_msg[256];
static __thread char tl_ref_snapshot[256];
static __thread int tl_has_msg;

static const char * ref_last_error(void) {
    static const char * (*fn)(void);
    if (!fn) fn = (const char * (*)(void))dlsym(RTLD_NEXT, "trtd_last_error");
    return fn ? fn() : "";
}

static trtd_status fail(trtd_status s, const char * fmt, const char * arg) {
    snprintf(tl_msg, sizeof tl_msg, fmt, arg ? arg : "");
    snprintf(tl_ref_snapshot, sizeof tl_ref_snapshot, "%s", ref_last_error());
    tl_has_msg = 1;
    return s;
}

TRTD_API const char * trtd_last_error(void) {
    const char * ref = ref_last_error();
    if (tl_has_msg && strcmp(ref, tl_ref_snapshot) == 0) return tl_msg;
    tl_has_msg = 0;
    return ref;
}

TRTD_API const char * trtd_version(void) { return "trtd-ref + fake device KV (TEST ONLY, process_vm_readv)"; }

static uint64_t fnv(uint64_t h, const unsigned char * p, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}

TRTD_API trtd_status trtd_executor_device_uuid(const trtd_executor * ex, char * buf, int32_t size) {
    if (!ex || !buf) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and buf must not be NULL%s", NULL);
    if (size < 64) return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "buf_size < 64%s", NULL);
    char host[40] = {0};
    gethostname(host, sizeof host - 1);
    snprintf(buf, (size_t)size, "FAKE-%s", host);
    return TRTD_STATUS_OK;
}

TRTD_API trtd_status trtd_executor_kv_export_device(trtd_executor * ex, trtd_request_id id, void * buffer,
                                                    uint64_t buffer_size, uint64_t * size_out) {
    if (!ex || !size_out) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and size_out must not be NULL%s", NULL);
    trtd_kv_export_info info;
    trtd_status s = trtd_executor_kv_export_info(ex, id, &info);
    if (s) return s;
    const uint64_t need = sizeof(fake_desc) + 8ull * (uint64_t)info.num_blocks;
    *size_out = need;
    if (!buffer) return TRTD_STATUS_OK;
    if (buffer_size < need) return fail(TRTD_STATUS_BUFFER_TOO_SMALL, "descriptor buffer too small%s", NULL);
    trtd_kv_layout lay;
    if ((s = trtd_executor_kv_layout(ex, &lay))) return s;
    trtd_kv_segment * segs = calloc((size_t)info.num_blocks + 1, sizeof *segs);
    int32_t n = 0;
    s = trtd_executor_kv_export_segments(ex, id, segs, info.num_blocks, &n);
    if (s) { free(segs); return s; }
    fake_desc * d = (fake_desc *)buffer;
    memset(d, 0, sizeof *d);
    memcpy(d->magic, MAGIC, 8);
    d->pid = (int32_t)getpid();
    d->num_tokens = info.num_tokens;
    d->num_blocks = n;
    d->bytes_per_block = lay.bytes_per_block;
    memcpy(d->fingerprint, lay.fingerprint, sizeof d->fingerprint);
    uint64_t h = 1469598103934665603ull;
    for (int32_t i = 0; i < n; ++i) {
        d->addrs[i] = (uint64_t)(uintptr_t)segs[i].data;
        h = fnv(h, (const unsigned char *)segs[i].data, segs[i].size);
    }
    d->checksum = h;
    free(segs);
    return TRTD_STATUS_OK;
}

TRTD_API trtd_status trtd_executor_kv_import_device(trtd_executor * ex, trtd_kv_import_id id, const void * desc,
                                                    uint64_t desc_size) {
    if (!ex || !desc) return fail(TRTD_STATUS_INVALID_ARGUMENT, "executor and descriptor must not be NULL%s", NULL);
    const fake_desc * d = (const fake_desc *)desc;
    if (desc_size < sizeof *d || memcmp(d->magic, MAGIC, 8) != 0 || d->num_blocks < 0 ||
        desc_size != sizeof *d + 8ull * (uint64_t)d->num_blocks)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "malformed fake device descriptor%s", NULL);
    trtd_kv_layout lay;
    trtd_status s = trtd_executor_kv_layout(ex, &lay);
    if (s) return s;
    if (memcmp(lay.fingerprint, d->fingerprint, sizeof d->fingerprint) != 0 || lay.bytes_per_block != d->bytes_per_block)
        return fail(TRTD_STATUS_INVALID_ARGUMENT, "descriptor has another KV layout (fingerprint %s)", d->fingerprint);
    int32_t n = 0;
    s = trtd_executor_kv_import_segments(ex, id, NULL, 0, &n);
    if (s && s != TRTD_STATUS_BUFFER_TOO_SMALL) return s;
    if (n != d->num_blocks) return fail(TRTD_STATUS_INVALID_ARGUMENT, "token count differs from the import's%s", NULL);
    trtd_kv_segment * segs = calloc((size_t)n + 1, sizeof *segs);
    if ((s = trtd_executor_kv_import_segments(ex, id, segs, n, &n))) { free(segs); return s; }
    uint64_t h = 1469598103934665603ull;
    for (int32_t i = 0; i < n; ++i) {
        struct iovec local = {segs[i].data, (size_t)segs[i].size};
        struct iovec remote = {(void *)(uintptr_t)d->addrs[i], (size_t)d->bytes_per_block};
        ssize_t got = process_vm_readv((pid_t)d->pid, &local, 1, &remote, 1, 0);
        if (got != (ssize_t)d->bytes_per_block) {
            free(segs);
            return fail(TRTD_STATUS_UNSUPPORTED, "cannot read the exporter's memory: %s", strerror(errno));
        }
        h = fnv(h, (const unsigned char *)segs[i].data, segs[i].size);
    }
    free(segs);
    if (h != d->checksum) return fail(TRTD_STATUS_INTERNAL, "checksum mismatch%s", NULL);
    return TRTD_STATUS_OK;
}
