// Churn (issue 21): for 2 minutes under steady bounded load (6 clients, short and long prompts, streamed and not,
// greedy and seeded), prefill and decode workers join, leave gracefully (SIGTERM) and are SIGKILLed at random
// (seeded: the same schedule of actions on every run; when they land depends on the machine). No request hangs: each
// ends completed or with a clear error (an OpenAI error code and message) within its deadline; the counts are
// printed. At the end no KV block leaks on any surviving worker: every executor idle (no block used, no pinned export,
// nothing active or queued), read from the api's /metrics.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsServerHandle } from "@trtd/request-plane";
import { mulberry32 } from "@trtd/test-support";
import { apiArgs, eventually, startApp, startNats, stopAll, waitForWorkers, workerArgs, workerGauges, workersIdle, type AppProcess } from "./support/processes.js";
import { requestOnce, type Outcome } from "../src/soak.js";

const NS = "rel-churn";
const SEED = 21;
const CHURN_MS = 120_000;
const CLIENTS = 6;
/** The api's per-request deadline; a request with no end REQUEST_DEADLINE_MS + 5 s after it was sent is hung. */
const REQUEST_DEADLINE_MS = 20_000;
const HUNG_AFTER_MS = REQUEST_DEADLINE_MS + 5000;
/** Prefill workers' KV offer lease: an offer whose decode worker died is reclaimed by then. */
const KV_OFFER_TTL_MS = 5000;
const MAX = { decode: 3, prefill: 2 } as const;

type Role = "decode" | "prefill";
interface Worker {
  role: Role;
  proc: AppProcess;
}

let nats: NatsServerHandle;
let api: AppProcess;
/** Workers serving now (joined and not yet told to leave or killed). */
const live: Worker[] = [];
const rng = mulberry32(SEED);

const workerFlags = () => workerArgs(nats.uri, NS, ["--max-batch-size", "16", "--grace-ms", "5000", "--kv-offer-ttl-ms", String(KV_OFFER_TTL_MS)]);

async function join(role: Role): Promise<void> {
  live.push({ role, proc: await startApp(role, workerFlags()) });
}

beforeAll(async () => {
  nats = await startNats();
  [api] = await Promise.all([
    startApp("api", apiArgs(nats.uri, NS, ["--disagg-min-prompt-tokens", "32", "--request-timeout-ms", String(REQUEST_DEADLINE_MS)])),
    join("decode"),
    join("decode"),
    join("prefill"),
  ]);
  await waitForWorkers(api.url, 2, 1);
});

afterAll(async () => {
  await stopAll();
  await nats?.stop();
});

const TOPICS = ["the sea", "a red fox", "winter", "old clocks", "the moon", "rivers", "a lighthouse", "bread"];
function body(i: number): Record<string, unknown> {
  const long = i % 2 === 0;
  const prompt = `Tell me about ${TOPICS[i % TOPICS.length]} (${i}).${long ? " The day was long and the story went on.".repeat(6) : ""}`;
  return { model: "tiny", prompt, max_tokens: 8 + (i % 5) * 12, stream: i % 2 === 1 || i % 3 === 0, ...(i % 4 === 0 ? { temperature: 0.8, seed: i } : { temperature: 0 }) };
}

