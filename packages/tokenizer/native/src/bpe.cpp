// trtd_bpe: tiktoken-compatible byte-pair encoding. A hand-written scanner per split pattern (trtd_bpe.h lists
// them with their regex) cuts UTF-8 text into pieces exactly where tiktoken's regex does; each piece is looked up
// whole, else merged pair by pair, lowest rank first and leftmost on ties, as tiktoken's byte_pair_merge does.
#include "trtd_bpe.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <queue>
#include <vector>

#include "unicode_tables.h"

namespace {

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();

// ---- character classes ----------------------------------------------------------------------------------------

enum Cls : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

// Two-level table over all code points: block index per 256 code points, then one class byte per code point.
struct ClassTable {
  std::vector<uint16_t> block_of;  // 0x1100 entries
  std::vector<uint8_t> blocks;     // 256 bytes per distinct block
  // Contraction letters ('s','t',...) by code point: ASCII in a table, the rest (U+017F) in a short list.
  char ascii_fold[128];
  std::vector<std::pair<uint32_t, char>> wide_folds;

  ClassTable() {
    std::vector<uint8_t> all(0x110000, kOther);
    auto fill = [&](const uint32_t (*r)[2], size_t n, Cls c) {
      for (size_t i = 0; i < n; i++)
        for (uint32_t cp = r[i][0]; cp <= r[i][1]; cp++) all[cp] = c;
    };
    namespace t = trtd_bpe_tables;
    fill(t::kLetter, t::kLetterCount, Cls::kLetter);
    fill(t::kNumber, t::kNumberCount, Cls::kNumber);
    fill(t::kWhiteSpace, t::kWhiteSpaceCount, Cls::kSpace);
    block_of.resize(0x1100);
    for (uint32_t b = 0; b < 0x1100; b++) {
      const uint8_t *src = &all[b * 256];
      size_t found = blocks.size() / 256;
      for (size_t k = 0; k < blocks.size() / 256; k++) {
        if (std::memcmp(&blocks[k * 256], src, 256) == 0) {
          found = k;
          break;
        }
      }
      if (found == blocks.size() / 256) blocks.insert(blocks.end(), src, src + 256);
      block_of[b] = static_cast<uint16_t>(found);
    }
    std::memset(ascii_fold, 0, sizeof ascii_fold);
    for (const t::Fold &f : t::kContractionFolds) {
      for (uint32_t cp : f.code_points) {
        if (cp == 0) break;
        if (cp < 128)
          ascii_fold[cp] = f.letter;
        else
          wide_folds.emplace_back(cp, f.letter);
      }
    }
  }

  uint8_t cls(uint32_t cp) const {
    if (cp >= 0x110000) return kOther;
    return blocks[static_cast<size_t>(block_of[cp >> 8]) * 256 + (cp & 0xff)];
  }
  char fold(uint32_t cp) const {
    if (cp < 128) return ascii_fold[cp];
    for (const auto &w : wide_folds)
      if (w.first == cp) return w.second;
    return 0;
  }
};

const ClassTable &classes() {
  static const ClassTable table;
  return table;
}

// One decoded character: code point (0xFFFFFFFF for a byte that starts no valid UTF-8 sequence), byte length,
// class.
struct Ch {
  uint32_t cp;
  uint32_t len;
  uint8_t cls;
};

// The scanner over one stretch of text [0, end).
class Scanner {
 public:
  Scanner(const uint8_t *s, size_t end, const ClassTable &t) : s_(s), end_(end), t_(t) {}

