// The disaggregated-vs-aggregated experiment: the same workload, the same two worker processes, arranged as
// 1 prefill + 1 decode and as 2 aggregated decode workers, over a rate sweep; plus the frontend overhead.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, hostname, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { numberFlag, parseFlags, parseRates, stringFlag, workloadFlagOptions, workloadFromFlags } from "./cli-options.js";
import { randomText } from "./dataset.js";
import { InvalidOptionError, ServerStartupError } from "./errors.js";
import type { RequestRecord } from "./client.js";
import { measureFrontendOverhead, type ExecutorSettings, type FrontendOverhead } from "./frontend-overhead.js";
import type { NamedSweep } from "./plots.js";
import { stderrProgress } from "./progress.js";
import { createRandom } from "./random.js";
import { writeReport } from "./report-files.js";
import { renderResultsPage } from "./results-page.js";
import { metricsDelta, scrapeMetrics, type MetricsSnapshot } from "./server-metrics.js";
import { runLoad, type LoadRunResult } from "./load-run.js";
import type { SweepResult } from "./sweep.js";
import { computeGoodput, type Goodput } from "./goodput.js";
import { meetsSlo, percentile, summarize, type Slo } from "./stats.js";
import { ARRANGEMENTS, ensureModelDir, pinExecutorLibrary, servedModelName, startStack, stopStack, warmUp, type Arrangement, type StackHandles } from "./trtd-stack.js";

export const EXPERIMENT_USAGE = `usage: cli.ts experiment [flags]

Runs the same workload against two trtd stacks, each started by the launcher with its own nats-server on free
127.0.0.1 ports: 1 prefill + 1 decode worker (disaggregated) and 2 decode workers (aggregated). Both are
started and warmed up first, the frontend overhead is measured on each, then every rate of the sweep runs on
one stack and then the other (order alternating per rate). Everything is stopped by PID afterwards.

  --model-dir DIR         [models/tiny] (made with tools/prepare-model when missing)
  --rates R1,R2,...       [1,2,4,6,8,10] requests/s
  --num-requests N        [30] per rate (the same requests at every rate)
  --input-len DIST        [uniform:768:1024]  --output-len DIST [32]
  --slo-scale A:B         [5:3] SLO = A × idle TTFT and B × idle TPOT, both measured through each stack at
                          the start of the run (5 sequential requests of the workload per stack, median)
  --slo-ttft-ms MS  --slo-tpot-ms MS   fixed SLO limits instead
  --time-limit S          [45] per rate        --request-timeout S [60]
  --threads N             [1] executor threads per worker
  --kv-block-count N      [2048] KV blocks (16 tokens each) per worker and for the overhead measurement
  --max-tokens-per-iteration N  [2048] executor's token budget per iteration
  --sequential            run one arrangement at a time (start, measure, sweep every rate, stop), then the
                          next: for one GPU that cannot hold both stacks' weights at once. The SLO is derived
                          afterwards from both stacks' idle probes and every rate's attainment recomputed
                          from its records.
  --overhead-reps N       [8] (0 skips the frontend-overhead measurement)
  --arrangements LIST     [disagg,agg]
  --launcher FILE         [apps/launcher/src/main.ts]
  --launcher-args "..."   extra flags passed to the launcher as is
  --startup-timeout S     [90]
  --stop-grace S          [10] SIGTERM-to-SIGKILL grace when stopping each launcher and what it started
  --also-slo-scale LIST   [2:10] more A:B scales (or --also-slo TTFT_MS:TPOT_MS,...) to compute goodput for
                          from the same records
  --out DIR               [docs/benchmarks/serving]
  plus --arrival, --seed, --max-concurrency, --prompts-file, --goodput-target, --endpoint (see run)`;

export interface ArrangementResult {
  arrangement: Arrangement;
  servedModel: string;
  overhead?: FrontendOverhead;
  overheadError?: string;
  sweep: SweepResult;
  startupS: number;
}

