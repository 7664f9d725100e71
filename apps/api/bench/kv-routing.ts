// `nx run api:kv-routing-bench`: KV-aware routing with the prefix cache against load routing (with and without the
// cache) and round robin, on a seeded multi-turn trace of chat and agent traffic (issue 18), measured in one run.
// Flags: --users N (chat users, 6), --turns N (chat turns each, 8), --system-words N (chat system prompt, 300),
// --user-words N (60), --assistant-words N (120), --agents N (agent users, 2), --agent-turns N (tool-loop steps, 12),
// --agent-system-words N (400), --task-words N (40), --call-words N (25), --tool-words N (100), --think-ms N (mean
// pause before each next turn: a user reading, a tool running; 0 = none; default 1000), --output-len N (16),
// --seed N (0), --repeat N (1: rounds, the mode order rotating), --kv-blocks N (1024 per worker),
// --kv-overlap-weight X, --kv-load-weight X (the kv mode's weights, default 1, 1), --modes a,b (default all four),
// --executor reference|cuda (reference), --model-dir DIR (models/tiny), --decode-workers N (2),
// --out DIR (docs/benchmarks/kv-routing).
//
// The trace. Chat: `--users` conversations, each `--turns` turns; every prompt is the shared chat system prompt,
// the conversation so far (user and assistant turns of seeded random words: the assistant text is part of the trace,
// not the model's output, so every mode sees the same prompts) and the new user turn. Agents: `--agents` tool loops
// of `--agent-turns` steps; every prompt is the shared agent system prompt (tool descriptions), the task, then per
// step so far the assistant's tool call and the tool's result. All users run at once; each waits for its answer,
// then pauses a seeded exponential time (mean --think-ms, at most 10x) before its next turn. `--output-len` tokens
// are generated per turn. Every prompt must fit the model's context (checked before anything starts).
//
// The modes, each on a fresh deployment in this process: --decode-workers decode workers (real executors, cold
// caches, one thread each on the CPU) on the in-process request plane, the api over HTTP (/v1/completions, streamed), aggregated:
//   kv            --router-mode kv, prefix cache on
//   load          --router-mode load, prefix cache on
//   round-robin   --router-mode round-robin, prefix cache on
//   load-no-cache --router-mode load, prefix cache off: the system before issue 18 (the status quo baseline)
// Measured per mode: TTFT p50/p99, output tokens/s, the prefix-cache hit ratio (from the executors' stats), an
// oracle's hit ratio (each prompt reuses the longest block-aligned prefix it shares with any prompt sent before it,
// short of its last token as the executors cap reuse: a router that knew every cache, nothing evicted), and from
// the router's decision log (RouterOptions.onRoute) the share of follow-up turns sent to the worker holding the
// longest prefix of that prompt. Then where the TTFT goes: the stack's fixed cost (an HTTP request with a short
// prompt against the executor's own TTFT for it, idle), each request's prefill alone (its worker's prompts replayed
// in order on an idle executor with the same settings: the uncached tokens' compute, with the same cache state), and
// the rest, queueing behind the other requests on that worker. Writes results.json, ttft.svg, ttft-parts.svg and
// hit-ratio.svg to --out; the last line of output is one JSON object with every mode's figures and both ratios
// (kv vs load with the cache, kv vs load without it).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { EXECUTOR_DEFAULTS, intFlag, parseFlags, stringFlag, valueFlags, type ExecutorFlags, type ExecutorName } from "@trtd/apps-common";
import { createRandom, lineChart, percentile, randomText, sendStreamingRequest, type Random, type RequestRecord } from "@trtd/bench";
import { startDecodeWorker, type RunningDecodeWorker } from "@trtd/decode";
import { createInProcessPlane } from "@trtd/request-plane";
import { modelDir as TINY_MODEL_DIR } from "@trtd/test-support";
import { Executor } from "@trtd/trtllm";
import { RequestPlaneWorkers, startApiServer, type RouteDecision, type RouterMode } from "../src/index.js";
import { TokenizerCodec } from "../src/tokenizer-adapter.js";

