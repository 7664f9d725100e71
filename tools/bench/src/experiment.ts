// The disaggregated-vs-aggregated experiment: the same workload, the same two worker processes, arranged as
// 1 prefill + 1 decode and as 2 aggregated decode workers, over a rate sweep; plus the frontend overhead.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, hostname, loadavg, tmpdir, totalmem } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { parseFlags, parseRates, stringFlag, workloadFlagOptions, workloadFromFlags, numberFlag, type Workload } from "./cli-options.js";
import { sendStreamingRequest } from "./client.js";
import { randomText } from "./dataset.js";
import { InvalidOptionError, ServerStartupError } from "./errors.js";
import { measureFrontendOverhead, type ExecutorSettings, type FrontendOverhead } from "./frontend-overhead.js";
import type { NamedSweep } from "./plots.js";
import { freePort, startProcess, waitForHttp, type ManagedProcess } from "./processes.js";
import { stderrProgress } from "./progress.js";
import { createRandom } from "./random.js";
import { writeReport } from "./report-files.js";
import { renderResultsPage } from "./results-page.js";
import { metricsDelta, scrapeMetrics, type MetricsSnapshot } from "./server-metrics.js";
import { runLoad, type LoadRunResult } from "./load-run.js";
import type { SweepResult } from "./sweep.js";
import { computeGoodput, type Goodput } from "./goodput.js";
import { meetsSlo, type Slo } from "./stats.js";

export const EXPERIMENT_USAGE = `usage: cli.ts experiment [flags]

Runs the same workload against two trtd stacks, each started by the launcher with its own nats-server on free
127.0.0.1 ports: 1 prefill + 1 decode worker (disaggregated) and 2 decode workers (aggregated). Both are
started and warmed up first, the frontend overhead is measured on each, then every rate of the sweep runs on
one stack and then the other (order alternating per rate). Everything is stopped by PID afterwards.

  --model-dir DIR         [models/tiny] (made with tools/prepare-model when missing)
  --rates R1,R2,...       [0.5,1,2,3,4,5,6] requests/s
  --num-requests N        [20] per rate (the same requests at every rate)
  --input-len DIST        [uniform:768:1024]  --output-len DIST [32]
  --slo-ttft-ms MS        [1000]              --slo-tpot-ms MS [15]
  --time-limit S          [45] per rate        --request-timeout S [60]
  --threads N             [1] executor threads per worker
  --overhead-reps N       [8] (0 skips the frontend-overhead measurement)
  --arrangements LIST     [disagg,agg]
  --launcher FILE         [apps/launcher/src/main.ts]
  --launcher-args "..."   extra flags passed to the launcher as is
  --startup-timeout S     [90]
  --also-slo LIST         [400:50] more TTFT_MS:TPOT_MS pairs to compute goodput for from the same records
  --out DIR               [docs/benchmarks/serving]
  plus --arrival, --seed, --max-concurrency, --prompts-file, --goodput-target, --endpoint (see run)`;

export interface Arrangement {
  key: "disagg" | "agg";
  name: string;
  legend: string;
  contextWorkers: number;
  generateWorkers: number;
}

export const ARRANGEMENTS: Record<Arrangement["key"], Arrangement> = {
  disagg: { key: "disagg", name: "1 prefill + 1 decode (disaggregated)", legend: "disagg 1P+1D", contextWorkers: 1, generateWorkers: 1 },
  agg: { key: "agg", name: "2 decode (aggregated)", legend: "agg 2D", contextWorkers: 0, generateWorkers: 2 },
};

export interface ArrangementResult {
  arrangement: Arrangement;
  servedModel: string;
  overhead?: FrontendOverhead;
  overheadError?: string;
  sweep: SweepResult;
  startupS: number;
}

interface StackHandles {
  nats?: ManagedProcess;
  natsPort?: number;
  launcher?: ManagedProcess;
  dir: string;
}

function nodeArgs(file: string): string[] {
  return ["--import", "tsx", "--conditions=source", file];
}

