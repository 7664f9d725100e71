import { arrivalTimes, type ArrivalProcess } from "./arrivals.js";
import { sendStreamingRequest, type ClientOptions, type RequestRecord } from "./client.js";
import type { BenchRequest } from "./dataset.js";
import { InvalidOptionError } from "./errors.js";
import { silentProgress, type ProgressSink } from "./progress.js";
import { summarize, type RunSummary, type Slo } from "./stats.js";

export interface LoadRunOptions extends ClientOptions {
  requests: readonly BenchRequest[];
  /** Mean requests per second; Infinity sends everything at once (limited by maxConcurrency). */
  rate: number;
  /** [arrival="poisson"] */
  arrival?: ArrivalProcess;
  /** [seed=0] */
  seed?: number;
  /** [maxConcurrency=Infinity] Requests in flight at most; arrivals beyond it wait for a slot. */
  maxConcurrency?: number;
  /** [timeLimitS=120] No request is sent after this; requests still running then are aborted (failed). */
  timeLimitS?: number;
  slo?: Slo;
  progress?: ProgressSink;
  /** Label for progress lines. */
  label?: string;
  signal?: AbortSignal;
}

export interface LoadRunResult {
  rate: number;
  arrival: ArrivalProcess;
  maxConcurrency: number | null;
  summary: RunSummary;
  records: RequestRecord[];
  /** Server counters that changed during this run (see server-metrics.ts), when the caller read them. */
  serverMetrics?: Record<string, number>;
}

/**
 * Sends `requests` at the given arrival rate with at most `maxConcurrency` in flight, times each one, and
 * summarizes. Bounded: at most requests.length requests, and nothing runs past timeLimitS (+ the abort).
 */
export async function runLoad(opts: LoadRunOptions): Promise<LoadRunResult> {
  const { requests, rate, arrival = "poisson", seed = 0, maxConcurrency = Infinity, timeLimitS = 120 } = opts;
  const progress = opts.progress ?? silentProgress;
  if (!(maxConcurrency >= 1)) throw new InvalidOptionError(`maxConcurrency must be >= 1, got ${maxConcurrency}`);
  if (!(timeLimitS > 0)) throw new InvalidOptionError(`timeLimitS must be > 0, got ${timeLimitS}`);
  const times = rate === Infinity ? requests.map(() => 0) : arrivalTimes({ rate, count: requests.length, process: arrival, seed });

  const stop = new AbortController();
  const onOuterAbort = () => stop.abort();
  opts.signal?.addEventListener("abort", onOuterAbort, { once: true });
  const limitTimer = setTimeout(() => stop.abort(), timeLimitS * 1000);

  const runStart = performance.now();
  const records: RequestRecord[] = [];
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  const label = opts.label ?? `rate ${rate === Infinity ? "inf" : rate.toFixed(2)} req/s`;
  const tick = () =>
    progress.update(
      `${label}: ${sent}/${requests.length} sent, ${records.length} done (${records.filter((r) => !r.ok).length} failed), ` +
        `${inFlight.size} in flight, ${((performance.now() - runStart) / 1000).toFixed(1)} s`,
    );
  const ticker = setInterval(tick, 250);

  const stopped = aborted(stop.signal);
  try {
    for (let i = 0; i < requests.length && !stop.signal.aborted; i++) {
      // Node's timers may fire up to ~1 ms before performance.now() reaches the target: wait again until it does, so
      // no request leaves before its scheduled time (seen: 1.09 ms early on a busy VM).
      for (let wait = runStart + times[i] * 1000 - performance.now(); wait > 0 && !stop.signal.aborted; wait = runStart + times[i] * 1000 - performance.now()) {
        await sleep(wait, stop.signal);
      }
      while (inFlight.size >= maxConcurrency && !stop.signal.aborted) await Promise.race([...inFlight, stopped]);
      if (stop.signal.aborted) break;
      const p: Promise<void> = sendStreamingRequest(opts, requests[i], { index: i, scheduledAtMs: times[i] * 1000, runStart }, stop.signal).then((r) => {
        records.push(r);
        inFlight.delete(p);
      });
      inFlight.add(p);
      sent++;
    }
    // In-flight requests end by completing, failing, or the time-limit abort: this wait is bounded.
    await Promise.all(inFlight);
  } finally {
    clearInterval(ticker);
    clearTimeout(limitTimer);
    opts.signal?.removeEventListener("abort", onOuterAbort);
  }
  records.sort((a, b) => a.index - b.index);
  const summary = summarize(records, { notSent: requests.length - sent, slo: opts.slo });
  progress.done(
    `${label}: ${summary.completed}/${requests.length} ok, ${summary.failed} failed, ${summary.notSent} not sent; ` +
      `TTFT p50 ${fmt(summary.ttftMs.p50)} ms, TPOT p50 ${fmt(summary.tpotMs.p50)} ms` +
      (summary.sloAttainment !== undefined ? `, SLO met ${(summary.sloAttainment * 100).toFixed(0)}%` : ""),
  );
  return { rate, arrival, maxConcurrency: maxConcurrency === Infinity ? null : maxConcurrency, summary, records };
}

const fmt = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(1));

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** Resolves on abort (one listener per run). */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}
