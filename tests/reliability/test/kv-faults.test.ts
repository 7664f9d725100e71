// KV transfer failures injected for real (the prefill worker's TRTD_FAULT_INJECT_KV: a corrupted byte in the
// pinned export, a peer that never answers, a peer that is gone): the decode worker recomputes the prompt
// locally and the output is unchanged; nothing stays pinned. A prefill worker without faults is the control.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsServerHandle } from "@trtd/request-plane";
import { apiArgs, eventually, metricValue, startApp, startNats, stopAll, waitForWorkers, workerArgs, workersIdle, type AppProcess } from "./support/processes.js";
import { prompts, streamCompletion } from "./support/http.js";

const NS = "rel-kvfault";
const PULL_TIMEOUT_MS = 1000;
let nats: NatsServerHandle;
let api: AppProcess; // disaggregated
let aggregated: AppProcess; // the reference: never disaggregates
const bodies = [
  ...prompts(3).map((prompt) => ({ prompt, max_tokens: 24, temperature: 0 })),
  { prompt: prompts(4)[3], max_tokens: 24, temperature: 0.9, seed: 7 },
];
let reference: string[];

beforeAll(async () => {
  nats = await startNats();
  [, api, aggregated] = await Promise.all([
    startApp("decode", workerArgs(nats.uri, NS, ["--kv-pull-timeout-ms", String(PULL_TIMEOUT_MS)])),
    startApp("api", apiArgs(nats.uri, NS, ["--disagg-min-prompt-tokens", "1"])),
    startApp("api", apiArgs(nats.uri, NS, ["--no-disaggregation"])),
  ]);
  await waitForWorkers(aggregated.url, 1, 0);
  reference = (await Promise.all(bodies.map((b) => streamCompletion(aggregated.url, b)))).map((r) => r.text);
});

afterAll(async () => {
  await stopAll();
  await nats?.stop();
});

const recomputed = () => metricValue(api.url, 'trtd_routed_requests_total{mode="recomputed"}');
const disaggregated = () => metricValue(api.url, 'trtd_routed_requests_total{mode="disaggregated"}');

async function runWith(fault: string | undefined): Promise<{ recomputed: number; disaggregated: number; output: string[] }> {
  const prefill = await startApp("prefill", workerArgs(nats.uri, NS), { env: fault ? { TRTD_FAULT_INJECT_KV: fault } : {} });
  try {
    await waitForWorkers(api.url, 1, 1);
    const [r0, d0] = [await recomputed(), await disaggregated()];
    const results = await Promise.all(bodies.map((b) => streamCompletion(api.url, b)));
    for (let i = 0; i < bodies.length; i++) {
      expect(results[i].error).toBeUndefined();
      expect(results[i].finishReason).toBe("length");
      expect(results[i].text).toBe(reference[i]);
    }
    // Nothing pinned or running anywhere afterwards (failed offers are released, not left to expire).
    await eventually(() => workersIdle(api.url), 3000, "idle workers after the faulty transfers");
    return { recomputed: (await recomputed()) - r0, disaggregated: (await disaggregated()) - d0, output: prefill.output };
  } finally {
    await prefill.stop();
    await waitForWorkers(api.url, 1, 0, 10_000);
  }
}

describe("KV transfer failures", () => {
  it("control: without faults every request is disaggregated", async () => {
    const r = await runWith(undefined);
    expect(r.disaggregated).toBe(bodies.length);
    expect(r.recomputed).toBe(0);
  });

  for (const fault of ["corrupt", "stall", "peer-gone"]) {
    it(`${fault}: decode recomputes the prompt locally; output unchanged`, async () => {
      const r = await runWith(fault);
      expect(r.recomputed).toBe(bodies.length);
      expect(r.disaggregated).toBe(0);
      expect(r.output.join("\n")).toContain(`FAULT INJECTION: every KV offer is made to fail (${fault})`);
    });
  }

  it("an unknown fault name is refused at start", async () => {
    await expect(startApp("prefill", workerArgs(nats.uri, NS), { env: { TRTD_FAULT_INJECT_KV: "explode" } })).rejects.toThrow(/TRTD_FAULT_INJECT_KV=explode/);
  });
});