async function startStack(
  a: Arrangement,
  cfg: { repoRoot: string; launcher: string; modelDir: string; executor: ExecutorSettings; extraArgs: string[]; startupTimeoutMs: number; logDir: string; library: PinnedLibrary },
  h: StackHandles,
): Promise<{ baseUrl: string }> {
  h.nats = await startNats(a, h, cfg.logDir);
  const args = [
    ...nodeArgs(cfg.launcher),
    "--context-worker-count", String(a.contextWorkers),
    "--generate-worker-count", String(a.generateWorkers),
    "--worker-name", `bench-${a.key}`,
    "--request-plane-uri", `127.0.0.1:${h.natsPort}`,
    "--api-server-host", "127.0.0.1",
    "--api-server-port", "0",
    "--model-dir", cfg.modelDir,
    "--threads", String(cfg.executor.threads),
    "--max-batch-size", String(cfg.executor.maxBatchSize),
    "--max-tokens-per-iteration", String(cfg.executor.maxTokensPerIteration),
    "--kv-tokens-per-block", String(cfg.executor.kvTokensPerBlock),
    "--kv-block-count", String(cfg.executor.kvBlockCount),
    ...cfg.extraArgs,
  ];
  h.launcher = startProcess("launcher", process.execPath, args, {
    cwd: cfg.repoRoot,
    env: { ...process.env, TRTD_EXECUTOR_LIB: cfg.library.path },
    logFile: join(cfg.logDir, `${a.key}-launcher.log`),
  });
  // The launcher binds the api to a port the OS picks and prints where it is once its workers are ready.
  const m = await h.launcher.waitForLine(READY_LINE, cfg.startupTimeoutMs);
  const baseUrl = m[1];
  await waitForHttp(`${baseUrl}/v1/models`, h.launcher, 10_000);
  return { baseUrl };
}

/** The launcher's ready line: "trtd ready: OpenAI API at http://127.0.0.1:PORT/v1 ...". */
export const READY_LINE = /OpenAI API at (http:\/\/[^\s/]+)\/v1/;

/** nats-server (JetStream on) on a free port, retried on a clash; owned by the caller through `h`. */
async function startNats(a: Arrangement, h: StackHandles, logDir: string): Promise<ManagedProcess> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const nats = startProcess("nats-server", "nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(h.dir, "js")], {
      logFile: join(logDir, `${a.key}-nats.log`),
    });
    try {
      await waitForTcp(port, nats, 10_000);
      h.natsPort = port;
      return nats;
    } catch (err) {
      lastError = err;
      await nats.stop(1000);
    }
  }
  throw lastError;
}

async function waitForTcp(port: number, proc: ManagedProcess, timeoutMs: number): Promise<void> {
  const { connect } = await import("node:net");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), res(true)));
      s.once("error", () => (s.destroy(), res(false)));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new ServerStartupError(`${proc.name} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms:\n${proc.tail()}`);
}

async function stopStack(h: StackHandles): Promise<void> {
  // Launcher first (it drains its workers and the api), then the request plane.
  await h.launcher?.stop(10_000);
  await h.nats?.stop(3000);
  h.launcher = undefined;
  h.nats = undefined;
}

