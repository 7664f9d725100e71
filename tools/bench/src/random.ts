/** A seeded pseudo-random source (mulberry32): reproducible arrivals and datasets for a given seed. */
export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
}

export function createRandom(seed: number): Random {
  let a = seed >>> 0;
  return {
    next() {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}

/** Exponentially distributed with the given rate (mean 1/rate). */
export function exponential(rng: Random, rate: number): number {
  // 1 - u is in (0, 1], so the log is finite.
  return -Math.log(1 - rng.next()) / rate;
}

/** Standard normal by Box-Muller. */
export function standardNormal(rng: Random): number {
  const u1 = 1 - rng.next();
  const u2 = rng.next();
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}
