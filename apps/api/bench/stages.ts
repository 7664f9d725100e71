// Where the api path's time to first token goes, stage by stage (issues 16 and 19).
//
//   node --import tsx --conditions=source apps/api/bench/stages.ts [--executor reference|cuda] [--model-dir DIR]
//     [--reps N] [--prompt-words 16,1000] [--threads N] [--kv-block-count N] [--direct-data-path on,off]
//     [--path aggregated,disaggregated] [--warmup N]
//
// Starts nats-server, one decode worker and an api (--no-disaggregation: the aggregated path), each on 127.0.0.1 and
// run as this process runs (sources through tsx, or dist/), with TRTD_TRACE_STAGES=1: each writes `trtd-stage <label>
// <ns>` stamps to stderr (@trtd/process traceStage; one monotonic clock for the whole host). For each prompt length,
// one streaming chat request through HTTP (max_tokens 2, greedy) alternates with the executor's own TTFT, measured in
// this process on an executor opened with the workers' settings for the same prompt tokens. Per request the stamps are
// placed on the timeline of the client's send; the medians over the reps show which hop costs what:
//   api.arrival, api.parsed, api.tokenized, api.dispatch     the api, from the request's arrival to the request plane
//   plane.request_in, decode.handler, decode.enqueued       the decode worker, from the NATS message to the executor
//   decode.first_token, plane.reply_flush                   the first token leaves the worker
//   plane.request_out / plane.reply_in                       the api's request-plane client: publish, and a reply frame in
//   api.first_token, api.sse_write_now, client.first_content back through the api to the client
// --direct-data-path takes on, off or a list: each mode gets a fresh api and decode worker with that flag (the
// request plane's direct data path, or every frame through nats-server), measured one after the other in this run.
// Per mode it also reports the two request-plane legs per request: out = plane.request_in - api.dispatch (api
// router, request plane, nats-server or the link), back = api.first_token - the worker's last plane.reply_flush before it.
// --path disaggregated (or a list with aggregated) adds a prefill worker and an api that sends every prompt to it
// (--disagg-min-prompt-tokens 1); its stamps: prefill.handler, prefill.first_token, prefill.offered (the KV offered),
// api.prefill_done (the router has the prefill's answer), decode.pull_start, decode.pull_done (the KV pulled and
// imported: the copy itself). Its JSON keys are disaggregated_direct_<mode>; the executor's own TTFT stays the
// aggregated one (the same prompt on one executor), so "added" there includes the KV pull.
// --warmup N (default 200): requests (each followed by an executor run) per prompt length before the measured ones, so
// that the measured requests run the code V8 has optimised, as a serving api does (--warmup 5 was the old default).
// The last line is one JSON object. Every process is stopped by PID at the end; every wait is bounded.
import { Agent, request } from "node:http";
import { resolve } from "node:path";
import { DEFAULT_MODEL_DIR, executorArgv, intFlag, parseFlags, READY_PATTERNS, stringFlag, UsageError, valueFlags } from "@trtd/apps-common";
import { describe } from "@trtd/bench";
import { parseStageLine, spawnChild, STAGE_FLUSH_AFTER_MS, type Child } from "@trtd/process";
import { startNatsServer } from "@trtd/request-plane";
import { Tokenizer } from "@trtd/tokenizer";
import { Executor } from "@trtd/trtllm";

function stageFlags(argv: string[]) {
  const f = parseFlags(argv, valueFlags("executor", "model-dir", "reps", "warmup", "prompt-words", "threads", "kv-block-count", "direct-data-path", "path"));
  const modes = (stringFlag(f, "direct-data-path") ?? "on").split(",");
  for (const m of modes) if (m !== "on" && m !== "off") throw new UsageError(`--direct-data-path takes on, off or a list of them, got ${m}`);
  const paths = (stringFlag(f, "path") ?? "aggregated").split(",");
  for (const p of paths) if (p !== "aggregated" && p !== "disaggregated") throw new UsageError(`--path takes aggregated, disaggregated or a list of them, got ${p}`);
  const executor = stringFlag(f, "executor") ?? "reference";
  if (executor !== "reference" && executor !== "cuda") throw new UsageError(`--executor takes reference or cuda, got ${executor}`);
  const words = (stringFlag(f, "prompt-words") ?? "16,1000").split(",").map((w) => intFlag(w, "prompt-words", { min: 1, fallback: 16 }));
  return {
    executor,
    modelDir: resolve(stringFlag(f, "model-dir") ?? DEFAULT_MODEL_DIR),
    reps: intFlag(f.reps, "reps", { min: 1, fallback: 30 }),
    warmup: intFlag(f.warmup, "warmup", { min: 0, fallback: 200 }),
    words,
    modes: modes as Array<"on" | "off">,
    paths: paths as Array<"aggregated" | "disaggregated">,
    threads: intFlag(f.threads, "threads", { min: 1, fallback: 1 }),
    kvBlockCount: intFlag(f["kv-block-count"], "kv-block-count", { min: 1, fallback: executor === "cuda" ? 512 : 2048 }),
  };
}
const opts = (() => {
  try {
    return stageFlags(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`api stages: ${err.message}`);
    process.exit(2);
  }
})();

