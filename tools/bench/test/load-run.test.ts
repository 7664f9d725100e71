import { afterEach, describe, expect, it } from "vitest";
import { parseLengthDistribution, randomDataset, runLoad, runSweep, sendStreamingRequest } from "../src/index.js";
import { startOpenAITestDouble, type OpenAITestDouble } from "./openai-test-double.js";

let server: OpenAITestDouble | undefined;
afterEach(async () => {
  // Nothing may be left streaming when a run returns.
  expect(server?.openStreams() ?? 0).toBe(0);
  await server?.close();
  server = undefined;
});

const dataset = (count: number, out = 8) =>
  randomDataset({ count, input: parseLengthDistribution("uniform:10:20"), output: parseLengthDistribution(String(out)), seed: 1 });

describe("end to end against the OpenAI test double", () => {
  it("measures TTFT, inter-token latency and TPOT close to the delays the double injects", async () => {
    server = await startOpenAITestDouble({ ttftMs: 60, itlMs: 25, splitWrites: true });
    // One request first: the first fetch of a process loads undici and opens the connection (~100 ms).
    await runLoad({ baseUrl: server.baseUrl, model: "m", requests: dataset(1), rate: 1, timeLimitS: 20 });
    server.bodies.length = 0;
    const r = await runLoad({ baseUrl: server.baseUrl, model: "m", requests: dataset(4), rate: 20, arrival: "fixed", timeLimitS: 20 });
    expect(r.summary.completed).toBe(4);
    for (const rec of r.records) {
      expect(rec.ok, rec.error).toBe(true);
      expect(rec.outputTokens).toBe(8); // from usage
      expect(rec.contentDeltas).toBe(8);
      expect(rec.promptTokens).toBe(7);
      expect(rec.itlMs).toHaveLength(7);
      expect(rec.finishReason).toBe("length");
      // Timers fire late, never early.
      expect(rec.ttftMs!).toBeGreaterThanOrEqual(59);
      expect(rec.tpotMs!).toBeGreaterThanOrEqual(24);
      expect(rec.e2eMs).toBeGreaterThanOrEqual(rec.ttftMs! + 7 * 24);
    }
    // Close to the injected delays: medians, with slack for a loaded 2-core machine.
    expect(r.summary.ttftMs.p50!).toBeLessThan(60 + 50);
    expect(r.summary.tpotMs.p50!).toBeLessThan(25 + 15);
    expect(r.summary.itlMs.p50!).toBeGreaterThanOrEqual(24);
    expect(r.summary.itlMs.p50!).toBeLessThan(25 + 15);
    // The request the double received is a standard streaming chat request.
    expect(server.bodies[0]).toMatchObject({ model: "m", stream: true, stream_options: { include_usage: true }, max_tokens: 8 });
    expect((server.bodies[0].messages as { content: string }[])[0].content).toBe(dataset(1)[0].prompt);
  });

  it("works with /v1/completions and an API key; a base URL ending in /v1 is accepted", async () => {
    server = await startOpenAITestDouble({ ttftMs: 5, itlMs: 2 });
    const rec = await sendStreamingRequest(
      { baseUrl: `${server.baseUrl}/v1/`, model: "m", endpoint: "completions", apiKey: "k", extraBody: { ignore_eos: true } },
      { prompt: "hi", maxTokens: 3 },
      { index: 0, scheduledAtMs: 0, runStart: performance.now() },
    );
    expect(rec.ok, rec.error).toBe(true);
    expect(rec.outputTokens).toBe(3);
    expect(server.bodies[0]).toMatchObject({ prompt: "hi", ignore_eos: true });
  });

  it("records HTTP errors and refused connections as failed requests without throwing", async () => {
    server = await startOpenAITestDouble({ failStatus: 429 });
    const r = await runLoad({ baseUrl: server.baseUrl, model: "m", requests: dataset(2), rate: 100, timeLimitS: 10 });
    expect(r.summary.failed).toBe(2);
    expect(r.records[0].error).toMatch(/HTTP 429: .*test double failure/);
    const url = server.baseUrl;
    await server.close();
    server = undefined;
    const refused = await runLoad({ baseUrl: url, model: "m", requests: dataset(1), rate: 100, timeLimitS: 10 });
    expect(refused.summary.failed).toBe(1);
    expect(refused.records[0].ok).toBe(false);
    expect(refused.records[0].error).toMatch(/fetch failed|ECONNREFUSED/);
  });

  it("the concurrency limit holds requests back; the arrival schedule is kept otherwise", async () => {
    server = await startOpenAITestDouble({ ttftMs: 50, itlMs: 10 });
    const r = await runLoad({ baseUrl: server.baseUrl, model: "m", requests: dataset(6, 5), rate: Infinity, maxConcurrency: 2, timeLimitS: 20 });
    expect(r.summary.completed).toBe(6);
    const sent = r.records.map((x) => x.sentAtMs);
    // Pairs go out together, each pair after the previous one finished (>= 50 + 4*10 ms).
    expect(sent[1] - sent[0]).toBeLessThan(30);
    expect(sent[2] - sent[0]).toBeGreaterThanOrEqual(85);
    expect(sent[4] - sent[2]).toBeGreaterThanOrEqual(85);
    const fixed = await runLoad({ baseUrl: server.baseUrl, model: "m", requests: dataset(4, 2), rate: 10, arrival: "fixed", timeLimitS: 20 });
    fixed.records.forEach((x, i) => {
      expect(x.scheduledAtMs).toBeCloseTo(i * 100, 6);
      expect(x.sentAtMs - x.scheduledAtMs).toBeGreaterThanOrEqual(-1);
      expect(x.sentAtMs - x.scheduledAtMs).toBeLessThan(40);
    });
  });

  it("the time limit stops sending and aborts requests still running; nothing stays open", async () => {
    server = await startOpenAITestDouble({ ttftMs: 10, itlMs: 100 });
    const t0 = performance.now();
    const r = await runLoad({ baseUrl: server.baseUrl, model: "m", requests: dataset(50, 50), rate: 20, arrival: "fixed", timeLimitS: 0.5 });
    const took = performance.now() - t0;
    expect(took).toBeLessThan(2000);
    expect(r.summary.sent).toBeGreaterThan(0);
    expect(r.summary.sent).toBeLessThan(50);
    expect(r.summary.notSent).toBe(50 - r.summary.sent);
    expect(r.records.every((x) => !x.ok && x.error === "aborted: run stopped")).toBe(true);
    // Let the server see the disconnects before afterEach checks for open streams.
    for (let i = 0; i < 50 && server.openStreams() > 0; i++) await new Promise((res) => setTimeout(res, 20));
  });

  it("a sweep over a server with a serial prefill finds goodput between the passing and failing rates", async () => {
    // Each prefill takes 100 ms, one at a time: capacity 10 req/s. TTFT SLO 250 ms.
    server = await startOpenAITestDouble({ ttftMs: 0, itlMs: 5, serialPrefillMs: 100 });
    const slo = { ttftMs: 250, tpotMs: 50 };
    const sweep = await runSweep({
      baseUrl: server.baseUrl, model: "m", requests: dataset(10, 4), rates: [4, 30], arrival: "fixed", slo, timeLimitS: 20, pauseMs: 100,
    });
    const [low, high] = sweep.points;
    expect(low.summary.sloAttainment).toBe(1);
    // At 30 req/s request i waits ~100 + 67 i ms: from the 4th on they miss 250 ms.
    expect(high.summary.sloAttainment!).toBeLessThan(0.5);
    expect(high.summary.ttftMs.p90!).toBeGreaterThan(low.summary.ttftMs.p90! * 3);
    expect(sweep.goodput.sweptRate).toBe(4);
    expect(sweep.goodput.interpolatedRate).toBeGreaterThan(4);
    expect(sweep.goodput.interpolatedRate).toBeLessThan(30);
    expect(sweep.goodput.saturated).toBe(false);
  });
});
