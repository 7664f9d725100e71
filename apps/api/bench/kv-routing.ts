// `nx run api:kv-routing-bench`: KV-aware routing with the prefix cache against load routing and round robin, on a
// seeded multi-turn conversation trace (issue 18), measured in one run on the same machine.
// Flags: --users N (6), --turns N (4), --system-words N (600), --user-words N (40), --assistant-words N (40),
// --output-len N (16), --seed N (0), --repeat N (1: rounds, the mode order rotating), --kv-blocks N (1024 per worker),
// --kv-overlap-weight X, --kv-load-weight X (1, 1), --out DIR (docs/benchmarks/kv-routing).
//
// The trace: `--users` conversations run at once, each `--turns` turns one after the other; every prompt is the
// shared system prompt (`--system-words` common words, about one token each), then the conversation so far (user
// and assistant turns of seeded random words: the assistant text is part of the trace, not the model's output, so
// every mode sees the same prompts), then the new user turn; `--output-len` tokens are generated per turn.
// For each mode (kv, load, round-robin, in an order that rotates with --repeat) a fresh deployment runs in this
// process: 2 decode workers (real reference executors, cold caches) on the in-process request plane and the api
// with that --router-mode, aggregated (no prefill worker). Requests go through HTTP (/v1/completions, streamed).
// Measured per mode: TTFT p50/p99, output tokens/s, the prefix-cache hit ratio (hit / (hit + miss) prompt tokens,
// from the executors' stats), and an oracle's: each prompt reuses the longest block-aligned prefix it shares with
// any prompt sent before it (short of its last token, as the executors cap reuse), i.e. what a router that knew
// every worker's cache exactly, with nothing evicted, could reuse at best. The baseline (load routing) runs in the same process, so the printed ratio compares like
// with like. Writes results.json and ttft.svg to --out; the last line of output is one JSON object.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import { EXECUTOR_DEFAULTS, intFlag, parseFlags, stringFlag, valueFlags } from "@trtd/apps-common";
import { createRandom, lineChart, percentile, randomText, sendStreamingRequest, type RequestRecord } from "@trtd/bench";
import { startDecodeWorker, type RunningDecodeWorker } from "@trtd/decode";
import { createInProcessPlane } from "@trtd/request-plane";
import { modelDir } from "@trtd/test-support";
import { RequestPlaneWorkers, ROUTER_MODES, startApiServer, type RouterMode } from "../src/index.js";
import { TokenizerCodec } from "../src/tokenizer-adapter.js";

