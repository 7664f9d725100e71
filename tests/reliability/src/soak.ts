// Soak: many short requests through the api with bounded concurrency against a real deployment (nats-server, the
// api, one prefill and one decode worker on the tiny model), sampling the RSS of the api and of each worker as it
// goes. After a warm-up, memory must be flat: the growth is reported (MB and % per 10k requests, a least-squares
// slope over the samples after warm-up) and plotted (an SVG, @trtd/bench's dependency-free line chart). Every
// request ends completed, with a clear error, or hung (no answer within its deadline); at the end every worker's
// executor must be idle (no KV block used, nothing pinned). The api and the workers get the V8 heap bounds the
// launcher gives them (--api-heap-mb, --worker-heap-mb) unless told otherwise. Used by `nx run reliability:soak`
// (src/soak-cli.ts) and, shorter, by test/soak.test.ts.
import { readFileSync } from "node:fs";
import { lineChart } from "@trtd/bench";
import { DEFAULT_API_HEAP_MB, DEFAULT_WORKER_HEAP_MB, heapNodeArgs } from "@trtd/launcher";
import { apiArgs, eventually, startApp, startNats, stopAll, waitForWorkers, workerArgs, workerGauges, workersIdle, type AppProcess } from "../test/support/processes.js";

export interface SoakOptions {
  /** Requests to send in all. */
  requests: number;
  /** Requests in flight at once [8]. */
  concurrency?: number;
  /** Tokens per request [4]. */
  maxTokens?: number;
  /** Requests before the baseline RSS is taken [max(500, 10 % of requests)]. */
  warmupRequests?: number;
  /** RSS samples in all (spread evenly over the run) [200]. */
  samples?: number;
  /** Each request's deadline: past it the request counts as hung and is aborted [30 s]. */
  requestTimeoutMs?: number;
  /** Bound on the whole load phase; requests not sent by then are reported as not sent [1 h]. */
  timeLimitMs?: number;
  /** The api's V8 old-space bound, MB, as the launcher's --api-heap-mb (0 = V8's default) [the launcher's default]. */
  apiHeapMb?: number;
  /** The same for the workers (--worker-heap-mb) [the launcher's default]. */
  workerHeapMb?: number;
  /** Progress lines (a line per 10 % sent). */
  log?: (line: string) => void;
}

export interface RssSample {
  /** Requests finished when the sample was taken. */
  requests: number;
  /** MB (10^6 bytes) by process. */
  rssMb: Record<string, number>;
}

export interface ProcessGrowth {
  /** RSS when warm-up ended (median of the 5 samples around it), MB. */
  baselineMb: number;
  /** RSS at the end (median of the last 5 samples), MB. */
  endMb: number;
  /** endMb - baselineMb. */
  growthMb: number;
  /** Least-squares slope of RSS over the samples after warm-up, MB per 10k requests. */
  slopeMbPer10k: number;
  /** slopeMbPer10k as a % of baselineMb. */
  slopePctPer10k: number;
  maxMb: number;
}

export interface SoakResult {
  requests: number;
  sent: number;
  completed: number;
  /** Ended with an HTTP error or an SSE error event, by `code`. */
  failed: Record<string, number>;
  /** No end within requestTimeoutMs. */
  hung: number;
  /** Worker gauges that were not zero at the end (KV blocks used, pinned exports, active or queued requests). */
  leaked: Array<{ name: string; instance: string; value: number }>;
  warmupRequests: number;
  samples: RssSample[];
  growth: Record<string, ProcessGrowth>;
  /** The same over the second half of the run only (whether memory still grows once warm-up effects are long past). */
  growthLastHalf: Record<string, ProcessGrowth>;
  wallMs: number;
  requestsPerSecond: number;
  disaggregated: number;
  /** The V8 old-space bounds the processes ran with, MB (0 = V8's default). */
  apiHeapMb: number;
  workerHeapMb: number;
}

/** Environment that bounds a child's V8 old space as the launcher does (there through node's argv; the same V8 flag). */
function heapEnv(heapMb: number): NodeJS.ProcessEnv {
  const args = heapNodeArgs(heapMb);
  return args.length ? { NODE_OPTIONS: [process.env.NODE_OPTIONS, ...args].filter(Boolean).join(" ") } : {};
}

const TOPICS = ["the sea", "a red fox", "winter", "old clocks", "the moon", "rivers", "a lighthouse", "bread", "trains", "owls"];

/** Request i: short and long prompts (long ones go disaggregated), streamed and not, greedy and seeded. */
function body(i: number, maxTokens: number): Record<string, unknown> {
  const long = i % 2 === 1;
  const prompt = `Tell me about ${TOPICS[i % TOPICS.length]} (${i}).${long ? " It was a long day and the story went on.".repeat(6) : ""}`;
  return { model: "tiny", prompt, max_tokens: maxTokens, stream: i % 3 === 0, ...(i % 4 === 0 ? { temperature: 0.8, seed: i } : { temperature: 0 }) };
}

