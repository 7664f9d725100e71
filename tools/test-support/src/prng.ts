// Seeded pseudo-random sources for tests and benches, so the same seed gives the same cases on every machine:
// mulberry32 for numbers (fuzzed bodies, random text), pseudoTokens for token-id prompts.

/** Uniform numbers in [0, 1) from a 32-bit seed (mulberry32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * n token ids in [0, vocab), a fixed pseudo-random sequence per salt: a 32-bit integer hash chain (multiply-xorshift,
 * all mod 2^32), so a prompt is named by (n, salt) alone. The default vocab stays below the ids cl100k leaves unused
 * (100256 on), so every id is a token of models/tiny. tools/reference/host_tier_fixture.py recomputes it in Python.
 */
export function pseudoTokens(n: number, salt: number, vocab = 100_000): number[] {
  const out: number[] = [];
  let x = (salt * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x ^ (x >>> 15), 2246822519) + 374761393) >>> 0;
    out.push(x % vocab);
  }
  return out;
}