const flags = parseFlags(process.argv.slice(2), { ...valueFlags("kv-overlap-weight", "kv-load-weight", "users", "turns", "system-words", "user-words", "assistant-words", "output-len", "seed", "repeat", "out", "kv-blocks") });
const users = intFlag(flags.users, "users", { min: 1, fallback: 6 });
const turns = intFlag(flags.turns, "turns", { min: 1, fallback: 4 });
const systemWords = intFlag(flags["system-words"], "system-words", { min: 1, fallback: 600 });
const userWords = intFlag(flags["user-words"], "user-words", { min: 1, fallback: 40 });
const assistantWords = intFlag(flags["assistant-words"], "assistant-words", { min: 1, fallback: 40 });
const outputLen = intFlag(flags["output-len"], "output-len", { min: 1, fallback: 16 });
const seed = intFlag(flags.seed, "seed", { min: 0, fallback: 0 });
const repeat = intFlag(flags.repeat, "repeat", { min: 1, fallback: 1 });
const kvBlocks = intFlag(flags["kv-blocks"], "kv-blocks", { min: 1, fallback: 1024 });
const out = resolve(stringFlag(flags, "out") ?? "docs/benchmarks/kv-routing");
const T = 16;
const weight = (name: string): number => {
  const v = stringFlag(flags, name);
  const n = v === undefined ? 1 : Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0, got ${v}`);
  return n;
};
const kvWeights = { overlapWeight: weight("kv-overlap-weight"), loadWeight: weight("kv-load-weight") };

/** The trace: per user, the prompt of each turn (the system prompt, the conversation so far, the new user turn). */
function trace(): string[][] {
  const rng = createRandom(seed);
  const system = `System: ${randomText(rng, systemWords)}`;
  return Array.from({ length: users }, () => {
    let history = system;
    const prompts: string[] = [];
    for (let t = 0; t < turns; t++) {
      history += `\nUser: ${randomText(rng, userWords)}\nAssistant:`;
      prompts.push(history);
      history += ` ${randomText(rng, assistantWords)}`;
    }
    return prompts;
  });
}

/** The oracle: each prompt reuses the longest capped, block-aligned prefix shared with any prompt sent before it. */
function oracleHits(sent: readonly number[][]): { hit: number; total: number } {
  let hit = 0;
  let total = 0;
  sent.forEach((p, i) => {
    let best = 0;
    for (let j = 0; j < i; j++) {
      const q = sent[j]!;
      let k = 0;
      while (k < p.length && k < q.length && p[k] === q[k]) k++;
      best = Math.max(best, k);
    }
    hit += Math.min(Math.floor(best / T), Math.floor((p.length - 1) / T)) * T;
    total += p.length;
  });
  return { hit, total };
}

interface ModeResult {
  mode: RouterMode;
  requests: number;
  failed: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  outputTokensPerS: number;
  hitRatio: number;
  oracleHitRatio: number;
  /** Prompt tokens each worker computed (its misses, less the warm-up): how evenly the mode spread the work. */
  computedPerWorker: number[];
  wallS: number;
}

async function runMode(mode: RouterMode, prompts: string[][], codec: TokenizerCodec): Promise<ModeResult> {
  const plane = createInProcessPlane({ leaseMs: 2000 });
  const decoders: RunningDecodeWorker[] = [];
  let api: Awaited<ReturnType<typeof startApiServer>> | undefined;
  const probe = new RequestPlaneWorkers(plane);
  try {
    for (let i = 0; i < 2; i++) {
      decoders.push(await startDecodeWorker({ plane, executor: { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: kvBlocks, kvTokensPerBlock: T } }));
    }
    api = await startApiServer({ plane, tokenizerDir: modelDir, modelName: "tiny", port: 0, routerMode: mode, kvWeights, prefill: { enabled: false }, log: () => {} });
    await probe.waitForDecode(2, 10_000);
    for (const d of decoders) await d.executor.generate({ prompt: [1, 2, 3], maxNewTokens: 2 }).collect(); // warm up, nothing cached worth a hit
    const fp = decoders[0]!.executor.model.fingerprint;
    const sent: number[][] = []; // prompts in the order they were sent
    const records: RequestRecord[] = [];
    const start = performance.now();
    await Promise.all(
      prompts.map(async (conversation, u) => {
        for (const [t, prompt] of conversation.entries()) {
          sent.push(await codec.encode(prompt)); // the api's own encoding of a completions prompt
          records.push(
            await sendStreamingRequest(
              { baseUrl: api!.url, model: "tiny", endpoint: "completions", requestTimeoutMs: 120_000 },
              { prompt, maxTokens: outputLen },
              { index: u * turns + t, scheduledAtMs: 0, runStart: start },
            ),
          );
        }
      }),
    );
    const wallS = (performance.now() - start) / 1000;
    const stats = decoders.map((d) => d.executor.stats());
    const hit = stats.reduce((n, s) => n + s.prefixCacheHitTokens, 0);
    const miss = stats.reduce((n, s) => n + s.prefixCacheMissTokens, 0) - 3 * decoders.length; // less the warm-up prompts
    const ok = records.filter((r) => r.ok);
    const { hit: oracleHit, total: promptTotal } = oracleHits(sent);
    const ttfts = ok.map((r) => r.ttftMs!);
    return {
      mode,
      requests: records.length,
      failed: records.length - ok.length,
      ttftP50Ms: percentile(ttfts, 50)!,
      ttftP99Ms: percentile(ttfts, 99)!,
      outputTokensPerS: ok.reduce((n, r) => n + r.outputTokens, 0) / wallS,
      hitRatio: hit / (hit + miss),
      oracleHitRatio: oracleHit / promptTotal,
      computedPerWorker: stats.map((s) => s.prefixCacheMissTokens - 3),
      wallS,
    };
  } finally {
    probe.close();
    await api?.close();
    for (const d of decoders) await d.stop(1000);
    await plane.close();
  }
}

const codec = TokenizerCodec.fromModelDir(modelDir);
const prompts = trace();
// Warm-up, not measured: the first deployment in a process pays for compiling and starting what all share, and
// each mode's own code is compiled before it is timed.
for (const mode of ROUTER_MODES) await runMode(mode, [prompts[0]!.slice(0, 2)], codec);
const results: ModeResult[] = [];
for (let r = 0; r < repeat; r++) {
  const order = ROUTER_MODES.map((_, i) => ROUTER_MODES[(i + r) % ROUTER_MODES.length]!);
  for (const mode of order) {
    const res = await runMode(mode, prompts, codec);
    results.push(res);
    process.stderr.write(`${JSON.stringify(res)}\n`);
  }
}
codec.free();

const byMode = (m: RouterMode) => results.filter((r) => r.mode === m);
const median = (xs: number[]) => percentile(xs, 50)!;
const summary = Object.fromEntries(
  ROUTER_MODES.map((m) => [
    m,
    {
      ttftP50Ms: median(byMode(m).map((r) => r.ttftP50Ms)),
      ttftP99Ms: median(byMode(m).map((r) => r.ttftP99Ms)),
      outputTokensPerS: median(byMode(m).map((r) => r.outputTokensPerS)),
      hitRatio: median(byMode(m).map((r) => r.hitRatio)),
      oracleHitRatio: median(byMode(m).map((r) => r.oracleHitRatio)),
      failed: byMode(m).reduce((n, r) => n + r.failed, 0),
    },
  ]),
) as Record<RouterMode, { ttftP50Ms: number; ttftP99Ms: number; outputTokensPerS: number; hitRatio: number; oracleHitRatio: number; failed: number }>;

mkdirSync(out, { recursive: true });
const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, date: new Date().toISOString() };
const settings = { kvWeights, users, turns, systemWords, userWords, assistantWords, outputLen, seed, repeat, kvBlocks, tokensPerBlock: T, decodeWorkers: 2 };
writeFileSync(join(out, "results.json"), JSON.stringify({ machine, settings, summary, runs: results }, null, 2) + "\n");
writeFileSync(
  join(out, "ttft.svg"),
  lineChart({
    title: "TTFT by router mode (multi-turn trace, 2 decode workers)",
    xLabel: "percentile",
    yLabel: "TTFT (ms)",
    series: ROUTER_MODES.map((m, i) => ({ name: m, colorIndex: i, points: [[50, summary[m].ttftP50Ms], [99, summary[m].ttftP99Ms]] as [number, number][] })),
  }),
);
writeFileSync(
  join(out, "hit-ratio.svg"),
  lineChart({
    title: "Prefix-cache hit ratio by router mode (actual, and an oracle with exact caches)",
    xLabel: "mode (0 kv, 1 load, 2 round-robin)",
    yLabel: "hit ratio",
    series: [
      { name: "actual", points: ROUTER_MODES.map((m, i) => [i, summary[m].hitRatio] as [number, number]) },
      { name: "oracle", dashed: true, points: ROUTER_MODES.map((m, i) => [i, summary[m].oracleHitRatio] as [number, number]) },
    ],
  }),
);
process.stdout.write(
  JSON.stringify({
    kvTtftP50Ms: summary.kv.ttftP50Ms,
    loadTtftP50Ms: summary.load.ttftP50Ms,
    roundRobinTtftP50Ms: summary["round-robin"].ttftP50Ms,
    ttftP50LoadOverKv: summary.load.ttftP50Ms / summary.kv.ttftP50Ms,
    kvHitRatio: summary.kv.hitRatio,
    kvOracleHitRatio: summary.kv.oracleHitRatio,
    failed: ROUTER_MODES.reduce((n, m) => n + summary[m].failed, 0),
    out,
  }) + "\n",
);
