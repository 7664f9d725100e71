// The decode worker with its real executor on the in-process request plane: aggregated runs, remote prefill
// from a real prefill worker, recompute when the KV pull fails, graceful drain, bad requests.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { modelDir } from "@trtd/test-support";
import { existsSync } from "node:fs";
import { EXECUTOR_DEFAULTS, Endpoints, type DecodeChunk, type DecodeRequest, type GenerateRequest, type PrefillResult } from "@trtd/apps-common";
import { startPrefillWorker, type RunningPrefillWorker } from "@trtd/prefill";
import { createInProcessPlane, type RequestPlane, type EndpointClient } from "@trtd/request-plane";
import { startDecodeWorker, type RunningDecodeWorker } from "../src/index.js";
import { IDLE, collectFrom, idleStats, tokensOf, until, wireRequest } from "./support/workers.js";

const executor = { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: 256 };

let plane: RequestPlane;
let decode: RunningDecodeWorker;
let prefill: RunningPrefillWorker;
let decodeClient: EndpointClient<DecodeRequest, DecodeChunk>;
let prefillClient: EndpointClient<GenerateRequest, PrefillResult>;

const request = wireRequest;
const collect = (req: DecodeRequest) => collectFrom(decodeClient, decode.instanceId, req);
const expectIdle = (w: Parameters<typeof idleStats>[0]) => expect(idleStats(w)).toEqual(IDLE);

beforeAll(async () => {
  plane = createInProcessPlane();
  decode = await startDecodeWorker({ plane, executor });
  prefill = await startPrefillWorker({ plane, executor });
  decodeClient = plane.endpoint(Endpoints.namespace, "decode", "generate").client();
  prefillClient = plane.endpoint(Endpoints.namespace, "prefill", "generate").client();
});

afterAll(async () => {
  await prefill?.stop(1000);
  await decode?.stop(1000);
  await plane?.close();
});

const PROMPT = Array.from({ length: 40 }, (_, i) => 1000 + i * 37);

