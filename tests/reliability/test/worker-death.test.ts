// Workers killed with SIGKILL under load (real processes, nats-server, 1 prefill + 2 decode workers, the api):
// a dead prefill worker's requests fall back to aggregated; a dead decode worker's streams migrate to the other
// one with no lost or repeated token and exactly the uninterrupted text, greedy and seeded (the continuation
// resumes the sampling draws at the number of tokens already generated); with no decode worker left, streams end
// with a clear error within the stated bound. In order: each test kills one more process (a decode worker is
// started between the greedy and the seeded kill, so each kill leaves one decode worker).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsServerHandle } from "@trtd/request-plane";
import { apiArgs, metricValue, startApp, startNats, stopAll, waitForWorkers, workerArgs, eventually, type AppProcess } from "./support/processes.js";
import { prompts, streamCompletion, type StreamResult } from "./support/http.js";

const NS = "rel-death";
/** Heartbeat 1 s × 3 missed: the request plane declares a silent worker gone after 3 s (README of request-plane). */
const DETECTION_BOUND_MS = 3000;
let nats: NatsServerHandle;
let api: AppProcess;
let prefill: AppProcess;
/** Live decode workers; each kill test takes the first one out. */
let decodes: AppProcess[];

beforeAll(async () => {
  nats = await startNats();
  const w = () => workerArgs(nats.uri, NS, ["--max-batch-size", "16"]);
  let d1: AppProcess, d2: AppProcess;
  [prefill, d1, d2, api] = await Promise.all([
    startApp("prefill", w()),
    startApp("decode", w()),
    startApp("decode", w()),
    startApp("api", apiArgs(nats.uri, NS, ["--disagg-min-prompt-tokens", "1"])),
  ]);
  decodes = [d1, d2];
  await waitForWorkers(api.url, 2, 1);
});

afterAll(async () => {
  await stopAll();
  await nats?.stop();
});

const greedy = (prompt: string, max_tokens: number) => ({ prompt, max_tokens, temperature: 0 });