  Ch at(size_t p) const {
    uint8_t b = s_[p];
    if (b < 0x80) return {b, 1, t_.blocks[b]};  // block 0 is the first 256 code points
    uint32_t cp;
    uint32_t n;
    if (b >= 0xc2 && b <= 0xdf) {
      cp = b & 0x1f;
      n = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
      cp = b & 0x0f;
      n = 3;
    } else if (b >= 0xf0 && b <= 0xf4) {
      cp = b & 0x07;
      n = 4;
    } else {
      return {0xffffffffu, 1, kOther};
    }
    if (p + n > end_) return {0xffffffffu, 1, kOther};
    for (uint32_t i = 1; i < n; i++) {
      uint8_t c = s_[p + i];
      if ((c & 0xc0) != 0x80) return {0xffffffffu, 1, kOther};
      cp = (cp << 6) | (c & 0x3f);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are invalid.
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
      return {0xffffffffu, 1, kOther};
    return {cp, n, t_.cls(cp)};
  }

  // End of the run of characters of class `c` starting at p.
  size_t run(size_t p, uint8_t c) const {
    while (p < end_) {
      uint8_t b = s_[p];
      if (b < 0x80) {
        if (t_.blocks[b] != c) break;
        p++;
        continue;
      }
      Ch ch = at(p);
      if (ch.cls != c) break;
      p += ch.len;
    }
    return p;
  }

  size_t crlf_run(size_t p) const {
    while (p < end_ && (s_[p] == '\r' || s_[p] == '\n')) p++;
    return p;
  }

  // Contractions starting at p (s_[p] == '\''); returns the end, or 0 when none matches.
  size_t contraction(size_t p, bool fold) const {
    if (p + 1 >= end_) return 0;
    Ch c1 = at(p + 1);
    char l1 = fold ? t_.fold(c1.cp) : (c1.cp < 128 ? static_cast<char>(c1.cp) : 0);
    if (l1 == 's' || l1 == 't' || l1 == 'm' || l1 == 'd') return p + 1 + c1.len;
    if (l1 != 'r' && l1 != 'v' && l1 != 'l') return 0;
    size_t q = p + 1 + c1.len;
    if (q >= end_) return 0;
    Ch c2 = at(q);
    char l2 = fold ? t_.fold(c2.cp) : (c2.cp < 128 ? static_cast<char>(c2.cp) : 0);
    if ((l1 == 'r' || l1 == 'v') ? l2 == 'e' : l2 == 'l') return q + c2.len;
    return 0;
  }

  // \s+(?!\S)|\s+ from p, where s_[p] is whitespace; with `crlf_alt` first \s*[\r\n]+ (cl100k).
  size_t spaces(size_t p, bool crlf_alt) const {
    size_t q = p;
    size_t last_start = p;
    size_t after_crlf = 0;
    size_t count = 0;
    while (q < end_) {
      Ch ch = at(q);
      if (ch.cls != kSpace) break;
      if (ch.cp == '\r' || ch.cp == '\n') after_crlf = q + 1;
      last_start = q;
      q += ch.len;
      count++;
    }
    if (crlf_alt && after_crlf != 0) return after_crlf;  // \s*[\r\n]+: up to the last CR/LF of the run
    if (q == end_) return q;                             // \s+(?!\S) at the end of the text
    if (count >= 2) return last_start;                   // \s+(?!\S): all but the last whitespace character
    return q;                                            // \s+
  }

  // cl100k: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
  //         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  size_t next_cl100k(size_t p, int max_digits) const {
    Ch c0 = at(p);
    if (c0.cp == '\'') {
      size_t e = contraction(p, true);
      if (e) return e;
    }
    size_t p1 = p + c0.len;
    if (c0.cls == kLetter) return run(p1, kLetter);
    if (c0.cls == kNumber) {
      size_t q = p1;
      for (int i = 1; i < max_digits && q < end_; i++) {
        Ch c = at(q);
        if (c.cls != kNumber) break;
        q += c.len;
      }
      return q;
    }
    // c0 is other or whitespace
    Ch c1{0, 0, kOther};
    bool has1 = p1 < end_;
    if (has1) c1 = at(p1);
    if (has1 && c1.cls == kLetter && c0.cp != '\r' && c0.cp != '\n') return run(p1 + c1.len, kLetter);
    if (c0.cls == kOther) return crlf_run(run(p1, kOther));
    if (c0.cp == ' ' && has1 && c1.cls == kOther) return crlf_run(run(p1 + c1.len, kOther));
    return spaces(p, true);
  }

  // gpt2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  size_t next_gpt2(size_t p) const {
    Ch c0 = at(p);
    if (c0.cp == '\'') {
      size_t e = contraction(p, false);
      if (e) return e;
    }
    size_t p1 = p + c0.len;
    if (c0.cls != kSpace) return run(p1, c0.cls);
    if (c0.cp == ' ' && p1 < end_) {
      Ch c1 = at(p1);
      if (c1.cls != kSpace) return run(p1 + c1.len, c1.cls);
    }
    return spaces(p, false);
  }

 private:
  const uint8_t *s_;
  size_t end_;
  const ClassTable &t_;
};

