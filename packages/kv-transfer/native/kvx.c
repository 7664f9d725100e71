/* kvx: the hot loops of @trtd/kv-transfer, loaded with koffi when built (scripts/build-native.mjs).
 *
 * CRC-32C (Castagnoli) with zlib-style chaining: kvx_crc32c(prev, p, n) continues a CRC whose value so far is
 * prev (0 to start). kvx_copy_crc32c copies n bytes and returns the CRC of them in the same pass, so the
 * receiving side of a same-host transfer reads every byte once. x86-64 uses the SSE4.2 crc32 instruction
 * (checked at run time); elsewhere a table does the work. No state, thread-safe.
 *
 * kvx_cas32 / kvx_store32: sequentially consistent 32-bit atomics on shared memory, for the state word
 * of a single-copy shm staging segment that two processes change (see src/shm-staging.ts). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KVX_ABI_VERSION 2

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
#include <immintrin.h>
#include <nmmintrin.h>
/* The crc32 instruction has a latency of 3 cycles and a throughput of 1 per cycle, so one dependent chain runs
 * at a third of its speed (~9 GB/s measured here, slower than memcpy, which made the receiver's fused copy+CRC
 * the slowest step of a same-host transfer). Blocks of 3 x LANE bytes are therefore split into three
 * independent chains, joined with the linear "advance over LANE zero bytes" operator: the CRC register is linear
 * in (state, data), so reg(A|B, c) = shift_LANE(reg(A, c)) ^ reg(B, 0). The operator is a 32x32 bit matrix,
 * applied through four 256-entry tables built once at load time. */
#define LANE 4096
static uint32_t shift_tab[4][256];

__attribute__((target("sse4.2"))) static void init_shift(void) {
  uint32_t col[32];
  for (int i = 0; i < 32; i++) {
    uint64_t st = 1u << i;
    for (int k = 0; k < LANE / 8; k++) st = _mm_crc32_u64(st, 0);
    col[i] = (uint32_t)st;
  }
  for (int b = 0; b < 4; b++)
    for (uint32_t v = 0; v < 256; v++) {
      uint32_t r = 0;
      for (int bit = 0; bit < 8; bit++)
        if ((v >> bit) & 1u) r ^= col[8 * b + bit];
      shift_tab[b][v] = r;
    }
}

