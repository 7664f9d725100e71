import { computeGoodput, type Goodput } from "./goodput.js";
import { runLoad, type LoadRunOptions, type LoadRunResult } from "./load-run.js";
import { InvalidOptionError } from "./errors.js";
import type { Slo } from "./stats.js";

export interface SweepOptions extends Omit<LoadRunOptions, "rate" | "slo"> {
  /** Request rates to run, each with the same requests (same seed). */
  rates: readonly number[];
  slo: Slo;
  /** [target=0.9] Fraction of requests that must meet the SLO. */
  target?: number;
  /** [pauseMs=500] Idle time between rates so one rate's tail does not load the next. */
  pauseMs?: number;
  /** Awaited before the first rate and after each one (e.g. to read server counters); bounded by the caller. */
  beforeFirst?: () => Promise<void> | void;
  onPoint?: (point: LoadRunResult) => Promise<void> | void;
}

export interface SweepResult {
  slo: Slo;
  points: LoadRunResult[];
  goodput: Goodput;
}

/** Runs the workload at each rate in ascending order and computes goodput from the SLO attainment. */
export async function runSweep(opts: SweepOptions): Promise<SweepResult> {
  const rates = [...opts.rates].sort((a, b) => a - b);
  if (rates.length === 0) throw new InvalidOptionError("a sweep needs at least one rate");
  const points: LoadRunResult[] = [];
  await opts.beforeFirst?.();
  for (const rate of rates) {
    if (opts.signal?.aborted) break;
    const point = await runLoad({ ...opts, rate });
    points.push(point);
    await opts.onPoint?.(point);
    if (opts.pauseMs !== 0) await new Promise((r) => setTimeout(r, opts.pauseMs ?? 500));
  }
  const goodput = computeGoodput(
    points.map((p) => ({ rate: p.rate, attainment: p.summary.sloAttainment ?? 0 })),
    opts.target ?? 0.9,
  );
  return { slo: opts.slo, points, goodput };
}