/** "400:50,1000:20" → SLO pairs (TTFT ms : TPOT ms); "" → none. */
export function parseSloList(s: string, flag = "--also-slo"): Slo[] {
  if (s.trim() === "") return [];
  return s.split(",").map((pair) => {
    const [t, p, extra] = pair.split(":").map((x) => Number(x));
    if (extra !== undefined || !(t >= 0) || !(p >= 0)) throw new InvalidOptionError(`${flag} wants A:B pairs of numbers (TTFT:TPOT), got "${pair}"`);
    return { ttftMs: t, tpotMs: p };
  });
}

/** Goodput of a finished sweep under another SLO, recomputed from its per-request records. */
export function goodputFor(sweep: SweepResult, slo: Slo, target = sweep.goodput.target): Goodput {
  return computeGoodput(
    sweep.points.map((p) => ({ rate: p.rate, attainment: p.records.length ? p.records.filter((r) => meetsSlo(r, slo)).length / p.records.length : 0 })),
    target,
  );
}

/** An SLO `k` times the idle latencies, rounded up to whole milliseconds (TTFT) and tenths (TPOT). */
export function scaledSlo(idle: { ttftMs: number; tpotMs: number }, k: Slo): Slo {
  return { ttftMs: Math.ceil(idle.ttftMs * k.ttftMs), tpotMs: Math.ceil(idle.tpotMs * k.tpotMs * 10) / 10 };
}

/** Runs the overhead measurement, or says why there is none: skipped, or the error (the sweep still runs). */
async function overheadOrReason(reps: number, measure: () => Promise<FrontendOverhead>): Promise<{ overhead?: FrontendOverhead; overheadError?: string }> {
  if (reps === 0) return { overheadError: "skipped (--overhead-reps 0)" };
  try {
    return { overhead: await measure() };
  } catch (err) {
    return { overheadError: (err as Error).message };
  }
}

export function machineDescription(): Record<string, unknown> {
  const c = cpus();
  return {
    host: hostname(),
    cpus: c.length,
    cpuModel: c[0]?.model ?? "unknown",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    // Free text about the machine for the results page (e.g. "2-core VM, shared with other builds"); it used to be
    // that sentence, hard-coded, and so mislabelled runs on other machines.
    ...(process.env.TRTD_BENCH_MACHINE_NOTE ? { note: process.env.TRTD_BENCH_MACHINE_NOTE } : {}),
  };
}