// ---- rank lookup ----------------------------------------------------------------------------------------------

inline uint64_t load_tail(const uint8_t *s, size_t n) {  // n < 8
  uint64_t v = 0;
  std::memcpy(&v, s, n);
  return v;
}

inline uint64_t hash_bytes(const uint8_t *s, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, s, 8);
    h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    s += 8;
    n -= 8;
  }
  if (n) h = (h ^ load_tail(s, n)) * 0x94d049bb133111ebull;
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h;
}

class RankMap {
 public:
  bool init(size_t count) {
    size_t cap = 16;
    while (cap < count * 2) cap <<= 1;
    slots_.assign(cap, Slot{0, 0, 0, kNoRank});
    mask_ = cap - 1;
    return true;
  }

  // false when the bytes are already present
  bool insert(const uint8_t *s, uint32_t n, uint32_t rank) {
    uint64_t h = hash_bytes(s, n);
    uint32_t tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot &sl = slots_[i];
      if (sl.len == 0) {
        sl.tag = tag;
        sl.len = n;
        sl.off = static_cast<uint32_t>(arena_.size());
        sl.rank = rank;
        arena_.insert(arena_.end(), s, s + n);
        return true;
      }
      if (sl.tag == tag && sl.len == n && std::memcmp(&arena_[sl.off], s, n) == 0) return false;
    }
  }

  uint32_t find(const uint8_t *s, size_t n) const {
    uint64_t h = hash_bytes(s, n);
    uint32_t tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot &sl = slots_[i];
      if (sl.len == 0) return kNoRank;
      if (sl.tag == tag && sl.len == n && std::memcmp(&arena_[sl.off], s, n) == 0) return sl.rank;
    }
  }

  size_t arena_bytes() const { return arena_.size(); }

 private:
  struct Slot {
    uint32_t tag;
    uint32_t len;  // 0 = empty (tokens are never empty)
    uint32_t off;
    uint32_t rank;
  };
  std::vector<Slot> slots_;
  std::vector<uint8_t> arena_;
  size_t mask_ = 0;
};

// ---- ranks text ---------------------------------------------------------------------------------------------

int b64_value(uint8_t c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with padding; false on anything else.
bool b64_decode(const char *s, size_t n, std::vector<uint8_t> &out) {
  out.clear();
  if (n == 0 || n % 4 != 0) return false;
  for (size_t i = 0; i < n; i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      uint8_t c = static_cast<uint8_t>(s[i + k]);
      if (c == '=' && i + 4 == n && k >= 2) {
        v[k] = 0;
        pad++;
      } else {
        if (pad) return false;  // data after padding
        v[k] = b64_value(c);
        if (v[k] < 0) return false;
      }
    }
    uint32_t w = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out.push_back(static_cast<uint8_t>(w >> 16));
    if (pad < 2) out.push_back(static_cast<uint8_t>(w >> 8));
    if (pad < 1) out.push_back(static_cast<uint8_t>(w));
  }
  return true;
}

bool parse_uint(const char *s, size_t n, uint64_t max, uint64_t &out) {
  if (n == 0 || n > 10) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(s[i] - '0');
  }
  if (v > max) return false;
  out = v;
  return true;
}

}  // namespace

struct trtd_bpe {
  RankMap map;
  uint32_t byte_rank[256];
  int32_t pattern = 0;
  int64_t count = 0;
  const ClassTable *classes = nullptr;