describe("decode worker", () => {
  it("runs a request aggregated and reports the mode once", async () => {
    const chunks = await collect(request(PROMPT));
    expect(chunks[0].mode).toBe("aggregated");
    expect(chunks.filter((c) => c.mode)).toHaveLength(1);
    expect(tokensOf(chunks)).toHaveLength(16);
    expect(chunks.at(-1)!.finishReason).toBe("length");
    expectIdle(decode);
  });

  it("continues a remote prefill with the pulled KV: same tokens as aggregated, greedy and seeded", async () => {
    for (const sampling of [{ temperature: 0, topP: 1, topK: 0 }, { temperature: 0.9, topP: 0.95, topK: 40, seed: 77 }]) {
      const req = request(PROMPT, { sampling, maxTokens: 20 });
      const aggregated = tokensOf(await collect(req));
      const p = await prefillClient.request(req, { instanceId: prefill.instanceId });
      expect(p.kvBytes).toBeGreaterThan(0);
      expect(p.firstToken).toBe(aggregated[0]);
      const chunks = await collect({ ...req, prefill: p });
      expect(chunks[0].mode).toBe("disaggregated");
      expect(chunks[0].kv!.bytes).toBe(p.kvBytes);
      // The path the pull negotiated, for the api's per-path metrics: shared memory on one host (else TCP).
      expect(chunks[0].kv).toMatchObject({ path: existsSync("/dev/shm") ? "shm" : "tcp", fallbacks: [] });
      expect(tokensOf(chunks)).toEqual(aggregated);
    }
    expectIdle(decode);
    expectIdle(prefill);
  });

  it("firstTokenSent (the api streamed the prefill's first token): the rest of the aggregated tokens, pulled or recomputed, greedy and seeded", async () => {
    for (const sampling of [{ temperature: 0, topP: 1, topK: 0 }, { temperature: 0.9, topP: 0.95, topK: 40, seed: 78 }]) {
      const req = request(PROMPT, { sampling, maxTokens: 14 });
      const aggregated = tokensOf(await collect(req));
      // the KV pulled: the executor re-emits the first token, the worker leaves it out
      const p = await prefillClient.request(req, { instanceId: prefill.instanceId });
      expect(p.firstToken).toBe(aggregated[0]);
      const pulled = await collect({ ...req, prefill: p, firstTokenSent: true });
      expect(pulled[0]).toMatchObject({ mode: "disaggregated", kv: { bytes: p.kvBytes } });
      expect(pulled.filter((c) => c.mode)).toHaveLength(1);
      expect(tokensOf(pulled)).toEqual(aggregated.slice(1));
      // the KV gone (the offer withdrawn): recomputed as a continuation after the first token, same draws
      const q = await prefillClient.request(req, { instanceId: prefill.instanceId });
      expect(prefill.offers.withdraw((q.kvHandle as { id: string }).id)).toBe(true);
      const recomputed = await collect({ ...req, prefill: q, firstTokenSent: true });
      expect(recomputed[0].mode).toBe("recomputed");
      expect(tokensOf(recomputed)).toEqual(aggregated.slice(1));
    }
    expectIdle(decode);
    expectIdle(prefill);
  });

  it("recomputes the prompt when the KV cannot be pulled, with the same output", async () => {
    const req = request(PROMPT, { maxTokens: 12 });
    const aggregated = tokensOf(await collect(req));
    const p = await prefillClient.request(req, { instanceId: prefill.instanceId });
    // The prefill worker's offer is withdrawn before decode pulls it (as if it had expired).
    expect(prefill.offers.withdraw((p.kvHandle as { id: string }).id)).toBe(true);
    const notFound = decode.kvPullFailures().not_found;
    const chunks = await collect({ ...req, prefill: p });
    expect(chunks[0].mode).toBe("recomputed");
    expect(tokensOf(chunks)).toEqual(aggregated);
    expect(decode.kvPullFailures().not_found).toBe(notFound + 1);
    expectIdle(decode);
    expectIdle(prefill);
  });

  it("a late pull (the offer's lease expired) is recomputed and counted as lease_expired, apart from other failures", async () => {
    const shortLease = await startPrefillWorker({ plane, executor, kvOfferTtlMs: 300 });
    try {
      const req = request(PROMPT, { maxTokens: 10 });
      const aggregated = tokensOf(await collect(req));
      const before = decode.kvPullFailures();
      const results: PrefillResult[] = [];
      for (let i = 0; i < 2; i++) results.push(await prefillClient.request(req, { instanceId: shortLease.instanceId }));
      await until(() => shortLease.offers.stats().active === 0, 3000, "offers reclaimed at expiry"); // reclaimed at the lease's end
      expect(shortLease.offers.stats().released.expired).toBe(2);
      // as handed over (the puller sees the lease ended), and with its expiry moved out (the offering side answers
      // KV_LEASE_EXPIRED for the reclaimed offer)
      const late = { ...results[1], kvHandle: { ...(results[1].kvHandle as object), expiresAt: Date.now() + 60_000 } };
      for (const p of [results[0], late]) {
        const chunks = await collect({ ...req, prefill: p });
        expect(chunks[0].mode).toBe("recomputed");
        expect(tokensOf(chunks)).toEqual(aggregated);
      }
      const after = decode.kvPullFailures();
      expect(after.lease_expired - before.lease_expired).toBe(2);
      expect({ ...after, lease_expired: 0 }).toEqual({ ...before, lease_expired: 0 });
      expectIdle(decode);
      expectIdle(shortLease);
    } finally {
      await shortLease.stop(1000);
    }
  });

  it("finishes at once when the first token already ends the request, releasing the offer", async () => {
    const req = request(PROMPT, { maxTokens: 1 });
    const p = await prefillClient.request(req, { instanceId: prefill.instanceId });
    const chunks = await collect({ ...req, prefill: p });
    expect(tokensOf(chunks)).toEqual([p.firstToken]);
    expect(chunks.at(-1)!.finishReason).toBe("length");
    // The offer is released when the prefill side gets the puller's ack (asynchronously, bounded here).
    await until(() => prefill.executor.stats().pinnedExports === 0, 5000, "the prefill worker to release its pinned KV");
    expectIdle(prefill);
  });

  it("continues a migrated seeded request where the dead worker stopped (generatedOffset): same tokens as one run", async () => {
    const sampling = { temperature: 1.1, topP: 0.9, topK: 50, seed: 77 };
    const whole = tokensOf(await collect(request(PROMPT, { sampling, maxTokens: 16 })));
    expect(whole).not.toEqual(tokensOf(await collect(request(PROMPT, { maxTokens: 16 })))); // really sampled
    for (const k of [1, 6, 15]) {
      const migrated: DecodeRequest = { ...request([...PROMPT, ...whole.slice(0, k)], { sampling, maxTokens: 16 - k }), generatedOffset: k };
      expect(tokensOf(await collect(migrated)), `k = ${k}`).toEqual(whole.slice(k));
    }
    const bad = await collect({ ...request(PROMPT, { sampling }), generatedOffset: -3 }).catch((e) => e);
    expect(bad.remoteCode ?? bad.code).toBe("invalid_worker_request");
    expectIdle(decode);
  });

  it("logit controls and logprobs: remote prefill and a migration give the aggregated tokens and logprobs", async () => {
    const sampling = { temperature: 0.9, topP: 1, topK: 0, seed: 21, frequencyPenalty: -1, presencePenalty: 0.5, repetitionPenalty: 1.2, minP: 0.05 };
    const plain = tokensOf(await collect(request(PROMPT, { maxTokens: 4 })));
    const req = request(PROMPT, {
      sampling,
      maxTokens: 12,
      stopTokenIds: [plain[0]],
      minTokens: 5,
      logitBias: { [String(plain[1])]: 3 },
      logprobs: true,
      topLogprobs: 3,
    });
    const aggregated = await collect(req);
    const tokens = tokensOf(aggregated);
    const logprobs = aggregated.flatMap((c) => c.logprobs ?? []);
    expect(logprobs).toHaveLength(tokens.length);
    expect(logprobs.every((l) => l !== null && l.top.length === 3)).toBe(true);
    // The prefill worker's result carries the first token's logprobs; decode puts them on its first token.
    const p = await prefillClient.request(req, { instanceId: prefill.instanceId });
    expect(p.firstTokenLogprobs).toEqual(logprobs[0]);
    const disaggregated = await collect({ ...req, prefill: p });
    expect(disaggregated[0].mode).toBe("disaggregated");
    expect(tokensOf(disaggregated)).toEqual(tokens);
    expect(disaggregated.flatMap((c) => c.logprobs ?? [])).toEqual(logprobs);
    // A request the first token ends (max_tokens 1) is answered without a pull, with those logprobs.
    const one = { ...req, maxTokens: 1 };
    const early = await collect({ ...one, prefill: await prefillClient.request(one, { instanceId: prefill.instanceId }) });
    expect(early.flatMap((c) => c.logprobs ?? [])).toEqual(logprobs.slice(0, 1));
    // Migrated after k tokens: the penalties count the k tokens already generated as generated.
    for (const k of [2, 7]) {
      const migrated: DecodeRequest = { ...req, tokens: [...PROMPT, ...tokens.slice(0, k)], maxTokens: 12 - k, generatedOffset: k };
      const rest = await collect(migrated);
      expect(tokensOf(rest), `k = ${k}`).toEqual(tokens.slice(k));
      expect(rest.flatMap((c) => c.logprobs ?? [])).toEqual(logprobs.slice(k));
    }
    await until(() => prefill.executor.stats().pinnedExports === 0, 5000, "the prefill worker to release its pinned KV");
    expectIdle(decode);
    expectIdle(prefill);
  });

  it("refuses a malformed request with a typed error and stays healthy", async () => {
    const err = await collect({ ...request(PROMPT), tokens: [] }).catch((e) => e);
    expect(err.remoteCode ?? err.code).toBe("invalid_worker_request");
    expect(tokensOf(await collect(request(PROMPT, { maxTokens: 3 })))).toHaveLength(3);
  });

  it("cancels in the executor when the client leaves", async () => {
    const stream = decodeClient.generate(request(PROMPT, { maxTokens: 1500 }), { instanceId: decode.instanceId });
    let n = 0;
    for await (const c of stream) {
      n += c.tokens.length;
      if (n >= 3) break; // leaving the loop cancels the request
    }
    await until(() => decode.executor.stats().activeRequests === 0, 5000, "the cancelled request to leave the executor");
    expectIdle(decode);
  });
});