/** How one request ended: completed; failed with the error's code and message (HTTP error JSON or SSE error event); hung. */
export type Outcome = { kind: "completed" } | { kind: "failed"; code: string; message: string } | { kind: "hung" };

/**
 * Sends one completion (streamed or not, as `b.stream` says) and reads it to the end; past `timeoutMs` it is aborted
 * and counts as hung. A transport failure (connection reset, ...) is a failure with code `client_<name>`.
 */
export async function requestOnce(url: string, b: Record<string, unknown>, timeoutMs: number): Promise<Outcome> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  const errorOf = (json: string, fallback: string): Outcome => {
    try {
      const e = (JSON.parse(json) as { error: { code?: string; message?: string } }).error;
      return { kind: "failed", code: e.code ?? fallback, message: e.message ?? "" };
    } catch {
      return { kind: "failed", code: fallback, message: json.slice(0, 200) };
    }
  };
  try {
    const r = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(b), signal: ac.signal });
    const text = await r.text();
    if (r.status !== 200) return errorOf(text, `http_${r.status}`);
    if (b.stream) {
      const err = /^data: (\{"error".*)$/m.exec(text);
      if (err) return errorOf(err[1], "sse_error");
      if (!text.includes("data: [DONE]")) return { kind: "failed", code: "stream_without_done", message: text.slice(-200) };
      return { kind: "completed" };
    }
    const j = JSON.parse(text) as { choices?: Array<{ finish_reason: string | null }> };
    return j.choices?.[0]?.finish_reason ? { kind: "completed" } : { kind: "failed", code: "no_finish_reason", message: text.slice(0, 200) };
  } catch (err) {
    if (ac.signal.aborted) return { kind: "hung" };
    return { kind: "failed", code: `client_${(err as Error).name}`, message: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** VmRSS of a live process, MB; NaN when it is gone. */
export function rssMb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? (Number(m[1]) * 1024) / 1e6 : NaN;
  } catch {
    return NaN;
  }
}

const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};

export function growthOf(samples: RssSample[], proc: string, warmupRequests: number): ProcessGrowth {
  const after = samples.filter((s) => s.requests >= warmupRequests);
  const at = samples.findIndex((s) => s.requests >= warmupRequests);
  const baselineMb = median(samples.slice(Math.max(0, at - 2), at + 3).map((s) => s.rssMb[proc]));
  const endMb = median(samples.slice(-5).map((s) => s.rssMb[proc]));
  const xs = after.map((s) => s.requests / 10_000);
  const ys = after.map((s) => s.rssMb[proc]);
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  const sxx = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  const slopeMbPer10k = n > 1 && sxx > 0 ? xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0) / sxx : 0;
  return {
    baselineMb,
    endMb,
    growthMb: endMb - baselineMb,
    slopeMbPer10k,
    slopePctPer10k: (slopeMbPer10k / baselineMb) * 100,
    maxMb: Math.max(...samples.map((s) => s.rssMb[proc]).filter(Number.isFinite)),
  };
}

