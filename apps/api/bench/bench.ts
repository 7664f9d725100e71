// `nx run api:bench`: what the api path adds to time to first token, and how fast the api streams.
//
// 1. Added TTFT. The api, the workers and nats-server run as the user runs them (compiled dist/, one process each,
//    127.0.0.1, ports the OS picks). For a 16-token and a ~1k-token chat prompt, one streaming request at a time
//    through HTTP alternates with the executor's own TTFT, measured in this process on an executor opened with the
//    same settings for the same prompt tokens (time from `generate()` to the first token at the binding). Added =
//    HTTP TTFT - executor TTFT, pair by pair. On the disaggregated path (api + prefill + decode) the first token leaves
//    the api when the prefill answers, before the decode worker pulls the KV (DecodeRequest.firstTokenSent): the KV
//    copy of each request (the api's trtd_kv_transfer_seconds, as the decode worker reported it) is not in its TTFT
//    and is reported apart. (Until 2026-12-08 the first token came from the decode worker, and the copy was taken out.)
// 2. Throughput. The api in front of a decode worker TEST DOUBLE (decode-double.ts: no model, tokens as fast as
//    asked), 256 concurrent streams for a bounded time: streamed tokens/s and the api's CPU per token (from
//    /proc). Baseline in the same run: the same streams read straight from the request plane by this process.
//
// The last line of output is one JSON object. Options: --reps N (pairs per prompt, default 40), --seconds S (load
// time per throughput part, default 5), --concurrency N (256), --stream-tokens N (tokens per stream, 128),
// --profile DIR (the api runs with --cpu-prof; profiles land in DIR), --only ttft|throughput, --api-main FILE (another
// build of the api's main.js, to compare two builds run after run; default apps/api/dist/main.js). With the TTFT part
// it measures the floor of the aggregated path's hops on this machine (hop-floor.ts) and gives added / floor.
// --warmup N (default 200): requests through HTTP (and as many executor runs) per prompt before the measured pairs.
// A serving api has long since compiled its request path (V8 optimises a function after many calls); a handful of
// warm-up requests would measure code still in V8's interpreter instead (about 0.5-1.5 ms more on the 2-core VM,
// README "Results, 2026-12-08 (2)"). --warmup 3 gives the cold figure.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, request } from "node:http";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  DEFAULT_MODEL_DIR,
  DEFAULT_NAMESPACE,
  Endpoints,
  executorArgv,
  intFlag,
  parseFlags,
  READY_PATTERNS,
  stringFlag,
  UsageError,
  valueFlags,
  type DecodeChunk,
  type DecodeRequest,
} from "@trtd/apps-common";
import { describe, startProcess, type ManagedProcess } from "@trtd/bench";
import { connect, startNatsServer } from "@trtd/request-plane";
import { Tokenizer } from "@trtd/tokenizer";
import { Executor } from "@trtd/trtllm";
import { measureHopFloor } from "./hop-floor.js";

/** The flags, checked by apps/common's flag parser: a mistake is one line and exit 2, before anything starts. */
function benchFlags(argv: string[]) {
  const flags = parseFlags(argv, valueFlags("reps", "warmup", "seconds", "concurrency", "stream-tokens", "profile", "only", "api-main"));
  const only = stringFlag(flags, "only");
  if (only !== undefined && only !== "ttft" && only !== "throughput") throw new UsageError(`--only takes ttft or throughput, got ${only}`);
  const profile = stringFlag(flags, "profile");
  const apiMain = stringFlag(flags, "api-main");
  return {
    REPS: intFlag(flags.reps, "reps", { min: 1, fallback: 40 }),
    WARMUP: intFlag(flags.warmup, "warmup", { min: 0, fallback: 200 }),
    LOAD_SECONDS: intFlag(flags.seconds, "seconds", { min: 1, fallback: 5 }),
    CONCURRENCY: intFlag(flags.concurrency, "concurrency", { min: 1, fallback: 256 }),
    STREAM_TOKENS: intFlag(flags["stream-tokens"], "stream-tokens", { min: 1, fallback: 128 }),
    ONLY: only,
    PROFILE_DIR: profile === undefined ? undefined : resolve(profile),
    API_MAIN: apiMain === undefined ? undefined : resolve(apiMain),
  };
}
const { REPS, WARMUP, LOAD_SECONDS, CONCURRENCY, STREAM_TOKENS, ONLY, PROFILE_DIR, API_MAIN } = (() => {
  try {
    return benchFlags(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`api bench: ${err.message}`);
    process.exit(2);
  }
})();
const STARTUP_MS = 60_000;
/** The idle gap before each hop of the floor measurement: about what the api sits idle between two TTFT requests. */
const HOP_FLOOR_GAP_MS = 20;
const REQUEST_MS = 30_000;