describe("worker death", () => {
  it("a prefill worker killed under load: its requests fall back to aggregated; none fail, output unchanged", async () => {
    // Long prompts, so prefills are in progress when the worker dies.
    const ps = prompts(8).map((p) => `${p} ${"and then the story went on and on, ".repeat(120)}`);
    const reference = await Promise.all(ps.map((p) => streamCompletion(api.url, greedy(p, 12))));
    expect(await metricValue(api.url, 'trtd_routed_requests_total{mode="disaggregated"}')).toBeGreaterThan(0);
    const fallbacksBefore = await metricValue(api.url, "trtd_prefill_fallbacks_total");

    const running = ps.map((p) => streamCompletion(api.url, greedy(p, 12)));
    await new Promise((r) => setTimeout(r, 30));
    prefill.kill("SIGKILL");
    const results = await Promise.all(running);
    for (let i = 0; i < ps.length; i++) {
      expect(results[i].error).toBeUndefined();
      expect(results[i].finishReason).toBe("length");
      expect(results[i].text).toBe(reference[i].text);
      expect(results[i].totalMs).toBeLessThan(DETECTION_BOUND_MS + 5000);
    }
    expect(await metricValue(api.url, "trtd_prefill_fallbacks_total")).toBeGreaterThan(fallbacksBefore);
    // New requests keep working while the dead instance is still listed (until its lease runs out) and after.
    const after = await streamCompletion(api.url, greedy(ps[0], 12));
    expect(after.text).toBe(reference[0].text);
    await waitForWorkers(api.url, 2, 0, 10_000);
  });

  // Every stream of a round has the same kind, so the migrated ones (the metric says how many, > 0) are of that kind.
  const kinds = [
    { kind: "greedy", body: (p: string, _i: number) => greedy(p, 150) },
    { kind: "seeded", body: (p: string, i: number) => ({ prompt: p, max_tokens: 150, temperature: 0.9, top_p: 0.95, seed: 1000 + i }) },
  ] as const;
  for (const { kind, body } of kinds) {
    it(`a decode worker killed mid-stream (${kind}): its streams continue on the other one, exactly the uninterrupted text`, async () => {
      if (decodes.length < 2) {
        // The previous round's kill left one: start another so this round has somewhere to migrate to.
        decodes.push(await startApp("decode", workerArgs(nats.uri, NS, ["--max-batch-size", "16"])));
        await waitForWorkers(api.url, 2, 0, 20_000);
      }
      const ps = prompts(6);
      const reference = await Promise.all(ps.map((p, i) => streamCompletion(api.url, body(p, i))));
      for (const r of reference) expect(r.finishReason).toBe("length");
      if (kind === "seeded") {
        // Really sampled: the same prompts greedy give other text.
        const g = await Promise.all(ps.slice(0, 2).map((p) => streamCompletion(api.url, greedy(p, 150))));
        expect(g.map((r) => r.text)).not.toEqual(reference.slice(0, 2).map((r) => r.text));
      }
      const migrationsBefore = await metricValue(api.url, "trtd_migrated_requests_total");

      // Kill one decode worker once every stream has streamed a few chunks.
      const seen = new Array<number>(ps.length).fill(0);
      let killed = false;
      const victim = decodes.shift()!;
      const maybeKill = () => {
        if (!killed && seen.every((n) => n >= 3)) {
          killed = true;
          victim.kill("SIGKILL");
        }
      };
      const results: StreamResult[] = await Promise.all(
        ps.map((p, i) =>
          streamCompletion(api.url, body(p, i), {
            onChunk: (n) => {
              seen[i] = n;
              maybeKill();
            },
          }),
        ),
      );
      expect(killed).toBe(true);
      for (let i = 0; i < ps.length; i++) {
        expect(results[i].error).toBeUndefined();
        expect(results[i].finishReason).toBe("length");
        expect(results[i].text, `stream ${i}`).toBe(reference[i].text);
        // The longest pause is the detection bound plus the re-prefill on the other worker.
        expect(results[i].maxGapMs).toBeLessThan(DETECTION_BOUND_MS + 2000);
      }
      const migrated = (await metricValue(api.url, "trtd_migrated_requests_total")) - migrationsBefore;
      expect(migrated).toBeGreaterThan(0);
      console.log(`decode kill (${kind}): ${migrated} of ${ps.length} streams migrated; longest pause ${Math.round(Math.max(...results.map((r) => r.maxGapMs)))} ms`);
      await waitForWorkers(api.url, 1, 0, 10_000);
    });
  }

  it("the last decode worker killed mid-stream: streams end with a clear error within the bound, no hang", async () => {
    const ps = prompts(3);
    let killedAt = 0;
    // Killed once every stream has started (a stream still waiting for its first token would get a plain 503).
    const seen = new Array<number>(ps.length).fill(0);
    const results = await Promise.all(
      ps.map((p, i) =>
        streamCompletion(api.url, greedy(p, 400), {
          timeoutMs: 20_000,
          onChunk: (n) => {
            seen[i] = n;
            if (seen.every((k) => k >= 3) && !killedAt) {
              killedAt = performance.now();
              decodes[0].kill("SIGKILL");
            }
          },
        }),
      ),
    );
    const endedAfterKill = performance.now() - killedAt;
    expect(killedAt).toBeGreaterThan(0);
    for (const r of results) {
      expect(r.status).toBe(200); // the stream had started: the error comes as an SSE error event
      expect(r.finishReason).toBeNull();
      expect(r.error?.code).toBe("no_workers_available");
      expect(r.error?.message).toMatch(/died mid-stream/);
    }
    expect(endedAfterKill).toBeLessThan(DETECTION_BOUND_MS + 2000);
    // New requests: a plain 503 at once (once the instances' leases have run out: at most 3 s).
    await eventually(async () => (await streamCompletion(api.url, greedy("Hi", 2))).error?.code === "no_workers_available", 5000, "503 without decode workers");
    const t0 = performance.now();
    const r = await streamCompletion(api.url, greedy("Hi", 2));
    expect(r.status).toBe(503);
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
