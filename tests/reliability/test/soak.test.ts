// The soak (src/soak.ts), short enough for CI: 3,000 requests through the api (8 in flight, 4 tokens each; half
// disaggregated, a third streamed, a quarter seeded) against nats-server, the api, one prefill and one decode worker.
// Every request completes (no churn here: any error or hang is a bug), no KV block stays in use, and after 1,000
// warm-up requests the RSS of the api and of each worker grows by less than GROWTH_BOUND_MB over the remaining 2,000
// (a leak of about 20 KB per request or more fails it; a run this short at full speed still grows 10-17 MB while it
// warms up). The 100k run of `nx run reliability:soak` measures the slope: docs/benchmarks/reliability.md.
import { afterAll, describe, expect, it } from "vitest";
import { runSoak, soakSummary } from "../src/soak.js";
import { stopAll } from "./support/processes.js";

const REQUESTS = 3000;
const WARMUP = 1000;
const GROWTH_BOUND_MB = 40;

afterAll(() => stopAll());

describe("soak (CI length)", () => {
  it(`${REQUESTS} requests: all complete, none hangs, no KV block leaks, RSS after warm-up grows < ${GROWTH_BOUND_MB} MB per process`, async () => {
    const r = await runSoak({ requests: REQUESTS, warmupRequests: WARMUP, samples: 80, concurrency: 8, maxTokens: 4 });
    const summary = soakSummary(r);
    for (const l of summary) console.log(l);
    expect(r.sent).toBe(REQUESTS);
    expect(r.hung).toBe(0);
    expect(r.failed).toEqual({});
    expect(r.completed).toBe(REQUESTS);
    expect(r.disaggregated).toBeGreaterThan(REQUESTS / 4);
    expect(r.leaked).toEqual([]);
    expect(Object.keys(r.growth).sort()).toEqual(["api", "decode", "prefill"]);
    for (const [proc, g] of Object.entries(r.growth)) {
      expect(g.baselineMb, proc).toBeGreaterThan(20); // really sampled: a live node process
      expect(g.growthMb, `${proc}: ${summary.join("; ")}`).toBeLessThan(GROWTH_BOUND_MB);
    }
  }, 180_000);
});