static inline uint32_t shift_lane(uint32_t v) {
  return shift_tab[0][v & 0xff] ^ shift_tab[1][(v >> 8) & 0xff] ^ shift_tab[2][(v >> 16) & 0xff] ^ shift_tab[3][v >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t update_hw(uint32_t c, const uint8_t *p, size_t n) {
  uint64_t c64 = c;
  while (n >= 3 * LANE) {
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < LANE; i += 8) {
      uint64_t a, b, e;
      memcpy(&a, p + i, 8);
      memcpy(&b, p + LANE + i, 8);
      memcpy(&e, p + 2 * LANE + i, 8);
      c64 = _mm_crc32_u64(c64, a);
      c1 = _mm_crc32_u64(c1, b);
      c2 = _mm_crc32_u64(c2, e);
    }
    c64 = shift_lane(shift_lane((uint32_t)c64) ^ (uint32_t)c1) ^ (uint32_t)c2;
    p += 3 * LANE;
    n -= 3 * LANE;
  }
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
  while (n >= 3 * LANE) {
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < LANE; i += 16) {
      uint64_t a0, a1, b0, b1, e0, e1;
      memcpy(&a0, s + i, 8);
      memcpy(&a1, s + i + 8, 8);
      memcpy(&b0, s + LANE + i, 8);
      memcpy(&b1, s + LANE + i + 8, 8);
      memcpy(&e0, s + 2 * LANE + i, 8);
      memcpy(&e1, s + 2 * LANE + i + 8, 8);
      memcpy(d + i, &a0, 8);
      memcpy(d + i + 8, &a1, 8);
      memcpy(d + LANE + i, &b0, 8);
      memcpy(d + LANE + i + 8, &b1, 8);
      memcpy(d + 2 * LANE + i, &e0, 8);
      memcpy(d + 2 * LANE + i + 8, &e1, 8);
      c64 = _mm_crc32_u64(c64, a0);
      c1 = _mm_crc32_u64(c1, b0);
      c2 = _mm_crc32_u64(c2, e0);
      c64 = _mm_crc32_u64(c64, a1);
      c1 = _mm_crc32_u64(c1, b1);
      c2 = _mm_crc32_u64(c2, e1);
    }
    c64 = shift_lane(shift_lane((uint32_t)c64) ^ (uint32_t)c1) ^ (uint32_t)c2;
    s += 3 * LANE;
    d += 3 * LANE;
    n -= 3 * LANE;
  }
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
/* Folding with VPCLMULQDQ (AVX-512): 16 lanes of 128 bits, each multiplied ahead by 256 bytes per step with
 * carry-less products and XORed into the data there, so the CRC costs no more than the copy (the crc32 instruction
 * alone, 8 bytes per cycle, is slower than memcpy on the 2-core VM's Zen 5). Math, for the bit-reflected CRC: a
 * 128-bit block X = L x^64 + H (L = its first 8 bytes) followed by D bits contributes X x^D mod P, so it may be
 * replaced by L (x^(64+D) mod P) + H (x^D mod P), a polynomial of degree < 96, XORed into the block D bits
 * later. A reflected carry-less product of 64-bit operands represents x A B, hence the constants x^(63+D) and
 * x^(D-1). The initial CRC value goes into the first 4 message bytes (reg(c, M) = reg(0, M ^ c)); the 256 bytes
 * the lanes end as are then run through the crc32 instruction from 0, followed by the tail. Checked against the
 * table version at many lengths and offsets (test/checksum.test.ts). */
#define FOLD_BYTES 256
static uint64_t fold_k_lo, fold_k_hi;
static int fold_flag = 0;

/* x^e mod P for the CRC-32C polynomial, bit-reflected (bit 31-d holds the coefficient of x^d). */
static uint32_t xpow_mod_reflected(uint32_t e) {
  uint32_t r = 1; /* normal form: bit d holds x^d */
  for (uint32_t i = 0; i < e; i++) r = (r & 0x80000000u) ? (r << 1) ^ 0x1EDC6F41u : (r << 1);
  uint32_t o = 0;
  for (int d = 0; d < 32; d++)
    if ((r >> d) & 1u) o |= 1u << (31 - d);
  return o;
}

/* CRC register update over n >= 2 * FOLD_BYTES bytes of s, copying them to d unless d is NULL. */
__attribute__((target("avx512f,vpclmulqdq,sse4.2"))) static uint32_t fold_update(uint8_t *d, const uint8_t *s, size_t n, uint32_t c) {
  const __m512i k = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)fold_k_hi, (long long)fold_k_lo));
  __m512i a0 = _mm512_loadu_si512(s), a1 = _mm512_loadu_si512(s + 64), a2 = _mm512_loadu_si512(s + 128), a3 = _mm512_loadu_si512(s + 192);
  if (d) {
    _mm512_storeu_si512(d, a0);
    _mm512_storeu_si512(d + 64, a1);
    _mm512_storeu_si512(d + 128, a2);
    _mm512_storeu_si512(d + 192, a3);
  }
  a0 = _mm512_xor_si512(a0, _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)c)));
  size_t off = FOLD_BYTES;
  for (; off + FOLD_BYTES <= n; off += FOLD_BYTES) {
    const uint8_t *p = s + off;
    __m512i b0 = _mm512_loadu_si512(p), b1 = _mm512_loadu_si512(p + 64), b2 = _mm512_loadu_si512(p + 128), b3 = _mm512_loadu_si512(p + 192);
    if (d) {
      _mm512_storeu_si512(d + off, b0);
      _mm512_storeu_si512(d + off + 64, b1);
      _mm512_storeu_si512(d + off + 128, b2);
      _mm512_storeu_si512(d + off + 192, b3);
    }
    /* 0x96: a ^ b ^ c */
    a0 = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a0, k, 0x00), _mm512_clmulepi64_epi128(a0, k, 0x11), b0, 0x96);
    a1 = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a1, k, 0x00), _mm512_clmulepi64_epi128(a1, k, 0x11), b1, 0x96);
    a2 = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a2, k, 0x00), _mm512_clmulepi64_epi128(a2, k, 0x11), b2, 0x96);
    a3 = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a3, k, 0x00), _mm512_clmulepi64_epi128(a3, k, 0x11), b3, 0x96);
  }
  uint8_t lanes[FOLD_BYTES];
  _mm512_storeu_si512(lanes, a0);
  _mm512_storeu_si512(lanes + 64, a1);
  _mm512_storeu_si512(lanes + 128, a2);
  _mm512_storeu_si512(lanes + 192, a3);
  uint32_t r = update_hw(0, lanes, FOLD_BYTES);
  if (off < n) {
    if (d) memcpy(d + off, s + off, n - off);
    r = update_hw(r, s + off, n - off);
  }
  return r;
}