const STARTUP_MS = 240_000;
const REQUEST_MS = 60_000;
const EXECUTOR = {
  threads: opts.threads,
  maxBatchSize: 64,
  maxTokensPerIteration: 2048,
  kvTokensPerBlock: 16,
  kvBlockCount: opts.kvBlockCount,
  ...(opts.executor === "cuda" ? { executor: "cuda" as const } : {}),
};

const hr = () => process.hrtime.bigint();
/** Stamps from every child, in arrival order; cleared before each request. */
const stamps: { label: string; ns: bigint }[] = [];
let children: Child[] = [];

function startChild(name: string, file: string, args: string[], ready: RegExp): Promise<RegExpExecArray> {
  const child = spawnChild({
    name,
    command: process.execPath,
    args: [...process.execArgv, file, ...args],
    env: { ...process.env, TRTD_TRACE_STAGES: "1" },
    stopTree: true,
    onLine: (line) => {
      const s = parseStageLine(line);
      if (s) stamps.push(s);
    },
  });
  children.push(child);
  return child.waitForLine(ready, STARTUP_MS);
}

/** One streaming chat request; the client's send and first non-empty content on the same clock as the stamps. */
function streamChat(agent: Agent, url: string, content: string): Promise<{ sent: bigint; first: bigint; promptTokens: number }> {
  const body = JSON.stringify({ model: "m", messages: [{ role: "user", content }], max_tokens: 2, temperature: 0, stream: true, stream_options: { include_usage: true } });
  return new Promise((res, rej) => {
    const sent = hr();
    let first = 0n;
    let text = "";
    const req = request(`${url}/v1/chat/completions`, { method: "POST", agent, timeout: REQUEST_MS, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (r) => {
      r.setEncoding("utf8");
      r.on("data", (d: string) => {
        if (first === 0n && /"content":"[^"]/.test(d)) first = hr();
        text += d;
      });
      r.on("end", () => {
        const p = /"prompt_tokens":(\d+)/.exec(text);
        if (r.statusCode !== 200 || first === 0n || !p) rej(new Error(`HTTP ${r.statusCode}: ${text.slice(0, 300)}`));
        else res({ sent, first, promptTokens: Number(p[1]) });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${REQUEST_MS} ms`)));
    req.on("error", rej);
    req.end(body);
  });
}

async function executorTtft(ex: Executor, tokens: number[]): Promise<number> {
  const t0 = hr();
  let first = 0n;
  for await (const c of ex.generate({ prompt: tokens, maxNewTokens: 2 })) {
    if (c.error) throw c.error;
    if (first === 0n && c.tokens.length > 0) first = hr();
  }
  if (first === 0n) throw new Error("the executor produced no token");
  return Number(first - t0) / 1e6;
}

const WORDS = "the quick brown fox jumps over a lazy dog while seven clever engineers measure latency on small machines".split(" ");
const round = (x: number | undefined) => (x === undefined ? undefined : Math.round(x * 1000) / 1000);

async function main() {
  const nats = await startNatsServer({ host: "127.0.0.1" });
  const tok = Tokenizer.fromModelDir(opts.modelDir);
  let ex: Executor | undefined;
  const agent = new Agent({ keepAlive: true });
  const out: Record<string, unknown> = { executor: opts.executor, modelDir: opts.modelDir, reps: opts.reps, warmup: opts.warmup };
  try {
    ex = Executor.open(opts.modelDir, EXECUTOR);
    for (const path of opts.paths) {
      for (const mode of opts.modes) {
        const flag = ["--direct-data-path", mode];
        const worker = ["--request-plane-uri", nats.uri, "--model-dir", opts.modelDir, ...flag, ...executorArgv(EXECUTOR)];
        await startChild("decode", resolve("apps/decode/src/main.ts"), worker, READY_PATTERNS.decode);
        if (path === "disaggregated") await startChild("prefill", resolve("apps/prefill/src/main.ts"), worker, READY_PATTERNS.prefill);
        const routing = path === "disaggregated" ? ["--disagg-min-prompt-tokens", "1"] : ["--no-disaggregation"];
        const api = await startChild(
          "api",
          resolve("apps/api/src/main.ts"),
          ["--tokenizer", opts.modelDir, "--model-name", "m", "--request-plane-uri", nats.uri, "--api-server-host", "127.0.0.1", "--api-server-port", "0", ...routing, ...flag],
          READY_PATTERNS.api,
        );
        out[`${path === "disaggregated" ? "disaggregated_" : ""}direct_${mode}`] = await measure(api.groups!.url!, ex, tok, agent, `${path}, direct data path ${mode}`);
        for (const c of children.reverse()) await c.stop(10_000);
        children = [];
      }
    }
  } finally {
    await ex?.close();
    tok.free();
    agent.destroy();
    for (const c of children.reverse()) await c.stop(10_000);
    await nats.stop();
  }
  console.log(JSON.stringify(out));
}

/**
 * The request-plane legs of one request (ms; undefined when a stamp is missing): `out`/`back` as above, and their
 * transit alone: plane.request_out → plane.request_in, and the first-token frame's plane.reply_flush → plane.reply_in.
 */
function legs(t: Record<string, number>): { out?: number; back?: number; transitOut?: number; transitBack?: number } {
  const first = t["api.first_token"];
  const all = (label: string) => Object.keys(t).filter((k) => k === label || k.startsWith(`${label}#`)).map((k) => t[k]);
  const flushes = all("plane.reply_flush").filter((x) => x <= first);
  const flush = flushes.length ? Math.max(...flushes) : undefined;
  const replyIn = flush === undefined ? [] : all("plane.reply_in").filter((x) => x >= flush);
  return {
    out: "plane.request_in" in t && "api.dispatch" in t ? t["plane.request_in"] - t["api.dispatch"] : undefined,
    back: first !== undefined && flush !== undefined ? first - flush : undefined,
    transitOut: "plane.request_in" in t && "plane.request_out" in t ? t["plane.request_in"] - t["plane.request_out"] : undefined,
    transitBack: flush !== undefined && replyIn.length ? Math.min(...replyIn) - flush : undefined,
  };
}

async function measure(url: string, ex: Executor, tok: Tokenizer, agent: Agent, mode: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  {
    for (const n of opts.words) {
      const content = Array.from({ length: n }, (_, i) => WORDS[i % WORDS.length]).join(" ");
      const tokens = tok.encodeChat([{ role: "user", content }]);
      for (let i = 0; i < opts.warmup; i++) {
        await streamChat(agent, url, content);
        await executorTtft(ex, tokens);
      }
      const timelines: Record<string, number>[] = [];
      const http: number[] = [];
      const direct: number[] = [];
      for (let i = 0; i < opts.reps; i++) {
        if (i % 2 === 1) direct.push(await executorTtft(ex, tokens));
        stamps.length = 0;
        const r = await streamChat(agent, url, content);
        if (r.promptTokens !== tokens.length) throw new Error(`the api counted ${r.promptTokens} prompt tokens, the executor got ${tokens.length}`);
        // the stamps of this request reach us (each process writes its stamps STAGE_FLUSH_AFTER_MS after the first)
        await new Promise((done) => setTimeout(done, STAGE_FLUSH_AFTER_MS * 2 + 10));
        const t: Record<string, number> = {};
        // A label stamped again in one request gets #2, #3... (plane.reply_flush: the accept frame, then the first token).
        for (const s of stamps) {
          // A stamp from before this request's send belongs to an earlier one (the warm-up's arrive late: batched)
          if (s.ns < r.sent) continue;
          let key = s.label;
          for (let k = 2; key in t; k++) key = `${s.label}#${k}`;
          t[key] = Number(s.ns - r.sent) / 1e6;
        }
        t["client.first_content"] = Number(r.first - r.sent) / 1e6;
        timelines.push(t);
        http.push(t["client.first_content"]);
        if (i % 2 === 0) direct.push(await executorTtft(ex, tokens));
      }
      const labels = [...new Set(timelines.flatMap((t) => Object.keys(t)))];
      const stages = labels
        .map((l) => [l, round(describe(timelines.flatMap((t) => (l in t ? [t[l]] : []))).p50)] as const)
        .sort((a, b) => a[1]! - b[1]!);
      const h = describe(http);
      const d = describe(direct);
      const added = describe(http.map((x, i) => x - direct[i]));
      const leg = timelines.map(legs);
      const p50 = (xs: Array<number | undefined>) => round(describe(xs.filter((x): x is number => x !== undefined)).p50);
      const fig = {
        promptTokens: tokens.length,
        httpTtftP50Ms: round(h.p50),
        executorTtftP50Ms: round(d.p50),
        addedP50Ms: round(added.p50),
        addedP99Ms: round(added.p99),
        planeLegOutP50Ms: p50(leg.map((l) => l.out)),
        planeLegBackP50Ms: p50(leg.map((l) => l.back)),
        planeTransitOutP50Ms: p50(leg.map((l) => l.transitOut)),
        planeTransitBackP50Ms: p50(leg.map((l) => l.transitBack)),
        stagesP50Ms: Object.fromEntries(stages),
      };
      console.error(`[${mode}, ${tokens.length} tokens] ${JSON.stringify(fig)}`);
      out[`prompt${tokens.length}`] = fig;
    }
  }
  return out;
}

await main();