/** Starts the deployment, runs the load, samples RSS, checks the workers are idle, stops everything. */
export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const concurrency = o.concurrency ?? 8;
  const maxTokens = o.maxTokens ?? 4;
  const warmupRequests = Math.min(o.requests, o.warmupRequests ?? Math.max(500, Math.floor(o.requests / 10)));
  const sampleEvery = Math.max(1, Math.floor(o.requests / (o.samples ?? 200)));
  const timeoutMs = o.requestTimeoutMs ?? 30_000;
  const log = o.log ?? (() => {});
  const apiHeapMb = o.apiHeapMb ?? DEFAULT_API_HEAP_MB;
  const workerHeapMb = o.workerHeapMb ?? DEFAULT_WORKER_HEAP_MB;
  const nats = await startNats();
  try {
    const ns = "rel-soak";
    const w = () => workerArgs(nats.uri, ns, ["--max-batch-size", "16"]);
    const [prefill, decode, api] = await Promise.all([
      startApp("prefill", w(), { env: heapEnv(workerHeapMb) }),
      startApp("decode", w(), { env: heapEnv(workerHeapMb) }),
      startApp("api", apiArgs(nats.uri, ns, ["--disagg-min-prompt-tokens", "32"]), { env: heapEnv(apiHeapMb) }),
    ]);
    await waitForWorkers(api.url, 1, 1);
    const procs: Record<string, AppProcess> = { api, prefill, decode };
    const samples: RssSample[] = [];
    const sample = (requests: number) => samples.push({ requests, rssMb: Object.fromEntries(Object.entries(procs).map(([k, p]) => [k, rssMb(p.pid)])) });
    sample(0);
    const res: SoakResult = {
      requests: o.requests, sent: 0, completed: 0, failed: {}, hung: 0, leaked: [], warmupRequests, samples, growth: {}, growthLastHalf: {}, wallMs: 0, requestsPerSecond: 0, disaggregated: 0,
      apiHeapMb, workerHeapMb,
    };
    const disaggBefore = await disaggregatedCount(api.url);
    const t0 = performance.now();
    const deadline = t0 + (o.timeLimitMs ?? 3_600_000);
    let next = 0;
    let finished = 0;
    const worker = async () => {
      while (next < o.requests && performance.now() < deadline) {
        const i = next++;
        res.sent++;
        const out = await requestOnce(api.url, body(i, maxTokens), timeoutMs);
        if (out.kind === "completed") res.completed++;
        else if (out.kind === "hung") res.hung++;
        else res.failed[out.code] = (res.failed[out.code] ?? 0) + 1;
        finished++;
        if (finished % sampleEvery === 0) sample(finished);
        if (finished % Math.max(1, Math.floor(o.requests / 10)) === 0) {
          const s = samples[samples.length - 1];
          log(`${finished}/${o.requests} requests, ${Math.round(finished / ((performance.now() - t0) / 1000))}/s, RSS MB ${Object.entries(s.rssMb).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ")}`);
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    res.wallMs = performance.now() - t0;
    res.requestsPerSecond = finished / (res.wallMs / 1000);
    if (samples[samples.length - 1].requests !== finished) sample(finished);
    res.disaggregated = (await disaggregatedCount(api.url)) - disaggBefore;
    // Leaks: every executor idle within a few load announcements (about 1 s apart).
    await eventually(() => workersIdle(api.url), 5000, "every worker idle").catch(() => undefined);
    res.leaked = (await workerGauges(api.url))
      .filter((g) => ["trtd_worker_active_requests", "trtd_worker_queued_requests", "trtd_worker_kv_blocks_used", "trtd_worker_pinned_kv_exports"].includes(g.name) && g.value !== 0)
      .map((g) => ({ name: g.name, instance: `${g.component}/${g.instance}`, value: g.value }));
    for (const k of Object.keys(procs)) {
      res.growth[k] = growthOf(samples, k, warmupRequests);
      res.growthLastHalf[k] = growthOf(samples, k, Math.floor(finished / 2));
    }
    return res;
  } finally {
    await stopAll();
    await nats.stop();
  }
}

async function disaggregatedCount(apiUrl: string): Promise<number> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  return Number(/^trtd_routed_requests_total\{mode="disaggregated"\} (\S+)$/m.exec(text)?.[1] ?? 0);
}

/** RSS by process over requests, the warm-up's end marked. */
export function soakSvg(r: SoakResult, title: string): string {
  const procs = Object.keys(r.growth);
  return lineChart({
    title,
    xLabel: "requests finished",
    yLabel: "RSS (MB)",
    series: procs.map((p) => ({ name: `${p} (${fmtSigned(r.growth[p].slopePctPer10k)} %/10k)`, points: r.samples.map((s) => [s.requests, s.rssMb[p]] as const) })),
    guides: procs.map((p) => ({ y: r.growth[p].baselineMb, label: `${p} at warm-up end` })),
  });
}

const heapText = (mb: number) => (mb > 0 ? `--max-old-space-size=${mb}` : "V8's default");

export const fmtSigned = (x: number, digits = 2) => `${x >= 0 ? "+" : ""}${x.toFixed(digits)}`;

/** The result as a few lines for a terminal or a results page. */
export function soakSummary(r: SoakResult): string[] {
  const failed = Object.values(r.failed).reduce((a, b) => a + b, 0);
  const lines = [
    `requests ${r.requests}, sent ${r.sent}, completed ${r.completed}, failed ${failed}${failed ? ` (${Object.entries(r.failed).map(([k, v]) => `${k} ${v}`).join(", ")})` : ""}, hung ${r.hung}`,
    `disaggregated ${r.disaggregated}; ${(r.wallMs / 1000).toFixed(1)} s, ${r.requestsPerSecond.toFixed(0)} requests/s; leaked: ${r.leaked.length ? r.leaked.map((l) => `${l.instance} ${l.name}=${l.value}`).join(", ") : "none"}`,
    `V8 old space: api ${heapText(r.apiHeapMb)}, workers ${heapText(r.workerHeapMb)}`,
  ];
  for (const [p, g] of Object.entries(r.growth)) {
    const h = r.growthLastHalf[p];
    lines.push(
      `${p}: RSS ${g.baselineMb.toFixed(1)} MB after ${r.warmupRequests} warm-up requests → ${g.endMb.toFixed(1)} MB at the end (${fmtSigned(g.growthMb, 1)} MB; slope ${fmtSigned(g.slopeMbPer10k)} MB = ${fmtSigned(g.slopePctPer10k)} % per 10k requests; max ${g.maxMb.toFixed(1)} MB)` +
        (h ? `; second half: ${h.baselineMb.toFixed(1)} → ${h.endMb.toFixed(1)} MB (${fmtSigned(h.growthMb, 1)} MB, slope ${fmtSigned(h.slopePctPer10k)} % per 10k)` : ""),
    );
  }
  return lines;
}