/** Executor settings of the workers and of the executor measured here: one prefill iteration fits a 1k prompt. */
const EXECUTOR = { threads: 1, maxBatchSize: 64, maxTokensPerIteration: 2048, kvTokensPerBlock: 16, kvBlockCount: 2048 };
const EXECUTOR_FLAGS = executorArgv(EXECUTOR);

/**
 * What the bench runs on, made by its nx target before it starts (`nx run api:bench` builds the api and the
 * workers and runs tools/scripts/build-native.mjs --models tiny); missing, it says so and stops.
 */
const repoRoot = resolve(import.meta.dirname, "../../..");
function needed(path: string): string {
  if (!existsSync(path)) throw new Error(`${path} is missing: run the bench as "npx nx run api:bench", which makes it first`);
  return path;
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const round = (x: number | undefined, d = 3) => (x === undefined ? undefined : Math.round(x * 10 ** d) / 10 ** d);

// ---------------------------------------------------------------- processes (all stopped by PID in `finally`)

/** Everything started here, stopped in reverse order (api, workers, nats-server). */
const owned: { stop(graceMs?: number): Promise<unknown> }[] = [];
let workDir = "";

async function startNats(): Promise<string> {
  const nats = await startNatsServer({ jetstream: true });
  owned.push(nats);
  return nats.uri;
}

function nodeApp(name: string, file: string, args: string[], ready: RegExp, nodeArgs: string[] = []): Promise<{ proc: ManagedProcess; match: RegExpMatchArray }> {
  const proc = startProcess(name, process.execPath, [...nodeArgs, file, ...args], { cwd: repoRoot, logFile: join(workDir, `${name}.log`) });
  owned.push(proc);
  return proc.waitForLine(ready, STARTUP_MS).then((match) => ({ proc, match }));
}

const dist = (app: string) => needed(join(repoRoot, "apps", app, "dist/main.js"));

async function startApi(uri: string, modelDir: string, tag: string, extra: string[] = []): Promise<{ proc: ManagedProcess; url: string }> {
  const prof = PROFILE_DIR ? ["--cpu-prof", "--cpu-prof-dir", PROFILE_DIR, "--cpu-prof-name", `api-${tag}.cpuprofile`] : [];
  const { proc, match } = await nodeApp(
    `api-${tag}`,
    API_MAIN ?? dist("api"),
    ["--tokenizer", modelDir, "--model-name", "tiny", "--request-plane-uri", uri, "--api-server-host", "127.0.0.1", "--api-server-port", "0", ...extra],
    READY_PATTERNS.api,
    prof,
  );
  return { proc, url: match.groups!.url! };
}

async function stopAll(): Promise<void> {
  // Api first, then workers, then nats-server: the reverse of the start order.
  for (const p of owned.splice(0).reverse()) await p.stop(10_000);
}

// ---------------------------------------------------------------- HTTP client: one keep-alive agent, no fetch

let agent = new Agent({ keepAlive: true, maxSockets: 1024 });
/** Fresh connections: the server closes keep-alive sockets left idle past its timeout, which a reuse would race. */
function newAgent(): void {
  agent.destroy();
  agent = new Agent({ keepAlive: true, maxSockets: 1024 });
}

interface StreamResult {
  ttftMs: number;
  completionTokens: number;
  promptTokens: number;
}

/**
 * One streaming chat request; TTFT at the first SSE event with non-empty content (the role-only first chunk does
 * not count). Token counts come from the usage chunk. Rejects on an HTTP error or an error event.
 */
function streamChat(baseUrl: string, body: string): Promise<StreamResult> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    let ttft = -1;
    let tail = "";
    const req = request(`${baseUrl}/v1/chat/completions`, { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }, timeout: REQUEST_MS }, (res) => {
      res.setEncoding("utf8");
      if (res.statusCode !== 200) {
        let text = "";
        res.on("data", (d: string) => (text += d));
        res.on("end", () => reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`)));
        return;
      }
      res.on("data", (d: string) => {
        if (ttft < 0 && /"content":"[^"]/.test(d)) ttft = performance.now() - t0;
        tail = (tail + d).slice(-600);
      });
      res.on("end", () => {
        if (tail.includes('"error"')) return reject(new Error(`error event: ${tail}`));
        const c = /"completion_tokens":(\d+)/.exec(tail);
        const p = /"prompt_tokens":(\d+)/.exec(tail);
        if (ttft < 0 || !c || !p || !tail.includes("[DONE]")) return reject(new Error(`incomplete stream: ${tail}`));
        resolvePromise({ ttftMs: ttft, completionTokens: Number(c[1]), promptTokens: Number(p[1]) });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${REQUEST_MS} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

const chatBody = (content: string, maxTokens: number) =>
  JSON.stringify({ model: "tiny", messages: [{ role: "user", content }], max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } });

async function scrape(baseUrl: string, name: string): Promise<number> {
  const res = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(await res.text());
  return m ? Number(m[1]) : 0;
}

/** Sends requests until one succeeds (workers discovered), bounded; then `n` more. */
async function warmUp(baseUrl: string, body: string, n: number): Promise<void> {
  const end = Date.now() + STARTUP_MS;
  for (;;) {
    try {
      await streamChat(baseUrl, body);
      break;
    } catch (err) {
      if (Date.now() > end) throw new Error(`no request succeeded within ${STARTUP_MS} ms: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  for (let i = 0; i < n; i++) await streamChat(baseUrl, body);
}

// ---------------------------------------------------------------- prompts of a given token count

const WORDS = "the quick brown fox jumps over a lazy dog while seven clever engineers measure latency on small machines".split(" ");

/** Chat content whose templated prompt (what the executor sees) has exactly `target` tokens, and those tokens. */
function promptOf(tok: Tokenizer, target: number): { content: string; tokens: number[] } {
  const words: string[] = [];
  for (let i = 0; ; i++) {
    const content = words.join(" ");
    const tokens = tok.encodeChat([{ role: "user", content }]);
    if (tokens.length === target) return { content, tokens };
    if (tokens.length > target) {
      // Overshot by a multi-token word: pad with single-token "a"s from one word back.
      words.pop();
      for (let k = 0; k < 64; k++) {
        const c = [...words, ...Array(k).fill("a")].join(" ");
        const t = tok.encodeChat([{ role: "user", content: c }]);
        if (t.length === target) return { content: c, tokens: t };
        if (t.length > target) break;
      }
      throw new Error(`no prompt of exactly ${target} tokens`);
    }
    words.push(WORDS[i % WORDS.length]);
  }
}

// ---------------------------------------------------------------- part 1: added TTFT

interface TtftFigures {
  promptTokens: number;
  pairs: number;
  executorTtftMs: ReturnType<typeof describe>;
  httpTtftMs: ReturnType<typeof describe>;
  /** Per pair: HTTP TTFT - executor TTFT. */
  addedMs: { p50?: number; p99?: number; mean?: number };
  kvCopyMs?: ReturnType<typeof describe>;
  /** p50(HTTP) / p50(executor). */
  ratioP50?: number;
  /** added p50 / the hop floor's p50 measured in the same run (1 = the stack's hops alone, no work). */
  addedOverHopFloor?: number;
}

async function executorTtft(ex: Executor, tokens: number[]): Promise<number> {
  const t0 = performance.now();
  let first = -1;
  for await (const c of ex.generate({ prompt: tokens, maxNewTokens: 2 })) {
    if (c.error) throw c.error;
    if (first < 0 && c.tokens.length > 0) first = performance.now() - t0;
  }
  if (first < 0) throw new Error("the executor produced no token");
  return first;
}

async function measureTtft(ex: Executor, apiUrl: string, p: { content: string; tokens: number[] }, disaggregated: boolean): Promise<TtftFigures> {
  const body = chatBody(p.content, 2);
  await warmUp(apiUrl, body, WARMUP);
  for (let i = 0; i < WARMUP; i++) await executorTtft(ex, p.tokens);
  const http: number[] = [];
  const direct: number[] = [];
  const kv: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const k0 = disaggregated ? await scrape(apiUrl, "trtd_kv_transfer_seconds_sum") : 0;
    const n0 = disaggregated ? await scrape(apiUrl, "trtd_kv_transfer_seconds_count") : 0;
    // Alternate which goes first so drift hits both alike.
    const viaHttp = async () => {
      const r = await streamChat(apiUrl, body);
      if (r.promptTokens !== p.tokens.length) throw new Error(`the api counted ${r.promptTokens} prompt tokens, the executor got ${p.tokens.length}`);
      http.push(r.ttftMs);
    };
    if (i % 2 === 0) {
      await viaHttp();
      direct.push(await executorTtft(ex, p.tokens));
    } else {
      direct.push(await executorTtft(ex, p.tokens));
      await viaHttp();
    }
    if (disaggregated) {
      const n1 = await scrape(apiUrl, "trtd_kv_transfer_seconds_count");
      if (n1 - n0 !== 1) throw new Error(`request ${i} did not run disaggregated (${n1 - n0} KV transfers)`);
      kv.push((await scrape(apiUrl, "trtd_kv_transfer_seconds_sum")) * 1000 - k0 * 1000);
    }
  }
  const added = http.map((h, i) => h - direct[i]);
  const a = describe(added);
  const h = describe(http);
  const d = describe(direct);
  return {
    promptTokens: p.tokens.length,
    pairs: REPS,
    executorTtftMs: roundDist(d),
    httpTtftMs: roundDist(h),
    addedMs: { p50: round(a.p50), p99: round(a.p99), mean: round(a.mean) },
    ...(disaggregated ? { kvCopyMs: roundDist(describe(kv)) } : {}),
    ratioP50: round(h.p50! / d.p50!),
  };
}

function roundDist(d: ReturnType<typeof describe>): ReturnType<typeof describe> {
  return { count: d.count, mean: round(d.mean), p50: round(d.p50), p90: round(d.p90), p99: round(d.p99), max: round(d.max) };
}

async function ttftPart(modelDir: string, prompts: { short: { content: string; tokens: number[] }; long: { content: string; tokens: number[] } }) {
  const ex = Executor.open(modelDir, EXECUTOR);
  const out: Record<string, Record<string, TtftFigures>> = {};
  try {
    for (const path of ["aggregated", "disaggregated"] as const) {
      const uri = await startNats();
      const plane = ["--request-plane-uri", uri, "--model-dir", modelDir, ...EXECUTOR_FLAGS];
      await nodeApp("decode", dist("decode"), plane, READY_PATTERNS.decode);
      if (path === "disaggregated") await nodeApp("prefill", dist("prefill"), plane, READY_PATTERNS.prefill);
      const api = await startApi(uri, modelDir, path, path === "disaggregated" ? ["--disagg-min-prompt-tokens", "1"] : ["--no-disaggregation"]);
      try {
        out[path] = {};
        for (const [name, p] of [["short", prompts.short], ["long", prompts.long]] as const) {
          log(`ttft ${path} ${p.tokens.length} tokens: ${REPS} pairs`);
          out[path][name] = await measureTtft(ex, api.url, p, path === "disaggregated");
        }
      } finally {
        await stopAll();
      }
    }
  } finally {
    await ex.close();
  }
  return out;
}

// ---------------------------------------------------------------- part 2: throughput against the decode double

/** utime + stime of a process in seconds, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

interface LoadFigures {
  streams: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
}

/** `CONCURRENCY` loops, each sending one stream after another until `seconds` pass; counts streamed tokens. */
async function closedLoop(one: () => Promise<number>, seconds: number): Promise<LoadFigures> {
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  let tokens = 0;
  let streams = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        const n = await one(); // not `tokens += await one()`: that reads `tokens` before the await
        tokens += n;
        streams++;
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  return { streams, tokens, seconds: round(s)!, tokensPerSecond: Math.round(tokens / s) };
}

async function throughputPart(modelDir: string, tok: Tokenizer, short: { content: string; tokens: number[] }) {
  const uri = await startNats();
  // Ordinary text, so the api's detokenizer does its usual work.
  const ids = tok.encode(WORDS.join(" ") + ". ").slice(0, 32);
  const double = await nodeApp(
    "decode-double",
    join(repoRoot, "apps/api/bench/decode-double.ts"),
    ["--request-plane-uri", uri, "--model-dir", modelDir, "--tokens", ids.join(",")],
    READY_PATTERNS.decode,
    ["--import", "tsx", "--conditions=source"],
  );
  const api = await startApi(uri, modelDir, "throughput", ["--no-disaggregation", "--max-requests-per-worker", "100000"]);
  const plane = await connect(uri, { name: "api-bench-baseline" });
  const client = plane.endpoint(DEFAULT_NAMESPACE, Endpoints.decode.component, Endpoints.decode.endpoint).client<DecodeRequest, DecodeChunk>();
  try {
    const body = chatBody(short.content, STREAM_TOKENS);
    await warmUp(api.url, body, 2);
    await client.waitForInstances({ count: 1, timeoutMs: 10_000 });
    let seq = 0;
    const viaPlane = async () => {
      const req: DecodeRequest = {
        id: `baseline-${seq++}`,
        tokens: short.tokens,
        sampling: { temperature: 0, topP: 1, topK: 0 },
        maxTokens: STREAM_TOKENS,
        stopTokenIds: [],
        deadline: Date.now() + REQUEST_MS,
      };
      let n = 0;
      for await (const c of client.generate(req, { deadline: req.deadline })) n += c.tokens.length;
      return n;
    };
    const viaApi = async () => (await streamChat(api.url, body)).completionTokens;
    const apiLoop = (seconds: number) => {
      newAgent();
      return closedLoop(viaApi, seconds);
    };
    // Warm both paths, then measure api, plane, api, plane: medians of two each.
    await apiLoop(1);
    await closedLoop(viaPlane, 1);
    const apiRuns: (LoadFigures & { apiCpuSeconds: number })[] = [];
    const planeRuns: LoadFigures[] = [];
    for (let round_ = 0; round_ < 2; round_++) {
      const c0 = cpuSeconds(api.proc.pid);
      const r = await apiLoop(LOAD_SECONDS);
      apiRuns.push({ ...r, apiCpuSeconds: cpuSeconds(api.proc.pid) - c0 });
      planeRuns.push(await closedLoop(viaPlane, LOAD_SECONDS));
    }
    const best = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const apiTps = best(apiRuns.map((r) => r.tokensPerSecond));
    const planeTps = best(planeRuns.map((r) => r.tokensPerSecond));
    const cpuPerTokenUs = best(apiRuns.map((r) => (r.apiCpuSeconds / r.tokens) * 1e6));
    return {
      decodeWorker: "test double (apps/api/bench/decode-double.ts; no model)",
      concurrency: CONCURRENCY,
      tokensPerStream: STREAM_TOKENS,
      api: { runs: apiRuns, tokensPerSecond: Math.round(apiTps), cpuPerTokenUs: round(cpuPerTokenUs, 2), tokensPerApiCpuSecond: Math.round(1e6 / cpuPerTokenUs) },
      requestPlaneDirect: { runs: planeRuns, tokensPerSecond: Math.round(planeTps) },
      ratioApiToPlane: round(apiTps / planeTps),
      doublePid: double.proc.pid,
    };
  } finally {
    client.close();
    await plane.close();
    await stopAll();
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const modelDir = DEFAULT_MODEL_DIR;
  needed(join(modelDir, "config.json"));
  workDir = mkdtempSync(join(tmpdir(), "trtd-api-bench-"));
  if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
  const tok = Tokenizer.fromModelDir(modelDir);
  const result: Record<string, unknown> = {
    bench: "api",
    date: new Date().toISOString().slice(0, 10),
    node: process.version,
    cpus: cpus().length,
    executor: { implementation: "reference (CPU)", model: "models/tiny", ...EXECUTOR },
    warmupRequests: WARMUP,
  };
  try {
    const short = promptOf(tok, 16);
    const long = promptOf(tok, 1024);
    if (ONLY !== "throughput") {
      const ttft = await ttftPart(modelDir, { short, long });
      result.ttft = ttft;
      // The floor under the aggregated path's added TTFT on this machine, in the same run: its four hops (HTTP in and
      // out, the link to the worker and back) with no work in them, after an idle gap like the requests' (hop-floor.ts).
      const floor = (await measureHopFloor({ reps: Math.max(100, REPS * 3), gaps: [HOP_FLOOR_GAP_MS] }))[HOP_FLOOR_GAP_MS];
      result.hopFloor = { idleGapMs: HOP_FLOOR_GAP_MS, ...floor };
      log(`hop floor (after ${HOP_FLOOR_GAP_MS} ms idle): TCP round trip p50 ${floor.tcpRoundTripMs.p50} ms + HTTP POST → first SSE event p50 ${floor.httpFirstEventMs.p50} ms = ${floor.floorP50Ms} ms`);
      for (const [path, byLen] of Object.entries(ttft)) {
        for (const f of Object.values(byLen)) {
          if (f.addedMs.p50 !== undefined) f.addedOverHopFloor = Math.round((f.addedMs.p50 / floor.floorP50Ms) * 100) / 100;
          log(`${path.padEnd(14)} ${String(f.promptTokens).padStart(5)} tok: executor p50 ${f.executorTtftMs.p50} ms, HTTP p50 ${f.httpTtftMs.p50} ms, added p50 ${f.addedMs.p50} / p99 ${f.addedMs.p99} ms (${f.addedOverHopFloor}x the hop floor)${f.kvCopyMs ? ` (KV copy p50 ${f.kvCopyMs.p50} ms, after the first token)` : ""}`);
        }
      }
    }
    if (ONLY !== "ttft") {
      const t = await throughputPart(modelDir, tok, short);
      result.throughput = t;
      log(`api x ${CONCURRENCY} streams vs decode TEST DOUBLE: ${t.api.tokensPerSecond} tok/s, ${t.api.cpuPerTokenUs} us api CPU/token (${t.api.tokensPerApiCpuSecond} tok per api CPU-second); request plane direct ${t.requestPlaneDirect.tokensPerSecond} tok/s; ratio ${t.ratioApiToPlane}`);
    }
  } finally {
    tok.free();
    await stopAll();
    agent.destroy();
  }
  rmSync(workDir, { recursive: true, force: true }); // kept after a failure: the processes' logs are there
  console.log(JSON.stringify(result));
}

main().catch(async (err) => {
  console.error(err);
  if (workDir) console.error(`logs: ${workDir}`);
  await stopAll();
  process.exit(1);
});