export async function experimentCommand(argv: string[]): Promise<Record<string, unknown>> {
  const flags = parseFlags(argv, {
    ...workloadFlagOptions,
    "model-dir": { type: "string" },
    rates: { type: "string" },
    threads: { type: "string" },
    "overhead-reps": { type: "string" },
    arrangements: { type: "string" },
    launcher: { type: "string" },
    "launcher-args": { type: "string" },
    "startup-timeout": { type: "string" },
    "also-slo": { type: "string" },
    "slo-scale": { type: "string" },
    "also-slo-scale": { type: "string" },
    "stop-grace": { type: "string" },
    "kv-block-count": { type: "string" },
    "max-tokens-per-iteration": { type: "string" },
    sequential: { type: "boolean" },
  });
  const repoRoot = resolve(process.cwd());
  const modelDir = resolve(stringFlag(flags, "model-dir", "models/tiny"));
  const launcher = resolve(stringFlag(flags, "launcher", "apps/launcher/src/main.ts"));
  if (!existsSync(launcher)) throw new InvalidOptionError(`launcher ${launcher} not found (run from the repository root)`);
  const rates = parseRates(stringFlag(flags, "rates", "1,2,4,6,8,10"));
  const w = workloadFromFlags(flags, { numRequests: 30, inputLen: "uniform:768:1024", outputLen: "32", sloTtftMs: 1000, sloTpotMs: 15, timeLimitS: 45 });
  const executor: ExecutorSettings = {
    threads: numberFlag(flags, "threads", 1, { min: 1, integer: true }),
    maxBatchSize: 64,
    maxTokensPerIteration: numberFlag(flags, "max-tokens-per-iteration", 2048, { min: 1, integer: true }),
    kvTokensPerBlock: 16,
    kvBlockCount: numberFlag(flags, "kv-block-count", 2048, { min: 1, integer: true }),
  };
  const sequential = flags.sequential === true;
  const overheadReps = numberFlag(flags, "overhead-reps", 8, { min: 0, integer: true });
  const keys = stringFlag(flags, "arrangements", "disagg,agg").split(",").map((k) => k.trim());
  for (const k of keys) if (!(k in ARRANGEMENTS)) throw new InvalidOptionError(`unknown arrangement "${k}" (disagg | agg)`);
  const out = resolve(stringFlag(flags, "out", "docs/benchmarks/serving"));
  const startupTimeoutMs = numberFlag(flags, "startup-timeout", 90, { min: 1 }) * 1000;
  const stopGraceMs = numberFlag(flags, "stop-grace", 10, { min: 0 }) * 1000;
  const fixedSlo = flags["slo-ttft-ms"] !== undefined || flags["slo-tpot-ms"] !== undefined;
  const sloScale = parseSloList(stringFlag(flags, "slo-scale", "5:3"), "--slo-scale");
  if (sloScale.length !== 1) throw new InvalidOptionError("--slo-scale takes one A:B pair");
  const fixedAlso = typeof flags["also-slo"] === "string" ? parseSloList(flags["also-slo"], "--also-slo") : undefined;
  const alsoScales = parseSloList(stringFlag(flags, "also-slo-scale", "2:10"), "--also-slo-scale");
  let alsoSlos: Slo[] = fixedAlso ?? [];
  let idle: { ttftMs: number; tpotMs: number; requests: number } | undefined;
  const extraArgs = typeof flags["launcher-args"] === "string" ? flags["launcher-args"].split(/\s+/).filter(Boolean) : [];
  ensureModelDir(repoRoot, modelDir);
  mkdirSync(out, { recursive: true });
  // Both arrangements and the overhead measurement load one frozen copy of the executor library, so a rebuild
  // of the working tree during the run cannot give the two arrangements different engines.
  const pinned = await pinExecutorLibrary(repoRoot, mkdtempSync(join(tmpdir(), "bench-lib-")));
  const logDir = join(out, "logs");
  mkdirSync(logDir, { recursive: true });

  const started = new Date();
  const loadAtStart = loadavg().map((v) => Math.round(v * 100) / 100);
  const t0 = performance.now();
  const overheadPrompt = randomText(createRandom(w.seed + 1), Math.round(w.requests.reduce((n, r) => n + (r.targetInputTokens ?? 0), 0) / w.requests.length) || 256);
  const results: ArrangementResult[] = [];
  const progress = stderrProgress();
  // Ctrl-C stops the sweep; the finally below stops the processes.
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  // Every arrangement's stack is started first and stays up (idle workers cost next to nothing); the rates are
  // then run in turn on each, alternating the order per rate, so drifting load from other processes on the
  // machine falls on both arrangements alike instead of on whichever happened to run second.
  const stacks: { a: Arrangement; h: StackHandles; baseUrl: string; model: string; startupS: number; overhead?: FrontendOverhead; overheadError?: string; lastMetrics?: MetricsSnapshot; points: LoadRunResult[] }[] = [];
  type Stack = (typeof stacks)[number];
  const startOne = async (key: string): Promise<Stack> => {
    const a = ARRANGEMENTS[key as Arrangement["key"]];
    const h: StackHandles = { dir: mkdtempSync(join(tmpdir(), `bench-${key}-`)) };
    const entry: Stack = { a, h, baseUrl: "", model: "", startupS: 0, points: [] as LoadRunResult[] };
    stacks.push(entry);
    process.stderr.write(`[${a.name}] starting nats-server and the launcher...\n`);
    const ts = performance.now();
    entry.baseUrl = (await startStack(a, { repoRoot, launcher, modelDir, executor, extraArgs, startupTimeoutMs, logDir, library: pinned }, h)).baseUrl;
    entry.model = await servedModelName(entry.baseUrl);
    await warmUp(entry.baseUrl, entry.model, w, 4, startupTimeoutMs);
    entry.startupS = (performance.now() - ts) / 1000;
    process.stderr.write(`[${a.name}] up at ${entry.baseUrl} (model ${entry.model}) in ${entry.startupS.toFixed(1)} s\n`);
    return entry;
  };
  const overheadOne = async (s: Stack): Promise<void> => {
    const { overhead, overheadError } = await overheadOrReason(overheadReps, () =>
      measureFrontendOverhead({ baseUrl: s.baseUrl, model: s.model, endpoint: w.endpoint, requestTimeoutMs: w.requestTimeoutMs, modelDir, prompt: overheadPrompt, executor: { ...executor, library: pinned.path }, reps: overheadReps }),
    );
    Object.assign(s, { overhead, overheadError });
    if (overhead) process.stderr.write(`[${s.a.name}] frontend overhead: TTFT p50 via HTTP ${overhead.httpTtftMs.p50?.toFixed(1)} ms, executor ${overhead.executorTtftMs.p50?.toFixed(1)} ms\n`);
    else process.stderr.write(`[${s.a.name}] frontend overhead not measured: ${overheadError}\n`);
  };
  // Idle latency through each stack: the reference for SLOs that scale with the machine and the executor build.
  const idleRecords: RequestRecord[] = [];
  const idleOne = async (s: Stack): Promise<void> => {
    const probe = await runLoad({ baseUrl: s.baseUrl, model: s.model, endpoint: w.endpoint, extraBody: w.extraBody, requestTimeoutMs: w.requestTimeoutMs, requests: w.requests.slice(0, 5), rate: Infinity, maxConcurrency: 1, timeLimitS: w.timeLimitS, progress, label: `[${s.a.legend}] idle probe`, signal: stop.signal });
    idleRecords.push(...probe.records.filter((r) => r.ok));
    // Counters from here on belong to the sweep.
    s.lastMetrics = await scrapeMetrics(s.baseUrl);
  };
  const deriveSlo = (): void => {
    const idleTtft = percentile(idleRecords.map((r) => r.ttftMs!), 50);
    const idleTpot = percentile(idleRecords.flatMap((r) => (r.tpotMs === undefined ? [] : [r.tpotMs])), 50);
    if (idleTtft !== undefined && idleTpot !== undefined) idle = { ttftMs: idleTtft, tpotMs: idleTpot, requests: idleRecords.length };
    if (!fixedSlo) {
      if (!idle) throw new ServerStartupError("the idle probe got no successful request: cannot derive the SLO (give --slo-ttft-ms and --slo-tpot-ms)");
      w.slo = scaledSlo(idle, sloScale[0]);
    }
    if (!fixedAlso && idle) alsoSlos = alsoScales.map((k) => scaledSlo(idle!, k));
    process.stderr.write(
      `idle through the stack: TTFT ${idle?.ttftMs.toFixed(1) ?? "?"} ms, TPOT ${idle?.tpotMs.toFixed(2) ?? "?"} ms; SLO TTFT <= ${w.slo.ttftMs} ms, TPOT <= ${w.slo.tpotMs} ms\n`,
    );
  };
  const rateOne = async (s: Stack, rate: number): Promise<void> => {
    const point = await runLoad({
      baseUrl: s.baseUrl,
      model: s.model,
      endpoint: w.endpoint,
      extraBody: w.extraBody,
      requestTimeoutMs: w.requestTimeoutMs,
      requests: w.requests,
      rate,
      arrival: w.arrival,
      seed: w.seed,
      maxConcurrency: w.maxConcurrency,
      timeLimitS: w.timeLimitS,
      slo: w.slo,
      progress,
      label: `[${s.a.legend}] rate ${rate} req/s`,
      signal: stop.signal,
    });
    const now = await scrapeMetrics(s.baseUrl);
    point.serverMetrics = metricsDelta(s.lastMetrics, now);
    s.lastMetrics = now;
    s.points.push(point);
    await new Promise((r) => setTimeout(r, 1000));
  };
  const sorted = [...rates].sort((x, y) => x - y);
  try {
    if (sequential) {
      // One stack at a time; the SLO comes from every stack's idle probe once all have run.
      for (const key of keys) {
        if (stop.signal.aborted) break;
        const s = await startOne(key);
        await overheadOne(s);
        await idleOne(s);
        for (const rate of sorted) {
          if (stop.signal.aborted) break;
          await rateOne(s, rate);
        }
        await stopStack(s.h, stopGraceMs);
      }
      deriveSlo();
      for (const s of stacks) for (const p of s.points) p.summary = summarize(p.records, { notSent: p.summary.notSent, slo: w.slo });
    } else {
      for (const key of keys) {
        if (stop.signal.aborted) break;
        await startOne(key);
      }
      for (const s of stacks) {
        if (stop.signal.aborted) break;
        await overheadOne(s);
      }
      for (const s of stacks) {
        if (stop.signal.aborted) break;
        await idleOne(s);
      }
      deriveSlo();
      for (let i = 0; i < sorted.length && !stop.signal.aborted; i++) {
        const order = i % 2 === 0 ? stacks : [...stacks].reverse();
        for (const s of order) {
          if (stop.signal.aborted) break;
          await rateOne(s, sorted[i]);
        }
      }
    }
    for (const s of stacks) {
      const goodput = computeGoodput(s.points.map((p) => ({ rate: p.rate, attainment: p.summary.sloAttainment ?? 0 })), w.target);
      results.push({ arrangement: s.a, servedModel: s.model, overhead: s.overhead, overheadError: s.overheadError, sweep: { slo: w.slo, points: s.points, goodput }, startupS: s.startupS });
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    for (const s of stacks) {
      await stopStack(s.h, stopGraceMs);
      rmSync(s.h.dir, { recursive: true, force: true });
    }
    rmSync(dirname(pinned.path), { recursive: true, force: true });
  }

  const machine = { ...machineDescription(), loadAverageAtStart: loadAtStart, loadAverageAtEnd: loadavg().map((v) => Math.round(v * 100) / 100) };
  const meta = {
    tool: "@trtd/bench experiment",
    date: started.toISOString(),
    wallS: (performance.now() - t0) / 1000,
    machine,
    modelDir: resolve(modelDir).replace(repoRoot + "/", ""),
    executor,
    sequential,
    executorLibrary: { source: pinned.source.replace(repoRoot + "/", ""), sha256: pinned.sha256, builtAt: pinned.mtime },
    workload: { ...w.description, rates },
    slo: w.slo,
    sloDerivation: fixedSlo ? "fixed by flags" : { idle, scale: sloScale[0], rule: "SLO = scale.ttftMs × idle TTFT, scale.tpotMs × idle TPOT (rounded up)" },
    otherSlos: alsoSlos,
    command: `node --import tsx --conditions=source tools/bench/src/cli.ts experiment ${argv.join(" ")}`.trim(),
    arrangements: results.map((r) => ({
      key: r.arrangement.key,
      name: r.arrangement.name,
      contextWorkers: r.arrangement.contextWorkers,
      generateWorkers: r.arrangement.generateWorkers,
      servedModel: r.servedModel,
      startupS: r.startupS,
      goodput: r.sweep.goodput,
      goodputUnderOtherSlos: alsoSlos.map((slo) => ({ slo, goodput: goodputFor(r.sweep, slo) })),
      frontendOverhead: r.overhead ?? null,
      frontendOverheadError: r.overheadError ?? null,
    })),
  };
  const named: NamedSweep[] = results.map((r) => ({ name: r.arrangement.name, legend: r.arrangement.legend, sweep: r.sweep }));
  writeReport(out, named, meta);
  writeFileSync(join(out, "results.md"), renderResultsPage(meta, named));
  process.stderr.write(`wrote ${out}/results.md, results.json, records.jsonl and charts\n`);

  const byKey = Object.fromEntries(results.map((r) => [r.arrangement.key, r]));
  const g = (k: string) => byKey[k]?.sweep.goodput.interpolatedRate;
  const hp = (k: string) => byKey[k]?.sweep.goodput.highestPassingRate;
  return {
    wallS: meta.wallS,
    goodput: Object.fromEntries(results.map((r) => [r.arrangement.key, r.sweep.goodput])),
    goodputRatioDisaggOverAgg: g("disagg") !== undefined && g("agg") ? g("disagg")! / g("agg")! : null,
    highestPassingRateRatioDisaggOverAgg: hp("disagg") !== undefined && hp("agg") ? hp("disagg")! / hp("agg")! : null,
    frontendOverhead: Object.fromEntries(results.map((r) => [r.arrangement.key, r.overhead ? { httpTtftP50Ms: r.overhead.httpTtftMs.p50, executorTtftP50Ms: r.overhead.executorTtftMs.p50, ratio: r.overhead.ratioP50 } : null])),
  };
}
