import { InvalidOptionError } from "./errors.js";
import { createRandom, exponential } from "./random.js";

/** How requests arrive: a Poisson process (exponential gaps) or evenly spaced at a fixed rate. */
export type ArrivalProcess = "poisson" | "fixed";

export interface ArrivalOptions {
  /** Mean requests per second; must be > 0 and finite. */
  rate: number;
  /** Number of arrivals to schedule. */
  count: number;
  /** [process="poisson"] */
  process?: ArrivalProcess;
  /** [seed=0] seeds the Poisson gaps. */
  seed?: number;
}

/**
 * Arrival times in seconds from the start of the run, ascending; the first request is sent at 0.
 * Fixed rate: i / rate. Poisson: cumulative exponential gaps of mean 1 / rate.
 */
export function arrivalTimes({ rate, count, process = "poisson", seed = 0 }: ArrivalOptions): number[] {
  if (!(rate > 0) || !Number.isFinite(rate)) throw new InvalidOptionError(`rate must be a positive finite number, got ${rate}`);
  if (!Number.isInteger(count) || count < 0) throw new InvalidOptionError(`count must be a non-negative integer, got ${count}`);
  const times: number[] = [];
  if (process === "fixed") {
    for (let i = 0; i < count; i++) times.push(i / rate);
    return times;
  }
  if (process !== "poisson") throw new InvalidOptionError(`unknown arrival process "${process}" (poisson | fixed)`);
  const rng = createRandom(seed);
  let t = 0;
  for (let i = 0; i < count; i++) {
    times.push(t);
    t += exponential(rng, rate);
  }
  return times;
}