  bool load(const char *text, size_t len) {
    // Count tokens first (an upper bound: lines or spaces) to size the table once.
    size_t estimate = 1;
    for (size_t i = 0; i < len; i++)
      if (text[i] == '\n' || text[i] == ' ') estimate++;
    map.init(estimate);
    for (uint32_t &r : byte_rank) r = kNoRank;
    std::vector<uint8_t> bytes;
    bool compact = len > 0 && text[0] == '!';
    size_t p = 0;
    while (p < len) {
      size_t e = p;
      while (e < len && text[e] != '\n') e++;
      size_t line_end = e;
      if (line_end > p && text[line_end - 1] == '\r') line_end--;
      if (line_end > p) {
        // split the line on single spaces
        std::vector<std::pair<size_t, size_t>> fields;
        size_t f = p;
        for (size_t i = p; i <= line_end; i++) {
          if (i == line_end || text[i] == ' ') {
            fields.emplace_back(f, i - f);
            f = i + 1;
          }
        }
        if (compact) {
          uint64_t first;
          if (fields.size() < 2 || fields[0].second != 1 || text[fields[0].first] != '!') return false;
          if (!parse_uint(text + fields[1].first, fields[1].second, 0xfffffffeull, first)) return false;
          for (size_t k = 2; k < fields.size(); k++) {
            uint64_t rank = first + (k - 2);
            if (rank >= kNoRank) return false;
            if (!add(text + fields[k].first, fields[k].second, static_cast<uint32_t>(rank), bytes)) return false;
          }
        } else {
          uint64_t rank;
          if (fields.size() != 2) return false;
          if (!parse_uint(text + fields[1].first, fields[1].second, 0xfffffffeull, rank)) return false;
          if (!add(text + fields[0].first, fields[0].second, static_cast<uint32_t>(rank), bytes)) return false;
        }
      }
      p = e + 1;
    }
    for (uint32_t r : byte_rank)
      if (r == kNoRank) return false;
    return true;
  }

  bool add(const char *b64, size_t n, uint32_t rank, std::vector<uint8_t> &bytes) {
    if (!b64_decode(b64, n, bytes) || bytes.empty() || bytes.size() > 0xffff) return false;
    if (!map.insert(bytes.data(), static_cast<uint32_t>(bytes.size()), rank)) return false;
    if (bytes.size() == 1) byte_rank[bytes[0]] = rank;
    count++;
    return true;
  }
};

namespace {

// Writes ids while there is room; counts all.
struct Out {
  uint32_t *ids;
  uint64_t cap;
  uint64_t n = 0;
  void push(uint32_t id) {
    if (n < cap) ids[n] = id;
    n++;
  }
};

constexpr size_t kSmallPiece = 128;

// tiktoken's merge loop on a short piece: boundaries in an array, a linear scan for the lowest pair rank.
void merge_small(const trtd_bpe &b, const uint8_t *s, size_t n, Out &out) {
  uint32_t pos[kSmallPiece + 1];
  uint32_t pair[kSmallPiece + 1];  // rank of the part at i merged with the next one
  uint32_t tok[kSmallPiece + 1];   // rank of the part at i
  size_t m = n;                    // number of parts
  for (size_t i = 0; i < n; i++) {
    pos[i] = static_cast<uint32_t>(i);
    tok[i] = b.byte_rank[s[i]];
    pair[i] = i + 1 < n ? b.map.find(s + i, 2) : kNoRank;
  }
  pos[n] = static_cast<uint32_t>(n);
  for (;;) {
    uint32_t best = kNoRank;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < m; i++) {
      if (pair[i] < best) {
        best = pair[i];
        bi = i;
      }
    }
    if (best == kNoRank) break;
    tok[bi] = best;
    // drop part bi+1
    std::memmove(&pos[bi + 1], &pos[bi + 2], (m - bi - 1) * sizeof pos[0]);  // includes pos[m] (the end)
    std::memmove(&tok[bi + 1], &tok[bi + 2], (m - bi - 2) * sizeof tok[0]);
    std::memmove(&pair[bi + 1], &pair[bi + 2], (m - bi - 2) * sizeof pair[0]);
    m--;
    pair[bi] = bi + 1 < m ? b.map.find(s + pos[bi], pos[bi + 2] - pos[bi]) : kNoRank;
    if (bi > 0) pair[bi - 1] = b.map.find(s + pos[bi - 1], pos[bi + 1] - pos[bi - 1]);
  }
  for (size_t i = 0; i < m; i++) out.push(tok[i]);
}

