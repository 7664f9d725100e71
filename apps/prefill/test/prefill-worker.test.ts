// The prefill worker with its real executor on the in-process request plane: one reply with the first token and
// a KV handle, offers released when nobody pulls them, cancellation, bad input.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, modelDir } from "@trtd/test-support";
import { EXECUTOR_DEFAULTS, Endpoints, type GenerateRequest, type PrefillResult } from "@trtd/apps-common";
import { parseKvHandle } from "@trtd/kv-transfer";
import { createInProcessPlane, type EndpointClient, type RequestPlane } from "@trtd/request-plane";
import { startPrefillWorker, type RunningPrefillWorker } from "../src/index.js";

const TTL_MS = 400;
let plane: RequestPlane;
let worker: RunningPrefillWorker;
let client: EndpointClient<GenerateRequest, PrefillResult>;

const request = (tokens: number[], extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  id: `p${Math.random().toString(16).slice(2)}`,
  tokens,
  sampling: { temperature: 0, topP: 1, topK: 0 },
  maxTokens: 8,
  stopTokenIds: [],
  deadline: Date.now() + 30_000,
  ...extra,
});
const PROMPT = Array.from({ length: 50 }, (_, i) => 500 + i * 13);

/** Waits (polling every 20 ms) until `cond` holds; throws naming `what` after `timeoutMs`. */
const until = (cond: () => boolean, timeoutMs: number, what: string) => eventually(cond, timeoutMs, what, { intervalMs: 20, retryOnError: false });

beforeAll(async () => {
  plane = createInProcessPlane();
  worker = await startPrefillWorker({ plane, executor: { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: 128 }, kvOfferTtlMs: TTL_MS });
  client = plane.endpoint(Endpoints.namespace, "prefill", "generate").client();
});
afterAll(async () => {
  client?.close();
  await worker?.stop(1000);
  await plane?.close();
});

describe("prefill worker", () => {
  it("replies with the first token and a KV handle for the whole prompt, then releases an unpulled offer at expiry", async () => {
    const r = await client.request(request(PROMPT), { instanceId: worker.instanceId });
    expect(Number.isInteger(r.firstToken)).toBe(true);
    const handle = parseKvHandle(r.kvHandle);
    expect(handle.numTokens).toBe(PROMPT.length);
    expect(handle.bytes).toBe(r.kvBytes);
    expect(handle.layout.fingerprint).toBe(worker.offers.layout.fingerprint);
    expect(handle.endpoints.map((e) => e.transport)).toContain("tcp");
    expect(worker.executor.stats().pinnedExports).toBe(1);
    await until(() => worker.executor.stats().pinnedExports === 0, TTL_MS + 3000, "the expired offer to release its pinned KV");
    const s = worker.executor.stats();
    expect({ pinned: s.pinnedExports, kv: s.kvBlocksUsed, active: s.activeRequests }).toEqual({ pinned: 0, kv: 0, active: 0 });
  });

  it("the first token equals the aggregated first token of the same executor", async () => {
    const r = await client.request(request(PROMPT, { sampling: { temperature: 0.8, topP: 0.9, topK: 0, seed: 5 } }), { instanceId: worker.instanceId });
    const agg: number[] = [];
    for await (const c of worker.executor.generate({ prompt: PROMPT, maxNewTokens: 1, sampling: { temperature: 0.8, topP: 0.9, seed: 5 } })) agg.push(...c.tokens);
    expect(r.firstToken).toBe(agg[0]);
    expect(worker.offers.withdraw(parseKvHandle(r.kvHandle).id)).toBe(true);
  });

  it("refuses malformed requests with a typed error", async () => {
    const err = await client.request({ ...request(PROMPT), maxTokens: 0 }, { instanceId: worker.instanceId }).catch((e) => e);
    expect(err.remoteCode ?? err.code).toBe("invalid_worker_request");
  });

  it("a cancelled prefill leaves nothing behind", async () => {
    const offeredBefore = worker.offers.stats().offered;
    const ac = new AbortController();
    const long = Array.from({ length: 2000 }, (_, i) => 100 + (i % 900));
    const p = client.request(request(long, { maxTokens: 2 }), { instanceId: worker.instanceId, signal: ac.signal }).catch((e) => e);
    await until(() => worker.executor.stats().activeRequests + worker.executor.stats().queuedRequests > 0, 2000, "the long prefill to reach the executor");
    ac.abort();
    expect(await p).toBeInstanceOf(Error);
    // Queued too: cancelled before its admission, it can sit in the queue with nothing active for an iteration.
    await until(() => { const t = worker.executor.stats(); return t.activeRequests + t.queuedRequests + t.pinnedExports === 0; }, 5000, "the cancelled prefill to leave the executor");
    const s = worker.executor.stats();
    expect({ pinned: s.pinnedExports, kv: s.kvBlocksUsed, active: s.activeRequests, queued: s.queuedRequests }).toEqual({ pinned: 0, kv: 0, active: 0, queued: 0 });
    // Nothing was offered for it (cancelled in the executor, or caught by the check after its last iteration).
    expect(worker.offers.stats().offered).toBe(offeredBefore);
  });

  it("stop() releases the offers still open (the worker's stop path; no process-wide hooks)", async () => {
    const hooks = () => ["exit", "beforeExit", "SIGINT", "SIGTERM", "SIGHUP"].map((e) => process.listenerCount(e));
    const before = hooks();
    const other = await startPrefillWorker({ plane, executor: { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: 64 }, kvOfferTtlMs: 60_000 });
    try {
      expect(hooks()).toEqual(before);
      const c = plane.endpoint(Endpoints.namespace, "prefill", "generate").client<GenerateRequest, PrefillResult>();
      try {
        await c.request(request(PROMPT), { instanceId: other.instanceId });
      } finally {
        c.close();
      }
      expect(other.executor.stats().pinnedExports).toBe(1);
      expect(other.offers.stats().active).toBe(1);
    } finally {
      await other.stop(1000);
    }
    expect(other.offers.stats()).toMatchObject({ active: 0, released: { closed: 1 } });
    expect(hooks()).toEqual(before);
  });
});