async function servedModelName(baseUrl: string): Promise<string> {
  const res = await fetch(`${baseUrl}/v1/models`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { data?: { id?: string }[] };
  const id = body.data?.[0]?.id;
  if (!id) throw new ServerStartupError(`${baseUrl}/v1/models lists no model`);
  return id;
}

/** Sends one request until one succeeds (workers registered), then `count` more, sequentially; bounded. */
async function warmUp(baseUrl: string, model: string, w: Workload, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  const req = { prompt: w.requests[0].prompt, maxTokens: 4 };
  for (;;) {
    const rec = await sendStreamingRequest({ baseUrl, model, endpoint: w.endpoint, requestTimeoutMs: w.requestTimeoutMs }, req, { index: 0, scheduledAtMs: 0, runStart: 0 });
    if (rec.ok) break;
    lastError = rec.error ?? "";
    if (Date.now() > deadline) throw new ServerStartupError(`no request succeeded within ${timeoutMs} ms: ${lastError}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  for (let i = 0; i < count; i++) {
    await sendStreamingRequest({ baseUrl, model, endpoint: w.endpoint, requestTimeoutMs: w.requestTimeoutMs }, w.requests[i % w.requests.length], { index: 0, scheduledAtMs: 0, runStart: 0 });
  }
}

function ensureModelDir(repoRoot: string, modelDir: string): void {
  if (existsSync(join(modelDir, "config.json"))) return;
  const name = basename(modelDir);
  if (name !== "tiny" && name !== "small") throw new InvalidOptionError(`model directory ${modelDir} has no config.json`);
  process.stderr.write(`generating ${modelDir} with tools/prepare-model...\n`);
  const r = spawnSync(process.execPath, [...nodeArgs(join(repoRoot, "tools/prepare-model/src/cli.ts")), name, "--out", modelDir], { cwd: repoRoot, stdio: "inherit", timeout: 300_000 });
  if (r.status !== 0) throw new ServerStartupError(`tools/prepare-model ${name} failed (exit ${r.status})`);
}

export interface PinnedLibrary {
  /** The frozen copy every process of the run loads. */
  path: string;
  source: string;
  sha256: string;
  mtime: string;
}

/** Copies the executor library ($TRTD_EXECUTOR_LIB or the built reference executor) into `dir`. */
async function pinExecutorLibrary(repoRoot: string, dir: string): Promise<PinnedLibrary> {
  const source = process.env.TRTD_EXECUTOR_LIB ?? (await import("@trtd/trtllm")).defaultLibraryPath;
  if (!existsSync(source)) {
    rmSync(dir, { recursive: true, force: true });
    throw new ServerStartupError(`executor library ${source} not found: build it with "npm run build:native" in ${repoRoot}`);
  }
  const path = join(dir, basename(source));
  copyFileSync(source, path);
  const sha256 = createHash("sha256").update(readFileSync(path)).digest("hex");
  return { path, source, sha256, mtime: statSync(source).mtime.toISOString() };
}

/** "400:50,1000:20" → SLO pairs (TTFT ms : TPOT ms); "" → none. */
export function parseSloList(s: string): Slo[] {
  if (s.trim() === "") return [];
  return s.split(",").map((pair) => {
    const [t, p, extra] = pair.split(":").map((x) => Number(x));
    if (extra !== undefined || !(t >= 0) || !(p >= 0)) throw new InvalidOptionError(`--also-slo wants TTFT_MS:TPOT_MS pairs, got "${pair}"`);
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
    note: "2-core VM, shared with other builds",
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
  });
  const repoRoot = resolve(process.cwd());
  const modelDir = resolve(stringFlag(flags, "model-dir", "models/tiny"));
  const launcher = resolve(stringFlag(flags, "launcher", "apps/launcher/src/main.ts"));
  if (!existsSync(launcher)) throw new InvalidOptionError(`launcher ${launcher} not found (run from the repository root)`);
  const rates = parseRates(stringFlag(flags, "rates", "0.5,1,2,3,4,5,6"));
  const w = workloadFromFlags(flags, { numRequests: 20, inputLen: "uniform:768:1024", outputLen: "32", sloTtftMs: 1000, sloTpotMs: 15, timeLimitS: 45 });
  const executor: ExecutorSettings = {
    threads: numberFlag(flags, "threads", 1, { min: 1, integer: true }),
    maxBatchSize: 64,
    maxTokensPerIteration: 2048,
    kvTokensPerBlock: 16,
    kvBlockCount: 2048,
  };
  const overheadReps = numberFlag(flags, "overhead-reps", 8, { min: 0, integer: true });
  const keys = stringFlag(flags, "arrangements", "disagg,agg").split(",").map((k) => k.trim());
  for (const k of keys) if (!(k in ARRANGEMENTS)) throw new InvalidOptionError(`unknown arrangement "${k}" (disagg | agg)`);
  const out = resolve(stringFlag(flags, "out", "docs/benchmarks/serving"));
  const startupTimeoutMs = numberFlag(flags, "startup-timeout", 90, { min: 1 }) * 1000;
  const alsoSlos = parseSloList(stringFlag(flags, "also-slo", "400:50"));
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
  try {
    for (const key of keys) {
      if (stop.signal.aborted) break;
      const a = ARRANGEMENTS[key as Arrangement["key"]];
      const h: StackHandles = { dir: mkdtempSync(join(tmpdir(), `bench-${key}-`)) };
      const entry = { a, h, baseUrl: "", model: "", startupS: 0, points: [] as LoadRunResult[] };
      stacks.push(entry);
      process.stderr.write(`[${a.name}] starting nats-server and the launcher...\n`);
      const ts = performance.now();
      entry.baseUrl = (await startStack(a, { repoRoot, launcher, modelDir, executor, extraArgs, startupTimeoutMs, logDir, library: pinned }, h)).baseUrl;
      entry.model = await servedModelName(entry.baseUrl);
      await warmUp(entry.baseUrl, entry.model, w, 4, startupTimeoutMs);
      entry.startupS = (performance.now() - ts) / 1000;
      process.stderr.write(`[${a.name}] up at ${entry.baseUrl} (model ${entry.model}) in ${entry.startupS.toFixed(1)} s\n`);
    }
    for (const s of stacks) {
      if (stop.signal.aborted) break;
      const { overhead, overheadError } = await overheadOrReason(overheadReps, () =>
        measureFrontendOverhead({ baseUrl: s.baseUrl, model: s.model, endpoint: w.endpoint, requestTimeoutMs: w.requestTimeoutMs, modelDir, prompt: overheadPrompt, executor: { ...executor, library: pinned.path }, reps: overheadReps }),
      );
      Object.assign(s, { overhead, overheadError });
      if (overhead) process.stderr.write(`[${s.a.name}] frontend overhead: TTFT p50 via HTTP ${overhead.httpTtftMs.p50?.toFixed(1)} ms, executor ${overhead.executorTtftMs.p50?.toFixed(1)} ms\n`);
      else process.stderr.write(`[${s.a.name}] frontend overhead not measured: ${overheadError}\n`);
      s.lastMetrics = await scrapeMetrics(s.baseUrl);
    }
    const sorted = [...rates].sort((x, y) => x - y);
    for (let i = 0; i < sorted.length && !stop.signal.aborted; i++) {
      const order = i % 2 === 0 ? stacks : [...stacks].reverse();
      for (const s of order) {
        if (stop.signal.aborted) break;
        const point = await runLoad({
          baseUrl: s.baseUrl,
          model: s.model,
          endpoint: w.endpoint,
          extraBody: w.extraBody,
          requestTimeoutMs: w.requestTimeoutMs,
          requests: w.requests,
          rate: sorted[i],
          arrival: w.arrival,
          seed: w.seed,
          maxConcurrency: w.maxConcurrency,
          timeLimitS: w.timeLimitS,
          slo: w.slo,
          progress,
          label: `[${s.a.legend}] rate ${sorted[i]} req/s`,
          signal: stop.signal,
        });
        const now = await scrapeMetrics(s.baseUrl);
        point.serverMetrics = metricsDelta(s.lastMetrics, now);
        s.lastMetrics = now;
        s.points.push(point);
        await new Promise((r) => setTimeout(r, 1000));
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
      await stopStack(s.h);
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
    executorLibrary: { source: pinned.source.replace(repoRoot + "/", ""), sha256: pinned.sha256, builtAt: pinned.mtime },
    workload: { ...w.description, rates },
    slo: w.slo,
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
  return {
    wallS: meta.wallS,
    goodput: Object.fromEntries(results.map((r) => [r.arrangement.key, r.sweep.goodput])),
    goodputRatioDisaggOverAgg: g("disagg") !== undefined && g("agg") ? g("disagg")! / g("agg")! : null,
    frontendOverhead: Object.fromEntries(results.map((r) => [r.arrangement.key, r.overhead ? { httpTtftP50Ms: r.overhead.httpTtftMs.p50, executorTtftP50Ms: r.overhead.executorTtftMs.p50, ratio: r.overhead.ratioP50 } : null])),
  };
}