describe("decode worker - graceful stop", () => {
  it("stops taking work, finishes what it holds, then releases the executor", async () => {
    const p2 = createInProcessPlane();
    const w = await startDecodeWorker({ plane: p2, executor });
    const client = p2.endpoint(Endpoints.namespace, "decode", "generate").client<DecodeRequest, DecodeChunk>();
    try {
      const held = (async () => {
        const out: DecodeChunk[] = [];
        for await (const c of client.generate(request(PROMPT, { maxTokens: 200 }), { instanceId: w.instanceId })) out.push(c);
        return out;
      })();
      await until(() => w.executor.stats().activeRequests === 1, 5000, "the held request to be running");
      const stopped = w.stop(20_000);
      // While draining, new work is refused.
      const refused = await (async () => {
        for await (const _ of client.generate(request(PROMPT, { maxTokens: 2 }), { instanceId: w.instanceId, timeoutMs: 3000 })) return "served";
        return "empty";
      })().catch((e) => e);
      expect(refused).toBeInstanceOf(Error);
      expect(["no_responders", "closed"]).toContain(refused.code);
      const chunks = await held;
      expect(chunks.at(-1)!.finishReason).toBe("length");
      expect(tokensOf(chunks)).toHaveLength(200);
      await stopped;
      expect(() => w.executor.stats()).toThrow();
    } finally {
      client.close();
      await w.stop(1000);
      await p2.close();
    }
  });
});