const flags = parseFlags(process.argv.slice(2), {
  ...valueFlags(
    "kv-overlap-weight", "kv-load-weight", "users", "turns", "system-words", "user-words", "assistant-words", "agents", "agent-turns",
    "agent-system-words", "task-words", "call-words", "tool-words", "think-ms", "output-len", "seed", "repeat", "out", "kv-blocks", "modes",
    "executor", "model-dir", "decode-workers",
  ),
});
const int = (name: string, fallback: number, min = 1) => intFlag(flags[name], name, { min, fallback });
const users = int("users", 6, 0);
const turns = int("turns", 8);
const systemWords = int("system-words", 300);
const userWords = int("user-words", 60);
const assistantWords = int("assistant-words", 120);
const agents = int("agents", 2, 0);
const agentTurns = int("agent-turns", 12);
const agentSystemWords = int("agent-system-words", 400);
const taskWords = int("task-words", 40);
const callWords = int("call-words", 25);
const toolWords = int("tool-words", 100);
const thinkMs = int("think-ms", 1000, 0);
const outputLen = int("output-len", 16);
const seed = int("seed", 0, 0);
const repeat = int("repeat", 1);
const kvBlocks = int("kv-blocks", 1024);
const decodeWorkers = int("decode-workers", 2);
const out = resolve(stringFlag(flags, "out") ?? "docs/benchmarks/kv-routing");
if (users + agents === 0) throw new Error("--users and --agents are both 0: the trace is empty");
const T = 16;
const weight = (name: string): number => {
  const v = stringFlag(flags, name);
  const n = v === undefined ? 1 : Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0, got ${v}`);
  return n;
};
const kvWeights = { overlapWeight: weight("kv-overlap-weight"), loadWeight: weight("kv-load-weight") };

interface BenchMode {
  name: string;
  router: RouterMode;
  prefixCache: boolean;
}
const ALL_MODES: readonly BenchMode[] = [
  { name: "kv", router: "kv", prefixCache: true },
  { name: "load", router: "load", prefixCache: true },
  { name: "round-robin", router: "round-robin", prefixCache: true },
  { name: "load-no-cache", router: "load", prefixCache: false },
];
const modes = (() => {
  const names = (stringFlag(flags, "modes") ?? ALL_MODES.map((m) => m.name).join(",")).split(",");
  return names.map((n) => {
    const m = ALL_MODES.find((x) => x.name === n);
    if (!m) throw new Error(`--modes: unknown mode ${n} (one of ${ALL_MODES.map((x) => x.name).join(", ")})`);
    return m;
  });
})();

const executorName: ExecutorName = (() => {
  const e = stringFlag(flags, "executor") ?? "reference";
  if (e !== "reference" && e !== "cuda") throw new Error(`--executor takes reference or cuda, got ${e}`);
  return e;
})();
const modelDir = resolve(stringFlag(flags, "model-dir") ?? TINY_MODEL_DIR);
const EXECUTOR = { ...EXECUTOR_DEFAULTS, threads: 1, kvBlockCount: kvBlocks, kvTokensPerBlock: T, executor: executorName };
const WORKER_EXECUTOR = { ...EXECUTOR, modelDir };

/** One user's turns: the prompts in order, and the pause before each (none before the first). */
interface Conversation {
  kind: "chat" | "agent";
  prompts: string[];
  thinkMs: number[];
}

/** Seeded exponential pause with mean --think-ms, capped at 10x the mean (a bounded wait). */
const pause = (rng: Random) => (thinkMs === 0 ? 0 : Math.min(10 * thinkMs, -thinkMs * Math.log(1 - rng.next())));

/** The trace: chat conversations (growing histories) and agent tool loops (many short steps on a long context). */
function trace(): Conversation[] {
  const rng = createRandom(seed);
  const chatSystem = `System: ${randomText(rng, systemWords)}`;
  const agentSystem = `System: you can call these tools. ${randomText(rng, agentSystemWords)}`;
  const chats = Array.from({ length: users }, (): Conversation => {
    let history = chatSystem;
    const prompts: string[] = [];
    const waits: number[] = [];
    for (let t = 0; t < turns; t++) {
      history += `\nUser: ${randomText(rng, userWords)}\nAssistant:`;
      prompts.push(history);
      waits.push(t === 0 ? 0 : pause(rng));
      history += ` ${randomText(rng, assistantWords)}`;
    }
    return { kind: "chat", prompts, thinkMs: waits };
  });
  const loops = Array.from({ length: agents }, (): Conversation => {
    let history = `${agentSystem}\nUser: ${randomText(rng, taskWords)}\nAssistant:`;
    const prompts: string[] = [];
    const waits: number[] = [];
    for (let t = 0; t < agentTurns; t++) {
      prompts.push(history);
      waits.push(t === 0 ? 0 : pause(rng));
      history += ` call ${randomText(rng, callWords)}\nTool: ${randomText(rng, toolWords)}\nAssistant:`;
    }
    return { kind: "agent", prompts, thinkMs: waits };
  });
  return [...chats, ...loops];
}

/** Longest common prefix of two token arrays. */
function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
}
/** Tokens an executor reuses for `p` given a prefix of `k` tokens cached: whole blocks, short of the last token. */
const reusable = (p: readonly number[], k: number) => Math.min(Math.floor(k / T), Math.floor((p.length - 1) / T)) * T;

/** The oracle: each prompt reuses the longest capped, block-aligned prefix shared with any prompt sent before it. */
function oracleHits(sent: readonly number[][]): { hit: number; total: number } {
  let hit = 0;
  let total = 0;
  sent.forEach((p, i) => {
    let best = 0;
    for (let j = 0; j < i; j++) best = Math.max(best, commonPrefix(p, sent[j]!));
    hit += reusable(p, best);
    total += p.length;
  });
  return { hit, total };
}

interface ModeResult {
  mode: string;
  requests: number;
  failed: number;
  ttftP50Ms: number;
  ttftP90Ms: number;
  ttftP99Ms: number;
  ttftMeanMs: number;
  outputTokensPerS: number;
  hitRatio: number;
  oracleHitRatio: number;
  /** Follow-up turns (not a user's first) sent to a worker holding the longest reusable prefix of that prompt. */
  toHistoryHolder: number;
  /** Of those, the share the kv mode's index also saw there at decision time (undefined in other modes). */
  indexSawHolder?: number;
  /** The first follow-up turns sent elsewhere, per worker (decoder order): tokens held, outstanding and the index's view then (-1: none). */
  missedHolder: { turn: number; promptTokens: number; heldTokens: number[]; chosen: number; outstanding: number[]; indexCached: number[] }[];
  /** Prompt tokens each worker computed (its misses, less the warm-up): how evenly the mode spread the work. */
  computedPerWorker: number[];
  /** Where TTFT goes (medians over the requests): the stack's fixed cost, the prefill alone, the rest (queueing). */
  parts: { fixedMs: number; prefillP50Ms: number; queueP50Ms: number; uncachedTokensP50: number };
  /** Share of the trace's wall time this process's event loop was busy (the api, the workers' JS, the client). */
  eventLoopBusy: number;
  wallS: number;
}

/** An executor's TTFT for a prompt, the executor idle (maxNewTokens 1: the prefill and the first token). */
async function executorTtft(ex: Executor, prompt: number[]): Promise<number> {
  const t0 = performance.now();
  for await (const c of ex.generate({ prompt, maxNewTokens: 1 })) if (c.error) throw c.error;
  return performance.now() - t0;
}

/** Each request's prefill alone: the prompts a worker got, replayed in that order on an idle executor like it. */
async function replayPrefills(mode: BenchMode, perWorker: number[][][]): Promise<number[][]> {
  const timings: number[][] = [];
  for (const prompts of perWorker) {
    const ex = Executor.open(modelDir, { ...EXECUTOR, prefixCache: mode.prefixCache });
    try {
      await executorTtft(ex, [1, 2, 3]); // warm up, as the workers were
      const t: number[] = [];
      for (const p of prompts) t.push(await executorTtft(ex, p));
      timings.push(t);
    } finally {
      await ex.close();
    }
  }
  return timings;
}

async function runMode(mode: BenchMode, conversations: Conversation[], codec: TokenizerCodec): Promise<ModeResult> {
  const plane = createInProcessPlane({ leaseMs: 2000 });
  const decoders: RunningDecodeWorker[] = [];
  let api: Awaited<ReturnType<typeof startApiServer>> | undefined;
  const probe = new RequestPlaneWorkers(plane);
  const decisions = new Map<string, RouteDecision>(); // by prompt tokens: every prompt of the trace is distinct
  const key = (tokens: readonly number[]) => tokens.join(",");
  let stopped = false;
  const stopAll = async () => {
    if (stopped) return;
    stopped = true;
    probe.close();
    await api?.close();
    for (const d of decoders) await d.stop(1000);
    await plane.close();
  };
  try {
    // The worker's --prefix-cache off (ExecutorFlags.prefixCache false); checked below: no hits without the cache.
    const executor: ExecutorFlags = { ...WORKER_EXECUTOR, ...(mode.prefixCache ? {} : { prefixCache: false as const }) };
    for (let i = 0; i < decodeWorkers; i++) decoders.push(await startDecodeWorker({ plane, executor }));
    api = await startApiServer({
      plane,
      tokenizerDir: modelDir,
      modelName: "bench",
      port: 0,
      routerMode: mode.router,
      kvWeights,
      prefill: { enabled: false },
      onRoute: (d) => d.attempt === 1 && decisions.set(key(d.tokens), d),
      log: () => {},
    });
    await probe.waitForDecode(decodeWorkers, 10_000);
    for (const d of decoders) await d.executor.generate({ prompt: [1, 2, 3], maxNewTokens: 2 }).collect(); // warm up, nothing cached worth a hit
    const client = { baseUrl: api.url, model: "bench", endpoint: "completions" as const, requestTimeoutMs: 120_000 };
    // The stack's fixed cost: short prompts (under one block: never cached) through HTTP, one at a time.
    const shortPrompts = Array.from({ length: 9 }, (_, i) => `probe ${i} of the stack`);
    const stackTtft: number[] = [];
    for (const [i, prompt] of shortPrompts.entries()) {
      const r = await sendStreamingRequest(client, { prompt, maxTokens: 1 }, { index: i, scheduledAtMs: 0, runStart: performance.now() });
      if (!r.ok) throw new Error(`stack probe failed: ${r.error}`);
      stackTtft.push(r.ttftMs!);
    }
    // The api's own encoding of each completions prompt, done before the clock starts (this process serves too).
    const encoded = await Promise.all(conversations.map((c) => Promise.all(c.prompts.map((p) => codec.encode(p)))));
    const base = decoders.map((d) => d.executor.stats());
    const elu0 = performance.eventLoopUtilization();
    const sent: number[][] = []; // prompts in the order they were sent
    const records: { rec: RequestRecord; tokens: number[]; turn: number }[] = [];
    const start = performance.now();
    const deadline = start + 300_000; // the whole trace is bounded, whatever the flags
    await Promise.all(
      conversations.map(async (conv, u) => {
        for (const [t, prompt] of conv.prompts.entries()) {
          if (performance.now() > deadline) throw new Error(`mode ${mode.name}: the trace ran past 300 s`);
          if (conv.thinkMs[t]! > 0) await sleep(conv.thinkMs[t]!);
          const tokens = encoded[u]![t]!;
          sent.push(tokens);
          const rec = await sendStreamingRequest(client, { prompt, maxTokens: outputLen }, { index: u * 1000 + t, scheduledAtMs: 0, runStart: start });
          records.push({ rec, tokens, turn: t });
        }
      }),
    );
    const wallS = (performance.now() - start) / 1000;
    const eventLoopBusy = performance.eventLoopUtilization(elu0).utilization;
    const stats = decoders.map((d) => d.executor.stats());
    const hit = stats.reduce((n, s, i) => n + s.prefixCacheHitTokens - base[i]!.prefixCacheHitTokens, 0);
    const miss = stats.reduce((n, s, i) => n + s.prefixCacheMissTokens - base[i]!.prefixCacheMissTokens, 0);
    if (!mode.prefixCache && hit > 0) throw new Error(`mode ${mode.name}: the workers' prefix cache was not off (${hit} hit tokens)`);
    const ok = records.filter((r) => r.rec.ok);
    const { hit: oracleHit, total: promptTotal } = oracleHits(sent);

    // Routing: per worker, the prompts in the order the router sent them; for each, the reusable prefix there.
    const ids = decoders.map((d) => d.instanceId);
    const perWorker: number[][][] = ids.map(() => []);
    let followUps = 0;
    let toHolder = 0;
    let indexSaw = 0;
    const missed: ModeResult["missedHolder"] = [];
    const order = [...decisions.values()]; // insertion order = decision order
    for (const d of order) {
      const w = ids.indexOf(d.instanceId);
      const held = perWorker.map((ps) => ps.reduce((best, q) => Math.max(best, reusable(d.tokens, commonPrefix(d.tokens, q))), 0));
      const rec = records.find((r) => key(r.tokens) === key(d.tokens));
      if (rec && rec.turn > 0) {
        followUps++;
        if (held[w]! < Math.max(...held) && missed.length < 12) {
          missed.push({ turn: rec.turn, promptTokens: d.tokens.length, heldTokens: held, chosen: w, outstanding: ids.map((id) => d.candidates.find((c) => c.id === id)?.outstanding ?? -1), indexCached: ids.map((id) => d.candidates.find((c) => c.id === id)?.cachedTokens ?? -1) });
        }
        if (held[w]! >= Math.max(...held)) {
          toHolder++;
          const seen = d.candidates.find((c) => c.id === d.instanceId)?.cachedTokens;
          if (seen !== undefined && seen >= held[w]!) indexSaw++;
        }
      }
      perWorker[w]!.push([...d.tokens]);
    }
    // Where TTFT goes: replay each worker's prompts alone (after this deployment has stopped), then fixed +
    // prefill + the rest.
    await stopAll();
    const replay = await replayPrefills(mode, perWorker);
    const probeEx = Executor.open(modelDir, { ...EXECUTOR, prefixCache: false });
    const executorShort: number[] = [];
    try {
      await executorTtft(probeEx, [1, 2, 3]);
      for (const p of shortPrompts) executorShort.push(await executorTtft(probeEx, await codec.encode(p)));
    } finally {
      await probeEx.close();
    }
    const fixedMs = percentile(stackTtft, 50)! - percentile(executorShort, 50)!;
    const prefillMs: number[] = [];
    const queueMs: number[] = [];
    const uncached: number[] = [];
    for (const { rec, tokens } of ok) {
      const d = decisions.get(key(tokens));
      if (!d) continue;
      const w = ids.indexOf(d.instanceId);
      const i = perWorker[w]!.findIndex((p) => key(p) === key(tokens));
      const prefill = replay[w]![i]!;
      prefillMs.push(prefill);
      queueMs.push(rec.ttftMs! - fixedMs - prefill);
      const earlier = perWorker[w]!.slice(0, i);
      uncached.push(tokens.length - (mode.prefixCache ? earlier.reduce((b, q) => Math.max(b, reusable(tokens, commonPrefix(tokens, q))), 0) : 0));
    }
    const ttfts = ok.map((r) => r.rec.ttftMs!);
    return {
      mode: mode.name,
      requests: records.length,
      failed: records.length - ok.length,
      ttftP50Ms: percentile(ttfts, 50)!,
      ttftP90Ms: percentile(ttfts, 90)!,
      ttftP99Ms: percentile(ttfts, 99)!,
      ttftMeanMs: ttfts.reduce((a, b) => a + b, 0) / ttfts.length,
      outputTokensPerS: ok.reduce((n, r) => n + r.rec.outputTokens, 0) / wallS,
      hitRatio: hit / (hit + miss),
      oracleHitRatio: oracleHit / promptTotal,
      toHistoryHolder: toHolder / Math.max(1, followUps),
      ...(mode.router === "kv" ? { indexSawHolder: indexSaw / Math.max(1, toHolder) } : {}),
      missedHolder: missed,
      computedPerWorker: stats.map((s, i) => s.prefixCacheMissTokens - base[i]!.prefixCacheMissTokens),
      parts: { fixedMs, prefillP50Ms: percentile(prefillMs, 50)!, queueP50Ms: percentile(queueMs, 50)!, uncachedTokensP50: percentile(uncached, 50)! },
      eventLoopBusy,
      wallS,
    };
  } finally {
    await stopAll();
  }
}

