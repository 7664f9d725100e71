// `nx run reliability:soak -- --requests 100000`: the soak (src/soak.ts) as a command. Prints the figures, writes
// the RSS plot (SVG) and the raw result (JSON). Exit 1 when a request hung or failed, or a KV block leaked.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, hostname } from "node:os";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_API_HEAP_MB, DEFAULT_WORKER_HEAP_MB } from "@trtd/launcher";
import { repoRoot } from "@trtd/test-support";
import { runSoak, soakSummary, soakSvg } from "./soak.js";

const USAGE = `usage: soak [--requests N] [--concurrency C] [--max-tokens T] [--warmup N] [--samples N] [--time-limit-s S] [--out PREFIX]
  --requests N     requests in all (default 100000)
  --concurrency C  in flight at once (default 8)
  --max-tokens T   tokens per request (default 4)
  --warmup N       requests before the baseline RSS (default max(500, N/10))
  --samples N      RSS samples over the run (default 200)
  --time-limit-s S bound on the load phase (default 3600)
  --api-heap-mb N  the api's V8 old space, MB, as the launcher's flag (default: the launcher's, ${DEFAULT_API_HEAP_MB}; 0 = V8's default)
  --worker-heap-mb N  the same for the workers (default: the launcher's, ${DEFAULT_WORKER_HEAP_MB})
  --out PREFIX     writes PREFIX.svg and PREFIX.json (default .trtd/soak/soak-<requests>)`;

const { values: v } = parseArgs({
  options: {
    requests: { type: "string" }, concurrency: { type: "string" }, "max-tokens": { type: "string" }, warmup: { type: "string" },
    samples: { type: "string" }, "time-limit-s": { type: "string" }, out: { type: "string" }, help: { type: "boolean" },
    "api-heap-mb": { type: "string" }, "worker-heap-mb": { type: "string" },
  },
});
if (v.help) {
  console.log(USAGE);
  process.exit(0);
}
const int = (s: string | undefined, name: string, fallback: number, min = 1) => {
  if (s === undefined) return fallback;
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`--${name} takes ${min === 1 ? "a positive integer" : `an integer >= ${min}`}, got ${s}\n${USAGE}`);
    process.exit(2);
  }
  return n;
};
const requests = int(v.requests, "requests", 100_000);
const out = resolve(v.out ?? `${repoRoot}/.trtd/soak/soak-${requests}`);
const started = new Date();
const r = await runSoak({
  requests,
  concurrency: int(v.concurrency, "concurrency", 8),
  maxTokens: int(v["max-tokens"], "max-tokens", 4),
  warmupRequests: v.warmup === undefined ? undefined : int(v.warmup, "warmup", 1),
  samples: int(v.samples, "samples", 200),
  timeLimitMs: int(v["time-limit-s"], "time-limit-s", 3600) * 1000,
  apiHeapMb: int(v["api-heap-mb"], "api-heap-mb", DEFAULT_API_HEAP_MB, 0),
  workerHeapMb: int(v["worker-heap-mb"], "worker-heap-mb", DEFAULT_WORKER_HEAP_MB, 0),
  log: (l) => console.log(`[${new Date().toISOString()}] ${l}`),
});
const machine = `${hostname()}, ${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, node ${process.version}`;
const title = `Soak: RSS over ${r.requests.toLocaleString("en")} requests (${started.toISOString().slice(0, 10)})`;
mkdirSync(dirname(out), { recursive: true });
writeFileSync(`${out}.svg`, soakSvg(r, title));
writeFileSync(`${out}.json`, JSON.stringify({ started: started.toISOString(), machine, command: process.argv.slice(2).join(" "), ...r }, null, 1));
for (const l of soakSummary(r)) console.log(l);
console.log(`machine: ${machine}; started ${started.toISOString()}\nwrote ${out}.svg and ${out}.json`);
const failed = Object.values(r.failed).reduce((a, b) => a + b, 0);
process.exit(r.hung > 0 || failed > 0 || r.leaked.length > 0 || r.sent < r.requests ? 1 : 0);
