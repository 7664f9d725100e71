// A/B of the api path's time to first token between two builds of the stack, run side by side (issues 16 and 19).
//
//   node --import tsx --conditions=source apps/api/bench/ab.ts [--a DIR] [--b DIR] [--a-env K=V,...] [--b-env K=V,...]
//     [--path aggregated|disaggregated] [--prompt-words 16,1000] [--reps N] [--warmup N] [--gap-ms N]
//
// Small changes to the api path (tenths of a millisecond) drown in the drift between two runs of `nx run api:bench`
// made one after the other (±0.5-1 ms on the 2-core VM). Here both builds run at once, each a whole stack of its own
// (nats-server, a decode worker, with --path disaggregated a prefill worker too, and an api, all on 127.0.0.1, ports
// the OS picks), and the streaming requests alternate between them, A then B then B then A..., each after the same
// idle gap: drift hits both alike, and the paired differences (B - A, request by request) have a tight median.
//
// --a / --b: the root of a checkout to run that side from (its sources through tsx, its node_modules, its native
// libraries and models/tiny; default: this checkout). To compare a change with its parent:
//   git worktree add /tmp/trtd-base HEAD~1 && (cd /tmp/trtd-base && npm ci && node tools/scripts/build-native.mjs --models tiny)
//   node --import tsx --conditions=source apps/api/bench/ab.ts --a /tmp/trtd-base
// --a-env / --b-env: environment for that side's processes (a switch under test). With neither (both sides this
// checkout) it is an A/A run: the spread of its paired median is the resolution of the method on this machine.
// The last line is one JSON object. Every process is stopped by PID at the end; every wait is bounded.
import { existsSync } from "node:fs";
import { Agent, request } from "node:http";
import { join, resolve } from "node:path";
import { executorArgv, intFlag, parseFlags, READY_PATTERNS, stringFlag, UsageError, valueFlags } from "@trtd/apps-common";
import { describe } from "@trtd/bench";
import { spawnChild, type Child } from "@trtd/process";
import { startNatsServer, type NatsServerHandle } from "@trtd/request-plane";

function abFlags(argv: string[]) {
  const f = parseFlags(argv, valueFlags("a", "b", "a-env", "b-env", "path", "prompt-words", "reps", "warmup", "gap-ms"));
  const path = stringFlag(f, "path") ?? "aggregated";
  if (path !== "aggregated" && path !== "disaggregated") throw new UsageError(`--path takes aggregated or disaggregated, got ${path}`);
  const side = (name: "a" | "b") => {
    const root = resolve(stringFlag(f, name) ?? ".");
    if (!existsSync(join(root, "apps/api/src/main.ts")) || !existsSync(join(root, "node_modules"))) {
      throw new UsageError(`--${name} must be the root of an installed trtd checkout (apps/api/src/main.ts and node_modules), got ${root}`);
    }
    if (!existsSync(join(root, "models/tiny"))) throw new UsageError(`--${name}: ${root} has no models/tiny (run node tools/scripts/build-native.mjs --models tiny there)`);
    const env: Record<string, string> = {};
    for (const kv of (stringFlag(f, `${name}-env`) ?? "").split(",").filter(Boolean)) {
      const at = kv.indexOf("=");
      if (at <= 0) throw new UsageError(`--${name}-env takes K=V pairs separated by commas, got ${kv}`);
      env[kv.slice(0, at)] = kv.slice(at + 1);
    }
    return { name: name.toUpperCase(), root, env };
  };
  return {
    sides: [side("a"), side("b")] as const,
    path,
    words: (stringFlag(f, "prompt-words") ?? "16,1000").split(",").map((w) => intFlag(w, "prompt-words", { min: 1, fallback: 16 })),
    reps: intFlag(f.reps, "reps", { min: 10, fallback: 150 }),
    warmup: intFlag(f.warmup, "warmup", { min: 0, fallback: 200 }),
    gapMs: intFlag(f["gap-ms"], "gap-ms", { min: 0, fallback: 20 }),
  };
}
const opts = (() => {
  try {
    return abFlags(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`api ab: ${err.message}`);
    process.exit(2);
  }
})();

const STARTUP_MS = 240_000;
const REQUEST_MS = 60_000;
const EXECUTOR = { threads: 1, maxBatchSize: 64, maxTokensPerIteration: 2048, kvTokensPerBlock: 16, kvBlockCount: 2048 };
const WORDS = "the quick brown fox jumps over a lazy dog while seven clever engineers measure latency on small machines".split(" ");
const children: Child[] = [];
const natsServers: NatsServerHandle[] = [];

