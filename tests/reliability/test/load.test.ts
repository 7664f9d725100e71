// Under load, with real processes (nats-server, 1 prefill + 2 decode workers, two apis on one request plane):
// a cancel storm leaves nothing behind in any executor, and overload is refused with 503 at once while admitted
// requests keep a bounded latency.
import { Svcm } from "@nats-io/services";
import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsServerHandle } from "@trtd/request-plane";
import { apiArgs, eventually, metricValue, startApp, startNats, stopAll, waitForWorkers, workerArgs, workerGauges, workersIdle, type AppProcess } from "./support/processes.js";
import { prompts, streamCompletion, postJson } from "./support/http.js";

const NS = "rel-load";
const LIMIT_PER_WORKER = 2;
let nats: NatsServerHandle;
let api: AppProcess; // disaggregated, default admission limit
let limited: AppProcess; // aggregated, --max-requests-per-worker 2

beforeAll(async () => {
  nats = await startNats();
  const w = (extra: string[] = []) => workerArgs(nats.uri, NS, ["--max-batch-size", "16", ...extra]);
  [, , , api, limited] = await Promise.all([
    startApp("prefill", w()),
    startApp("decode", w()),
    startApp("decode", w()),
    startApp("api", apiArgs(nats.uri, NS, ["--disagg-min-prompt-tokens", "1"])),
    startApp("api", apiArgs(nats.uri, NS, ["--no-disaggregation", "--max-requests-per-worker", String(LIMIT_PER_WORKER)])),
  ]);
  await Promise.all([waitForWorkers(api.url, 2, 1), waitForWorkers(limited.url, 2, 1)]);
});

afterAll(async () => {
  await stopAll();
  await nats?.stop();
});

/** True when exactly `workers` workers answer STATS and every one's executor is idle (sampled at the request). */
async function executorsIdleLive(nc: NatsConnection, workers: number): Promise<boolean> {
  const svc = new Svcm(nc).client({ strategy: "count", maxMessages: workers, maxWait: 500 });
  let seen = 0;
  for await (const s of await svc.stats()) {
    for (const ep of s.endpoints ?? []) {
      const d = ep.data as Record<string, number> | undefined;
      if (ep.name !== "generate" || !d) continue;
      seen++;
      if (d.activeRequests || d.queuedRequests || d.kvBlocksUsed || d.pinnedExports) return false;
    }
  }
  return seen === workers;
}

describe("cancel storm", () => {
  it("500 requests aborted at random points: every KV block on every worker is free and no request lingers", async () => {
    const ps = prompts(24);
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const TOTAL = 500;
    const CONCURRENCY = 24;
    let next = 0;
    let aborted = 0;
    let completed = 0;
    const unexpected: string[] = [];
    const started = Date.now();
    const one = async (i: number) => {
      const ac = new AbortController();
      // Abort anywhere from before the request is sent (0 ms) to well into decoding (800 ms).
      const at = rand() * 800;
      const timer = setTimeout(() => ac.abort(), at);
      const body = { model: "tiny", prompt: ps[i % ps.length], max_tokens: 48, temperature: i % 3 === 0 ? 0.8 : 0, seed: i, stream: i % 2 === 0 };
      try {
        const r = await fetch(`${api.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: ac.signal });
        await r.text();
        if (r.status === 200) completed++;
        else unexpected.push(`${r.status}`);
      } catch (err) {
        if ((err as Error).name === "AbortError") aborted++;
        else unexpected.push((err as Error).message);
      } finally {
        clearTimeout(timer);
      }
    };
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < TOTAL && Date.now() - started < 60_000) await one(next++);
      }),
    );
    const stormEnded = Date.now();
    const probe = await natsConnect({ servers: nats.uri }); // standard NATS tooling's view, on its own connection
    // Within 1 s every worker's executor is idle: no active or queued request, no KV block used, no pinned export.
    // Sampled live through the workers' NATS micro-service STATS (the load they publish lags up to a second).
    await eventually(() => executorsIdleLive(probe, 3), 1000 - (Date.now() - stormEnded), "every executor idle (live STATS) within 1 s of the storm").finally(() => probe.close());
    const idleAfterMs = Date.now() - stormEnded;
    expect(next).toBe(TOTAL);
    expect(unexpected).toEqual([]);
    expect(aborted).toBeGreaterThan(TOTAL / 2);
    // The api holds nothing, and the load the workers publish (what the router sees) agrees once it is republished.
    expect(await metricValue(api.url, "trtd_requests_in_flight")).toBe(0);
    await eventually(() => workersIdle(api.url), 2000, "every executor idle in the published load").catch(async (err) => {
      const busy = (await workerGauges(api.url)).filter((x) => x.value !== 0 && !/total|generated/.test(x.name));
      throw new Error(`${(err as Error).message}: ${JSON.stringify(busy)}`);
    });
    const g = await workerGauges(api.url);
    expect(g.filter((x) => x.name === "trtd_worker_kv_blocks_used").length).toBe(3);
    console.log(`cancel storm: ${TOTAL} requests (${aborted} aborted, ${completed} completed) in ${stormEnded - started} ms; executors idle ${idleAfterMs} ms after`);
  });
});

describe("overload", () => {
  it("past every worker's limit the api answers 503 at once; admitted requests finish with bounded latency", async () => {
    // Alone, for the baseline.
    const solo = await streamCompletion(limited.url, { prompt: "Tell me about the sea.", max_tokens: 120, temperature: 0 });
    expect(solo.finishReason).toBe("length");

    const N = 16;
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) => streamCompletion(limited.url, { prompt: `Tell me about the sea, part ${i}.`, max_tokens: 120, temperature: 0 })),
    );
    const refused = results.filter((r) => r.status === 503);
    const admitted = results.filter((r) => r.status === 200);
    expect(refused.length + admitted.length).toBe(N);
    // Two workers with a limit of 2 each: 4 admitted at once (the api counts its own in-flight requests at once);
    // a few more only if an admitted one finished while the burst was still arriving.
    expect(admitted.length).toBeGreaterThanOrEqual(2 * LIMIT_PER_WORKER);
    expect(refused.length).toBeGreaterThanOrEqual(N - 2 * LIMIT_PER_WORKER - 2);
    for (const r of refused) {
      expect(r.error?.code).toBe("overloaded");
      expect(r.totalMs).toBeLessThan(1000);
    }
    for (const r of admitted) {
      expect(r.finishReason).toBe("length");
      expect(r.error).toBeUndefined();
      // Bounded: no worse than a few solo runs (the 4 share 2 workers on a 2-core machine).
      expect(r.totalMs).toBeLessThan(Math.max(5 * solo.totalMs, 5000));
    }
    // Capacity frees as they finish: a new request is admitted again (once the workers' published load, which
    // lags by up to a second, shows them done).
    await eventually(async () => (await postJson(`${limited.url}/v1/completions`, { model: "tiny", prompt: "Hi", max_tokens: 2 })).status === 200, 3000, "admission after the burst");
    console.log(`overload: ${admitted.length} admitted (max ${Math.round(Math.max(...admitted.map((r) => r.totalMs)))} ms, solo ${Math.round(solo.totalMs)} ms), ${refused.length} refused (max ${Math.round(Math.max(...refused.map((r) => r.totalMs)))} ms)`);
  });
});
