/* kvx: the hot loops of @trtd/kv-transfer, loaded with koffi when built (scripts/build-native.mjs).
 *
 * CRC-32C (Castagnoli) with zlib-style chaining: kvx_crc32c(prev, p, n) continues a CRC whose value so far is
 * prev (0 to start). kvx_copy_crc32c copies n bytes and returns the CRC of them in the same pass, so the
 * receiving side of a same-host transfer reads every byte once. x86-64 uses the SSE4.2 crc32 instruction
 * (checked at run time); elsewhere a table does the work. No state, thread-safe. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KVX_ABI_VERSION 1

static uint32_t table[8][256];
static int table_ready = 0;

static void init_table(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    table[0][i] = c;
  }
  for (int t = 1; t < 8; t++)
    for (uint32_t i = 0; i < 256; i++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
  table_ready = 1;
}

static uint32_t update_table(uint32_t c, const uint8_t *p, size_t n) {
  if (!table_ready) init_table();
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    uint32_t lo = (uint32_t)w ^ c, hi = (uint32_t)(w >> 32);
    c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
        table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
  return c;
}

#if defined(__x86_64__)
#include <nmmintrin.h>
__attribute__((target("sse4.2"))) static uint32_t update_hw(uint32_t c, const uint8_t *p, size_t n) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c64 = _mm_crc32_u64(c64, w);
    p += 8;
    n -= 8;
  }
  c = (uint32_t)c64;
  while (n--) c = _mm_crc32_u8(c, *p++);
  return c;
}
__attribute__((target("sse4.2"))) static uint32_t copy_hw(uint8_t *d, const uint8_t *s, size_t n, uint32_t c) {
  uint64_t c64 = c;
  while (n >= 32) {
    uint64_t a, b, e, f;
    memcpy(&a, s, 8);
    memcpy(&b, s + 8, 8);
    memcpy(&e, s + 16, 8);
    memcpy(&f, s + 24, 8);
    memcpy(d, &a, 8);
    memcpy(d + 8, &b, 8);
    memcpy(d + 16, &e, 8);
    memcpy(d + 24, &f, 8);
    c64 = _mm_crc32_u64(c64, a);
    c64 = _mm_crc32_u64(c64, b);
    c64 = _mm_crc32_u64(c64, e);
    c64 = _mm_crc32_u64(c64, f);
    s += 32;
    d += 32;
    n -= 32;
  }
  memcpy(d, s, n);
  return update_hw((uint32_t)c64, s, n);
}
static int have_hw(void) {
  static int v = -1;
  if (v < 0) {
    __builtin_cpu_init();
    v = __builtin_cpu_supports("sse4.2") ? 1 : 0;
  }
  return v;
}
#else
static int have_hw(void) { return 0; }
static uint32_t update_hw(uint32_t c, const uint8_t *p, size_t n) { return update_table(c, p, n); }
static uint32_t copy_hw(uint8_t *d, const uint8_t *s, size_t n, uint32_t c) {
  memcpy(d, s, n);
  return update_table(c, d, n);
}
#endif

int kvx_abi_version(void) { return KVX_ABI_VERSION; }

/* 1 when the hardware CRC instruction is used, 0 for the table. */
int kvx_crc32c_hardware(void) { return have_hw(); }

uint32_t kvx_crc32c(uint32_t prev, const void *data, size_t n) {
  uint32_t c = ~prev;
  c = have_hw() ? update_hw(c, (const uint8_t *)data, n) : update_table(c, (const uint8_t *)data, n);
  return ~c;
}

uint32_t kvx_copy_crc32c(void *dst, const void *src, size_t n, uint32_t prev) {
  uint32_t c = ~prev;
  if (have_hw()) {
    c = copy_hw((uint8_t *)dst, (const uint8_t *)src, n, c);
  } else {
    memcpy(dst, src, n);
    c = update_table(c, (const uint8_t *)dst, n);
  }
  return ~c;
}