function start(name: string, root: string, app: string, args: string[], ready: RegExp, env: Record<string, string>) {
  const child = spawnChild({
    name,
    command: process.execPath,
    args: ["--import", "tsx", "--conditions=source", join(root, "apps", app, "src/main.ts"), ...args],
    cwd: root,
    env: { ...process.env, ...env },
    stopTree: true,
  });
  children.push(child);
  return child.waitForLine(ready, STARTUP_MS);
}

/** One streaming chat request; ms from the send to the first non-empty content. */
function ttft(agent: Agent, url: string, body: string): Promise<number> {
  return new Promise((res, rej) => {
    const t0 = process.hrtime.bigint();
    let first = 0;
    let text = "";
    const req = request(`${url}/v1/chat/completions`, { method: "POST", agent, timeout: REQUEST_MS, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (r) => {
      r.setEncoding("utf8");
      r.on("data", (d: string) => {
        if (first === 0 && /"content":"[^"]/.test(d)) first = Number(process.hrtime.bigint() - t0) / 1e6;
        if (r.statusCode !== 200) text += d;
      });
      r.on("end", () => (r.statusCode === 200 && first > 0 ? res(first) : rej(new Error(`HTTP ${r.statusCode}: ${text.slice(0, 300)}`))));
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${REQUEST_MS} ms`)));
    req.on("error", rej);
    req.end(body);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number | undefined) => (x === undefined ? undefined : Math.round(x * 1000) / 1000);

async function main() {
  const urls: string[] = [];
  for (const s of opts.sides) {
    const nats = await startNatsServer({ host: "127.0.0.1" });
    natsServers.push(nats);
    const model = join(s.root, "models/tiny");
    const worker = ["--request-plane-uri", nats.uri, "--model-dir", model, ...executorArgv(EXECUTOR)];
    await start(`decode-${s.name}`, s.root, "decode", worker, READY_PATTERNS.decode, s.env);
    if (opts.path === "disaggregated") await start(`prefill-${s.name}`, s.root, "prefill", worker, READY_PATTERNS.prefill, s.env);
    const routing = opts.path === "disaggregated" ? ["--disagg-min-prompt-tokens", "1"] : ["--no-disaggregation"];
    const api = await start(
      `api-${s.name}`,
      s.root,
      "api",
      ["--tokenizer", model, "--model-name", "m", "--request-plane-uri", nats.uri, "--api-server-host", "127.0.0.1", "--api-server-port", "0", ...routing],
      READY_PATTERNS.api,
      s.env,
    );
    urls.push(api.groups!.url!);
  }
  const agents = urls.map(() => new Agent({ keepAlive: true }));
  const out: Record<string, unknown> = {
    path: opts.path,
    sides: opts.sides.map((s) => ({ name: s.name, root: s.root, env: s.env })),
    reps: opts.reps,
    warmup: opts.warmup,
    gapMs: opts.gapMs,
  };
  try {
    for (const n of opts.words) {
      const content = Array.from({ length: n }, (_, i) => WORDS[i % WORDS.length]).join(" ");
      const body = JSON.stringify({ model: "m", messages: [{ role: "user", content }], max_tokens: 2, temperature: 0, stream: true });
      for (let i = 0; i < opts.warmup; i++) for (let k = 0; k < 2; k++) await ttft(agents[k], urls[k], body);
      const t: [number[], number[]] = [[], []];
      for (let i = 0; i < opts.reps; i++) {
        // A B, B A, A B...: neither side is always the one that goes first after the other's request.
        for (const k of i % 2 === 0 ? [0, 1] : [1, 0]) {
          await sleep(opts.gapMs);
          t[k].push(await ttft(agents[k], urls[k], body));
        }
      }
      const a = describe(t[0]);
      const b = describe(t[1]);
      const diff = describe(t[1].map((x, i) => x - t[0][i]));
      const fig = { a: { p50: round(a.p50), p90: round(a.p90) }, b: { p50: round(b.p50), p90: round(b.p90) }, pairedDiffMedianMs: round(diff.p50) };
      console.log(`${n} words: HTTP TTFT p50 A ${fig.a.p50} ms, B ${fig.b.p50} ms; paired median B - A ${fig.pairedDiffMedianMs} ms`);
      out[`words${n}`] = fig;
    }
  } finally {
    for (const a of agents) a.destroy();
  }
  console.log(JSON.stringify(out));
}

try {
  await main();
} finally {
  for (const c of children.reverse()) await c.stop(10_000);
  for (const n of natsServers) await n.stop();
}