describe("churn", () => {
  it("2 minutes of joins, SIGTERMs and SIGKILLs under load: no request hangs, errors are clear, no KV block leaks", async () => {
    const counts = { completed: 0, hung: 0, failed: new Map<string, number>() };
    const firstMessage = new Map<string, string>();
    const unclear: Outcome[] = [];
    let sent = 0;
    let maxMs = 0;
    const events = { join: 0, sigterm: 0, sigkill: 0 };
    const exits: Array<Promise<unknown>> = [];
    const t0 = performance.now();
    const churnEnd = t0 + CHURN_MS;

    const client = async () => {
      while (performance.now() < churnEnd) {
        const i = sent++;
        const started = performance.now();
        const out = await requestOnce(api.url, body(i), HUNG_AFTER_MS);
        maxMs = Math.max(maxMs, performance.now() - started);
        if (out.kind === "completed") counts.completed++;
        else if (out.kind === "hung") counts.hung++;
        else {
          counts.failed.set(out.code, (counts.failed.get(out.code) ?? 0) + 1);
          if (!firstMessage.has(out.code)) firstMessage.set(out.code, out.message);
          // Clear: an OpenAI error code (snake_case) with a message, from the api; not a dropped connection.
          if (!/^[a-z][a-z_]+$/.test(out.code) || out.message.length === 0) unclear.push(out);
        }
      }
    };

    const churn = async () => {
      while (performance.now() < churnEnd - 5000) {
        await new Promise((r) => setTimeout(r, 2500 + rng() * 3500));
        const n = (role: Role) => live.filter((w) => w.role === role).length;
        const action = rng();
        const role: Role = rng() < 0.6 ? "decode" : "prefill";
        if (action < 0.4) {
          if (n(role) >= MAX[role]) continue;
          events.join++;
          await join(role); // the load keeps running while it starts
        } else {
          // Keep one decode worker serving, so the load has somewhere to complete.
          const candidates = live.filter((w) => w.role === role && !(role === "decode" && n("decode") <= 1));
          if (candidates.length === 0) continue;
          const victim = candidates[Math.floor(rng() * candidates.length)];
          live.splice(live.indexOf(victim), 1);
          if (action < 0.7) {
            events.sigterm++;
            victim.proc.kill("SIGTERM");
          } else {
            events.sigkill++;
            victim.proc.kill("SIGKILL");
          }
          exits.push(victim.proc.exited);
        }
      }
    };

    await Promise.all([churn(), ...Array.from({ length: CLIENTS }, client)]);
    const failed = [...counts.failed.values()].reduce((a, b) => a + b, 0);
    const summary =
      `churn (seed ${SEED}, ${Math.round((performance.now() - t0) / 1000)} s): ${events.join} joins, ${events.sigterm} SIGTERMs, ${events.sigkill} SIGKILLs; ` +
      `requests ${sent}: completed ${counts.completed}, failed ${failed} (${[...counts.failed].map(([k, v]) => `${k} ${v}`).join(", ") || "none"}), hung ${counts.hung}; ` +
      `longest request ${Math.round(maxMs)} ms; live at the end: ${live.filter((w) => w.role === "decode").length} decode + ${live.filter((w) => w.role === "prefill").length} prefill`;
    console.log(summary);
    for (const [code, message] of firstMessage) console.log(`  ${code}, e.g.: ${message}`);

    expect(counts.completed + failed + counts.hung).toBe(sent);
    expect(counts.hung, summary).toBe(0);
    expect(unclear, summary).toEqual([]);
    expect(events.join + events.sigterm + events.sigkill).toBeGreaterThanOrEqual(10);
    expect(events.sigkill).toBeGreaterThan(0);
    expect(events.sigterm).toBeGreaterThan(0);
    // Most requests complete: a failure is a request caught by a kill with no way to continue.
    expect(counts.completed / sent, summary).toBeGreaterThan(0.8);

    // Workers told to leave are gone (SIGTERM: --grace-ms 5 s); the survivors are listed and end idle.
    await Promise.all(exits.map((e) => Promise.race([e, new Promise((_, rej) => setTimeout(() => rej(new Error("a worker did not exit within 15 s")), 15_000))])));
    await waitForWorkers(api.url, live.filter((w) => w.role === "decode").length, live.filter((w) => w.role === "prefill").length, 15_000);
    await eventually(() => workersIdle(api.url), KV_OFFER_TTL_MS + 5000, "every surviving worker idle (no KV block used or pinned)");
    const gauges = await workerGauges(api.url);
    const blocks = gauges.filter((g) => g.name === "trtd_worker_kv_blocks_used" || g.name === "trtd_worker_pinned_kv_exports");
    expect(blocks.length).toBeGreaterThanOrEqual(2 * live.length);
    expect(blocks.filter((g) => g.value !== 0)).toEqual([]);
  }, CHURN_MS + 90_000);
});