// The same choices on a long piece in O(n log n): a linked list of parts and a min-heap of (pair rank, start),
// whose order (lowest rank, then leftmost) is the linear scan's.
void merge_large(const trtd_bpe &b, const uint8_t *s, size_t n, Out &out) {
  std::vector<uint32_t> start(n + 1), next(n + 1), prev(n + 1), tok(n), pair(n), ver(n, 0);
  struct Entry {
    uint32_t rank;
    uint32_t start;  // the part's index, which is its first byte
    uint32_t ver;
    bool operator>(const Entry &o) const { return rank != o.rank ? rank > o.rank : start > o.start; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (size_t i = 0; i < n; i++) {
    start[i] = static_cast<uint32_t>(i);
    next[i] = static_cast<uint32_t>(i + 1);
    prev[i] = i == 0 ? kNoRank : static_cast<uint32_t>(i - 1);
    tok[i] = b.byte_rank[s[i]];
    pair[i] = i + 1 < n ? b.map.find(s + i, 2) : kNoRank;
    if (pair[i] != kNoRank) heap.push({pair[i], static_cast<uint32_t>(i), 0});
  }
  // Part i spans [i, next[i]); next[i] == n marks the last part.
  auto pair_rank = [&](uint32_t i) -> uint32_t {
    uint32_t j = next[i];
    if (j >= n) return kNoRank;
    uint32_t k = next[j];
    return b.map.find(s + i, k - i);
  };
  while (!heap.empty()) {
    Entry e = heap.top();
    heap.pop();
    uint32_t i = e.start;
    if (e.ver != ver[i] || pair[i] != e.rank) continue;  // stale
    uint32_t j = next[i];
    tok[i] = e.rank;
    next[i] = next[j];
    if (next[j] < n) prev[next[j]] = i;
    ver[j] = kNoRank;  // j is gone
    pair[j] = kNoRank;
    pair[i] = pair_rank(i);
    ver[i]++;
    if (pair[i] != kNoRank) heap.push({pair[i], i, ver[i]});
    uint32_t h = prev[i];
    if (h != kNoRank) {
      pair[h] = pair_rank(h);
      ver[h]++;
      if (pair[h] != kNoRank) heap.push({pair[h], h, ver[h]});
    }
  }
  for (uint32_t i = 0; i < n; i = next[i]) out.push(tok[i]);
}

void encode_piece(const trtd_bpe &b, const uint8_t *s, size_t n, Out &out) {
  if (n == 1) {
    out.push(b.byte_rank[s[0]]);
    return;
  }
  uint32_t whole = b.map.find(s, n);
  if (whole != kNoRank) {
    out.push(whole);
    return;
  }
  if (n <= kSmallPiece)
    merge_small(b, s, n, out);
  else
    merge_large(b, s, n, out);
}

}  // namespace

extern "C" {

int32_t trtd_bpe_abi_version(void) { return TRTD_BPE_ABI_VERSION; }

trtd_bpe *trtd_bpe_create(const char *ranks_text, uint64_t ranks_len, trtd_bpe_pattern pattern) {
  if (!ranks_text || ranks_len == 0) return nullptr;
  if (pattern != TRTD_BPE_PATTERN_CL100K && pattern != TRTD_BPE_PATTERN_CL100K_SINGLE_DIGITS &&
      pattern != TRTD_BPE_PATTERN_GPT2)
    return nullptr;
  std::unique_ptr<trtd_bpe> b(new (std::nothrow) trtd_bpe());
  if (!b) return nullptr;
  try {
    if (!b->load(ranks_text, ranks_len)) return nullptr;
    b->classes = &classes();
  } catch (...) {  // std::bad_alloc
    return nullptr;
  }
  b->pattern = pattern;
  return b.release();
}

void trtd_bpe_free(trtd_bpe *bpe) { delete bpe; }

int64_t trtd_bpe_rank_count(const trtd_bpe *bpe) { return bpe ? bpe->count : -1; }

int64_t trtd_bpe_encode(const trtd_bpe *bpe, const uint8_t *text, uint64_t len, uint32_t *ids_out,
                        uint64_t capacity) {
  if (!bpe || (!text && len) || (!ids_out && capacity)) return std::numeric_limits<int64_t>::min();
  Out out{ids_out, capacity};
  Scanner sc(text, len, *bpe->classes);
  size_t p = 0;
  try {
    while (p < len) {
      size_t q;
      switch (bpe->pattern) {
        case TRTD_BPE_PATTERN_CL100K: q = sc.next_cl100k(p, 3); break;
        case TRTD_BPE_PATTERN_CL100K_SINGLE_DIGITS: q = sc.next_cl100k(p, 1); break;
        default: q = sc.next_gpt2(p); break;
      }
      encode_piece(*bpe, text + p, q - p, out);
      p = q;
    }
  } catch (...) {  // std::bad_alloc in merge_large
    return std::numeric_limits<int64_t>::min();
  }
  return out.n <= capacity ? static_cast<int64_t>(out.n) : -static_cast<int64_t>(out.n);
}

}  // extern "C"