describe("decode worker - prefix cache off (--prefix-cache off)", () => {
  it("computes a repeated prompt in full each time, with the same tokens as the cached worker", async () => {
    const p2 = createInProcessPlane();
    const w = await startDecodeWorker({ plane: p2, executor: { ...executor, prefixCache: false } });
    const client = p2.endpoint(Endpoints.namespace, "decode", "generate").client<DecodeRequest, DecodeChunk>();
    try {
      const req = request(PROMPT, { maxTokens: 8 });
      const run = () => collectFrom(client, w.instanceId, req);
      const first = tokensOf(await run());
      const again = tokensOf(await run());
      expect(again).toEqual(first);
      expect(first).toEqual(tokensOf(await collect(req))); // the shared worker, prefix cache on
      const s = w.executor.stats();
      // both runs computed the whole prompt (40 tokens: two full 16-token blocks could have been reused)
      expect(s.prefixCacheHitTokens).toBe(0);
      expect(s.prefixCacheMissTokens).toBe(2 * PROMPT.length);
      // the shared worker, cache on, reused the prompt's full blocks in the run above
      const before = decode.executor.stats().prefixCacheHitTokens;
      await collect(req);
      expect(decode.executor.stats().prefixCacheHitTokens - before).toBe(32);
      expectIdle(w);
    } finally {
      client.close();
      await w.stop(1000);
      await p2.close();
    }
  });
});
