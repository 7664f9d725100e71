import type { RequestRecord } from "./client.js";

/**
 * The p-th percentile (0..100) with linear interpolation between closest ranks (numpy's default):
 * rank = p/100 * (n - 1). Returns undefined for an empty list. The input need not be sorted.
 */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be in [0, 100], got ${p}`);
  const s = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return s[lo] + (s[hi] - s[lo]) * (rank - lo);
}

export interface Distribution {
  count: number;
  mean?: number;
  p50?: number;
  p90?: number;
  p99?: number;
  max?: number;
}

export function describe(values: readonly number[]): Distribution {
  if (values.length === 0) return { count: 0 };
  let sum = 0;
  let max = -Infinity;
  for (const v of values) {
    sum += v;
    if (v > max) max = v;
  }
  return { count: values.length, mean: sum / values.length, p50: percentile(values, 50), p90: percentile(values, 90), p99: percentile(values, 99), max };
}

/** Latency limits of a service-level objective, in milliseconds (DistServe's TTFT and TPOT SLOs). */
export interface Slo {
  ttftMs: number;
  tpotMs: number;
}

/**
 * Whether a request met the SLO: it completed, its TTFT <= limit, and its TPOT <= limit
 * (a one-token answer has no TPOT and meets that half).
 */
export function meetsSlo(r: RequestRecord, slo: Slo): boolean {
  return r.ok && r.ttftMs !== undefined && r.ttftMs <= slo.ttftMs && (r.tpotMs === undefined || r.tpotMs <= slo.tpotMs);
}

export interface RunSummary {
  /** Requests sent (completed, failed, or aborted at the run's time limit). */
  sent: number;
  completed: number;
  failed: number;
  /** Requests the time limit kept from being sent at all. */
  notSent: number;
  /** From the first send to the last completion, seconds. */
  durationS: number;
  /** Completed requests per second over durationS. */
  requestThroughput: number;
  /** Output tokens of completed requests per second. */
  outputTokenThroughput: number;
  /** Prompt + output tokens of completed requests per second (prompt tokens from usage, when sent). */
  totalTokenThroughput: number;
  meanPromptTokens?: number;
  meanOutputTokens?: number;
  ttftMs: Distribution;
  tpotMs: Distribution;
  itlMs: Distribution;
  e2eMs: Distribution;
  /** Fraction of sent requests meeting the SLO (failures count as misses). */
  sloAttainment?: number;
  /** Completed requests meeting the SLO per second. */
  goodRequestThroughput?: number;
  /** A few distinct error texts, for the report. */
  errors: string[];
}

export function summarize(records: readonly RequestRecord[], opts: { notSent?: number; slo?: Slo } = {}): RunSummary {
  const ok = records.filter((r) => r.ok);
  let first = Infinity;
  let lastEnd = -Infinity;
  for (const r of records) {
    first = Math.min(first, r.sentAtMs);
    lastEnd = Math.max(lastEnd, r.sentAtMs + r.e2eMs);
  }
  const durationS = records.length === 0 ? 0 : (lastEnd - first) / 1000;
  const per = (n: number) => (durationS > 0 ? n / durationS : 0);
  const outTokens = ok.reduce((n, r) => n + r.outputTokens, 0);
  const withPrompt = ok.filter((r) => r.promptTokens !== undefined);
  const promptTokens = withPrompt.reduce((n, r) => n + (r.promptTokens ?? 0), 0);
  const good = opts.slo ? records.filter((r) => meetsSlo(r, opts.slo!)).length : undefined;
  return {
    sent: records.length,
    completed: ok.length,
    failed: records.length - ok.length,
    notSent: opts.notSent ?? 0,
    durationS,
    requestThroughput: per(ok.length),
    outputTokenThroughput: per(outTokens),
    totalTokenThroughput: per(outTokens + promptTokens),
    meanPromptTokens: withPrompt.length ? promptTokens / withPrompt.length : undefined,
    meanOutputTokens: ok.length ? outTokens / ok.length : undefined,
    ttftMs: describe(ok.map((r) => r.ttftMs!).filter((v) => v !== undefined)),
    tpotMs: describe(ok.map((r) => r.tpotMs).filter((v): v is number => v !== undefined)),
    itlMs: describe(ok.flatMap((r) => r.itlMs)),
    e2eMs: describe(ok.map((r) => r.e2eMs)),
    sloAttainment: good === undefined ? undefined : records.length ? good / records.length : 0,
    goodRequestThroughput: good === undefined ? undefined : per(good),
    errors: [...new Set(records.filter((r) => !r.ok).map((r) => r.error ?? "unknown"))].slice(0, 5),
  };
}
