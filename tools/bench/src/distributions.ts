import { InvalidDistributionError } from "./errors.js";
import { standardNormal, type Random } from "./random.js";

/**
 * A distribution of positive integer lengths (tokens). Specs:
 * `N` or `fixed:N`; `uniform:MIN:MAX` (inclusive); `normal:MEAN:STD`; `lognormal:MEDIAN:SIGMA`.
 * Normal and lognormal draws are rounded and clamped to [1, `max`].
 */
export interface LengthDistribution {
  readonly spec: string;
  readonly mean: number;
  sample(rng: Random): number;
}

/** Upper bound for any drawn length, so a long tail cannot produce absurd requests. */
const MAX_LENGTH = 1_000_000;

function num(spec: string, s: string | undefined, what: string): number {
  const v = Number(s);
  if (s === undefined || s.trim() === "" || !Number.isFinite(v)) {
    throw new InvalidDistributionError(`"${spec}": ${what} must be a number, got ${s === undefined ? "nothing" : `"${s}"`}`);
  }
  return v;
}

const clamp = (v: number) => Math.min(MAX_LENGTH, Math.max(1, Math.round(v)));

export function parseLengthDistribution(spec: string): LengthDistribution {
  const parts = spec.trim().split(":");
  const kind = parts.length === 1 ? "fixed" : parts[0];
  const args = parts.length === 1 ? parts : parts.slice(1);
  const arity = (n: number) => {
    if (args.length !== n) throw new InvalidDistributionError(`"${spec}": ${kind} takes ${n} number(s)`);
  };
  switch (kind) {
    case "fixed": {
      arity(1);
      const n = num(spec, args[0], "the length");
      if (!Number.isInteger(n) || n < 1 || n > MAX_LENGTH) throw new InvalidDistributionError(`"${spec}": the length must be an integer in [1, ${MAX_LENGTH}]`);
      return { spec, mean: n, sample: () => n };
    }
    case "uniform": {
      arity(2);
      const lo = num(spec, args[0], "min");
      const hi = num(spec, args[1], "max");
      if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi < lo || hi > MAX_LENGTH) {
        throw new InvalidDistributionError(`"${spec}": need integers 1 <= min <= max <= ${MAX_LENGTH}`);
      }
      return { spec, mean: (lo + hi) / 2, sample: (rng) => lo + Math.floor(rng.next() * (hi - lo + 1)) };
    }
    case "normal": {
      arity(2);
      const mean = num(spec, args[0], "mean");
      const std = num(spec, args[1], "std");
      if (mean < 1 || std < 0) throw new InvalidDistributionError(`"${spec}": need mean >= 1 and std >= 0`);
      return { spec, mean, sample: (rng) => clamp(mean + std * standardNormal(rng)) };
    }
    case "lognormal": {
      arity(2);
      const median = num(spec, args[0], "median");
      const sigma = num(spec, args[1], "sigma");
      if (median < 1 || sigma < 0) throw new InvalidDistributionError(`"${spec}": need median >= 1 and sigma >= 0`);
      return { spec, mean: median * Math.exp((sigma * sigma) / 2), sample: (rng) => clamp(median * Math.exp(sigma * standardNormal(rng))) };
    }
    default:
      throw new InvalidDistributionError(`"${spec}": unknown distribution "${kind}" (fixed | uniform | normal | lognormal)`);
  }
}