static int hw_flag = -1;
/* Runs when the library is loaded, so later calls share read-only tables and stay thread-safe. */
__attribute__((constructor)) static void kvx_init(void) {
  __builtin_cpu_init();
  hw_flag = __builtin_cpu_supports("sse4.2") ? 1 : 0;
  if (hw_flag) init_shift();
  if (hw_flag && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq")) {
    fold_k_lo = (uint64_t)xpow_mod_reflected(63 + 8 * FOLD_BYTES) << 32;
    fold_k_hi = (uint64_t)xpow_mod_reflected(8 * FOLD_BYTES - 1) << 32;
    fold_flag = 1;
  }
}
static int have_hw(void) { return hw_flag == 1; }
static int have_fold(void) { return fold_flag; }
#else
static int have_fold(void) { return 0; }
static uint32_t fold_update(uint8_t *d, const uint8_t *s, size_t n, uint32_t c) { (void)d; (void)s; (void)n; return c; }
static int have_hw(void) { return 0; }
static uint32_t update_hw(uint32_t c, const uint8_t *p, size_t n) { return update_table(c, p, n); }
static uint32_t copy_hw(uint8_t *d, const uint8_t *s, size_t n, uint32_t c) {
  memcpy(d, s, n);
  return update_table(c, d, n);
}
#endif

int kvx_abi_version(void) { return KVX_ABI_VERSION; }

/* 2 when large buffers are folded with VPCLMULQDQ, 1 when the crc32 instruction is used, 0 for the table. */
int kvx_crc32c_hardware(void) { return have_fold() ? 2 : have_hw(); }

uint32_t kvx_crc32c(uint32_t prev, const void *data, size_t n) {
  uint32_t c = ~prev;
  if (have_fold() && n >= 2 * FOLD_BYTES) c = fold_update(NULL, (const uint8_t *)data, n, c);
  else c = have_hw() ? update_hw(c, (const uint8_t *)data, n) : update_table(c, (const uint8_t *)data, n);
  return ~c;
}

uint32_t kvx_copy_crc32c(void *dst, const void *src, size_t n, uint32_t prev) {
  uint32_t c = ~prev;
  if (have_fold() && n >= 2 * FOLD_BYTES) {
    c = fold_update((uint8_t *)dst, (const uint8_t *)src, n, c);
  } else if (have_hw()) {
    c = copy_hw((uint8_t *)dst, (const uint8_t *)src, n, c);
  } else {
    memcpy(dst, src, n);
    c = update_table(c, (const uint8_t *)dst, n);
  }
  return ~c;
}

/* Compare-and-swap on a 4-byte aligned word: writes desired when *p == expected. Returns the value found. */
int32_t kvx_cas32(void *p, int32_t expected, int32_t desired) {
  __atomic_compare_exchange_n((int32_t *)p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;
}

void kvx_store32(void *p, int32_t v) { __atomic_store_n((int32_t *)p, v, __ATOMIC_SEQ_CST); }