const codec = TokenizerCodec.fromModelDir(modelDir);
const conversations = trace();
// Every prompt must fit the model's context with its output (the executors refuse longer ones).
const context = (JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")) as { max_position_embeddings: number }).max_position_embeddings;
const longest = Math.max(...(await Promise.all(conversations.map(async (c) => (await codec.encode(c.prompts.at(-1)!)).length))));
if (longest + outputLen > context) {
  throw new Error(`the longest prompt has ${longest} tokens; with --output-len ${outputLen} it exceeds the model's context of ${context}: fewer --turns/--agent-turns or shorter turns`);
}
const load0 = loadavg();
// Warm-up, not measured: the first deployment in a process pays for compiling and starting what all share, and
// each mode's own code is compiled before it is timed.
for (const mode of modes) await runMode(mode, [{ kind: "chat", prompts: conversations[0]!.prompts.slice(0, 2), thinkMs: [0, 0] }], codec);
const results: ModeResult[] = [];
for (let r = 0; r < repeat; r++) {
  const order = modes.map((_, i) => modes[(i + r) % modes.length]!);
  for (const mode of order) {
    const res = await runMode(mode, conversations, codec);
    results.push(res);
    process.stderr.write(`${JSON.stringify(res)}\n`);
  }
}
codec.free();
const load1 = loadavg();

const median = (xs: number[]) => percentile(xs, 50)!;
const summaryOf = (name: string) => {
  const rs = results.filter((r) => r.mode === name);
  const m = (f: (r: ModeResult) => number) => Math.round(median(rs.map(f)) * 1000) / 1000;
  return {
    ttftP50Ms: m((r) => r.ttftP50Ms),
    ttftP90Ms: m((r) => r.ttftP90Ms),
    ttftP99Ms: m((r) => r.ttftP99Ms),
    ttftMeanMs: m((r) => r.ttftMeanMs),
    outputTokensPerS: m((r) => r.outputTokensPerS),
    hitRatio: m((r) => r.hitRatio),
    oracleHitRatio: m((r) => r.oracleHitRatio),
    toHistoryHolder: m((r) => r.toHistoryHolder),
    fixedMs: m((r) => r.parts.fixedMs),
    prefillP50Ms: m((r) => r.parts.prefillP50Ms),
    queueP50Ms: m((r) => r.parts.queueP50Ms),
    uncachedTokensP50: m((r) => r.parts.uncachedTokensP50),
    eventLoopBusy: m((r) => r.eventLoopBusy),
    failed: rs.reduce((n, r) => n + r.failed, 0),
  };
};
type Summary = ReturnType<typeof summaryOf>;
const summary: Record<string, Summary> = Object.fromEntries(modes.map((m) => [m.name, summaryOf(m.name)]));
const ratio = (a: string, b: string, f: (s: Summary) => number = (s) => s.ttftP50Ms) =>
  summary[a] && summary[b] ? Math.round((f(summary[a]) / f(summary[b])) * 1000) / 1000 : undefined;

mkdirSync(out, { recursive: true });
const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, date: new Date().toISOString(), loadavg1mBefore: load0[0], loadavg1mAfter: load1[0] };
const settings = {
  executor: executorName, modelDir, kvWeights, users, turns, systemWords, userWords, assistantWords, agents, agentTurns, agentSystemWords, taskWords, callWords, toolWords,
  thinkMs, outputLen, seed, repeat, kvBlocks, tokensPerBlock: T, decodeWorkers, longestPromptTokens: longest,
};
writeFileSync(join(out, "results.json"), JSON.stringify({ machine, settings, summary, runs: results }, null, 2) + "\n");
writeFileSync(
  join(out, "ttft.svg"),
  lineChart({
    title: `TTFT by mode (multi-turn chat + agent trace, ${decodeWorkers} decode workers)`,
    xLabel: "percentile",
    yLabel: "TTFT (ms)",
    series: modes.map((m, i) => ({
      name: m.name,
      colorIndex: i,
      points: [[50, summary[m.name]!.ttftP50Ms], [90, summary[m.name]!.ttftP90Ms], [99, summary[m.name]!.ttftP99Ms]] as [number, number][],
    })),
  }),
);
writeFileSync(
  join(out, "ttft-parts.svg"),
  lineChart({
    title: "Where TTFT p50 goes, by mode (0 kv, 1 load, 2 round-robin, 3 load-no-cache)",
    xLabel: "mode",
    yLabel: "ms (medians)",
    series: (["fixedMs", "prefillP50Ms", "queueP50Ms", "ttftP50Ms"] as const).map((part, i) => ({
      name: part,
      colorIndex: i,
      points: modes.map((m) => [ALL_MODES.indexOf(m), summary[m.name]![part]] as [number, number]),
    })),
  }),
);
writeFileSync(
  join(out, "hit-ratio.svg"),
  lineChart({
    title: "Prefix-cache hit ratio by mode (actual, and an oracle with exact caches)",
    xLabel: "mode (0 kv, 1 load, 2 round-robin, 3 load-no-cache)",
    yLabel: "hit ratio",
    series: [
      { name: "actual", points: modes.map((m) => [ALL_MODES.indexOf(m), summary[m.name]!.hitRatio] as [number, number]) },
      { name: "oracle", dashed: true, points: modes.map((m) => [ALL_MODES.indexOf(m), summary[m.name]!.oracleHitRatio] as [number, number]) },
    ],
  }),
);
process.stdout.write(
  JSON.stringify({
    modes: summary,
    ttftP50LoadCacheOverKv: ratio("load", "kv"),
    ttftP50LoadNoCacheOverKv: ratio("load-no-cache", "kv"),
    ttftMeanLoadCacheOverKv: ratio("load", "kv", (x) => x.ttftMeanMs),
    ttftMeanLoadNoCacheOverKv: ratio("load-no-cache", "kv", (x) => x.ttftMeanMs),
    failed: results.reduce((n, r) => n + r.failed, 0),
    loadavg1m: [load0[0], load1[0]],
    out,
  }) + "\n",
);
