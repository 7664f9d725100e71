// The router with real workers on the in-process request plane: conditional disaggregation, least-loaded
// decode choice, fallback to aggregated when prefill fails, and the policy on its own.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, modelDir } from "@trtd/test-support";
import { DECODE_FEATURES, DecodeFeatures, EXECUTOR_DEFAULTS, Endpoints, type DecodeChunk, type GenerateRequest } from "@trtd/apps-common";
import { startDecodeWorker, type RunningDecodeWorker } from "@trtd/decode";
import { startPrefillWorker, type RunningPrefillWorker } from "@trtd/prefill";
import { declineKvOffer } from "@trtd/kv-transfer";
import { createInProcessPlane, RemoteError, TimeoutError, type RequestPlane, type ServedEndpoint } from "@trtd/request-plane";
import { LeastLoadedSelector, PrefillPolicy, RequestPlaneWorkers, Router, WorkerGoneError, type RouteDecision, type WorkerInstance, type Workers } from "../src/index.js";
import { translateWorkerError } from "../src/router/request-plane-workers.js";
import { generateRequest, runThrough as run } from "./support/router-requests.js";

const PROMPT = Array.from({ length: 40 }, (_, i) => 2000 + i * 11);
const req = (extra: Partial<GenerateRequest> = {}): GenerateRequest => generateRequest(PROMPT, { maxTokens: 8, ...extra });

const load = (active: number, extra: Partial<WorkerInstance["load"]> = {}) =>
  ({ activeRequests: active, queuedRequests: 0, kvBlocksUsed: 0, kvBlocksTotal: 1, generatedTokens: 0, pinnedExports: 0, draining: false, ...extra }) as WorkerInstance["load"];

describe("router - policy and selection", () => {
  const policy = new PrefillPolicy({ minPromptTokens: 10, maxPrefillLoad: 2 });
  const none = new Map<string, number>();
  it("disaggregates only long enough prompts to a prefill worker with room", () => {
    expect(policy.decide(req(), [], none)).toEqual({ remote: false, reason: "no_prefill_worker" });
    expect(policy.decide(req({ tokens: [1, 2, 3] }), [{ id: "p", load: load(0) }], none)).toEqual({ remote: false, reason: "short_prompt" });
    expect(policy.decide(req({ maxTokens: 1 }), [{ id: "p", load: load(0) }], none)).toEqual({ remote: false, reason: "single_token" });
    expect(policy.decide(req(), [{ id: "p", load: load(2) }], none)).toEqual({ remote: false, reason: "prefill_busy" });
    expect(policy.decide(req(), [{ id: "p", load: load(0, { draining: true }) }], none)).toEqual({ remote: false, reason: "no_prefill_worker" });
    const d = policy.decide(req(), [{ id: "a", load: load(1) }, { id: "b", load: load(0) }], none);
    expect(d).toEqual({ remote: true, instance: { id: "b", load: load(0) } });
    expect(new PrefillPolicy({ enabled: false }).decide(req(), [{ id: "p", load: load(0) }], none)).toEqual({ remote: false, reason: "disabled" });
  });

  it("picks the least loaded decode worker, counting its own in-flight requests", () => {
    const s = new LeastLoadedSelector();
    const ws = [{ id: "a", load: load(3) }, { id: "b", load: load(1) }, { id: "c", load: load(2) }];
    expect(s.select(req(), ws, none).id).toBe("b");
    expect(s.select(req(), ws, new Map([["b", 5]])).id).toBe("c");
  });
});

describe("router - worker errors", () => {
  const live = new AbortController().signal;
  it("a worker that never accepted or went silent before the deadline is gone (movable); after it, the deadline passed", () => {
    const silent = new TimeoutError("no instance accepted request r1 on x within 5000 ms");
    expect(translateWorkerError(silent, live, "decode", Date.now() + 10_000)).toBeInstanceOf(WorkerGoneError);
    expect(translateWorkerError(silent, live, "decode", Date.now() - 1)).toMatchObject({ name: "DeadlineExceededError" });
  });
  it("a worker that refuses because it is stopping is gone (movable); other remote errors are failures", () => {
    const stopping = new RemoteError("instance trtd/decode/generate/ab is stopping", { code: "closed", name: "ClosedError" });
    expect(translateWorkerError(stopping, live, "decode", Date.now() + 10_000)).toBeInstanceOf(WorkerGoneError);
    const bad = new RemoteError("tokens must be a non-empty list", { code: "invalid_worker_request" });
    expect(translateWorkerError(bad, live, "decode", Date.now() + 10_000)).toMatchObject({ name: "WorkerFailedError" });
    // the caller's own abort is passed through untouched
    const ac = new AbortController();
    ac.abort();
    expect(translateWorkerError(stopping, ac.signal, "decode", Date.now() + 10_000)).toBe(stopping);
  });
});

describe("router - with real workers", () => {
  let plane: RequestPlane;
  let decode: RunningDecodeWorker;
  let failingPrefill: ServedEndpoint;
  let workers: RequestPlaneWorkers;

  beforeAll(async () => {
    plane = createInProcessPlane({ leaseMs: 600 });
    decode = await startDecodeWorker({ plane, executor: { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: 256 } });
    // The decode worker's identity, which the test double announces too (the api refuses a worker without one).
    const probe = plane.endpoint(Endpoints.namespace, "decode", "generate").client();
    const [decodeInstance] = await probe.waitForInstances({ timeoutMs: 5000 });
    probe.close();
    // TEST DOUBLE: a prefill endpoint whose every request fails, to exercise the router's fallback.
    failingPrefill = await plane.endpoint(Endpoints.namespace, "prefill", "generate").serve(
      () => {
        throw Object.assign(new Error("prefill exploded (test double)"), { code: "prefill_failed" });
      },
      { meta: { identity: decodeInstance.meta.identity } },
    );
    workers = new RequestPlaneWorkers(plane);
    await workers.waitForDecode(1, 5000);
    await eventually(() => workers.instances("prefill").length > 0, 5000, "the prefill test double to be discovered", { intervalMs: 20 });
  });
  afterAll(async () => {
    workers?.close();
    await failingPrefill?.stop();
    await decode?.stop(1000);
    await plane?.close();
  });

  it("falls back to aggregated when the remote prefill fails, and says so", async () => {
    const fallbacks: unknown[] = [];
    const router = new Router({ workers, prefill: { minPromptTokens: 1 }, onPrefillFallback: (e) => fallbacks.push(e) });
    expect(router.readiness()).toEqual({ ready: true, decodeWorkers: 1, prefillWorkers: 1, stalledWorkers: 0 });
    const chunks = await run(router, req());
    expect(fallbacks).toHaveLength(1);
    expect(chunks[0].mode).toBe("aggregated");
    expect(chunks.flatMap((c) => c.tokens)).toHaveLength(8);
    const plain = await run(new Router({ workers, prefill: { enabled: false } }), req());
    expect(plain.flatMap((c) => c.tokens)).toEqual(chunks.flatMap((c) => c.tokens));
  });

  it("a pinned request (n > 1's later choices) runs aggregated on its pinned decode worker; a pin to no live worker is routed as usual", async () => {
    // TEST DOUBLE around the real workers: a second, idle-looking decode instance "twin" served by the same real
    // worker, so the selector prefers it; it records which instance each decode went to.
    const [real] = workers.instances("decode");
    const calls: string[] = [];
    const twin: Workers = {
      instances: (role) => (role === "decode" ? [{ id: "twin", load: load(0) }, { ...real!, load: load(5) }] : workers.instances(role)),
      prefill: (id, r, sig) => workers.prefill(id, r, sig),
      decode: (id, r, sig) => {
        calls.push(id);
        return workers.decode(real!.id, r, sig);
      },
    };
    const fallbacks: unknown[] = [];
    const router = new Router({ workers: twin, prefill: { minPromptTokens: 1 }, onPrefillFallback: (e) => fallbacks.push(e) });
    const chosen: string[] = [];
    const pinned: DecodeChunk[] = [];
    for await (const c of router.generate(req(), new AbortController().signal, { pin: real!.id, onDecode: (id) => chosen.push(id) })) pinned.push(c);
    expect({ calls, chosen, fallbacks: fallbacks.length }).toEqual({ calls: [real!.id], chosen: [real!.id], fallbacks: 0 });
    expect(pinned[0]!.mode).toBe("aggregated");
    expect(pinned.flatMap((c) => c.tokens)).toHaveLength(8);
    calls.length = 0;
    chosen.length = 0;
    for await (const c of router.generate(req(), new AbortController().signal, { pin: "gone", onDecode: (id) => chosen.push(id) })) void c;
    // Routed as usual: the remote prefill was tried (the failing test double), then the least loaded worker.
    expect({ calls, chosen, fallbacks: fallbacks.length }).toEqual({ calls: ["twin"], chosen: ["twin"], fallbacks: 1 });
  });

  it("moves a request to another decode worker when the chosen one is gone before its first token", async () => {
    // TEST DOUBLE around the real workers: adds an idle-looking decode instance that has vanished.
    const attempts: string[] = [];
    const withDeadInstance: Workers = {
      instances: (role) => (role === "decode" ? [{ id: "vanished", load: load(0) }, ...workers.instances("decode").map((w) => ({ ...w, load: load(5) }))] : []),
      prefill: (id, r, sig) => workers.prefill(id, r, sig),
      decode: (id, r, sig) => {
        attempts.push(id);
        if (id === "vanished") return (async function* () { throw new WorkerGoneError("no responders (test double)"); })();
        return workers.decode(id, r, sig);
      },
    };
    const chunks = await run(new Router({ workers: withDeadInstance }), req());
    expect(attempts).toEqual(["vanished", decode.instanceId]);
    expect(chunks.flatMap((c) => c.tokens)).toHaveLength(8);
    // With only the vanished instance, the request fails with the typed error.
    const onlyDead: Workers = { ...withDeadInstance, instances: (role) => (role === "decode" ? [{ id: "vanished", load: load(0) }] : []) };
    await expect(run(new Router({ workers: onlyDead }), req())).rejects.toMatchObject({ name: "NoWorkersError", status: 503 });
  });

  it("tells the selector once per attempt that a request's prefill has ended (first token or failure), and logs each decision", async () => {
    // TEST DOUBLE: a selector that picks the least loaded worker and records the calls the router makes.
    const calls: string[] = [];
    const inner = new LeastLoadedSelector();
    const recording = {
      select: (r: GenerateRequest, ws: WorkerInstance[], f: ReadonlyMap<string, number>) => {
        const w = inner.select(r, ws, f);
        calls.push(`select ${w.id}`);
        return w;
      },
      settled: (id: string) => calls.push(`settled ${id}`),
    };
    // TEST DOUBLE around the real workers: an idle-looking decode instance that has vanished.
    const withDeadInstance: Workers = {
      instances: (role) => (role === "decode" ? [{ id: "vanished", load: load(0) }, ...workers.instances("decode").map((w) => ({ ...w, load: load(5) }))] : []),
      prefill: (id, r, sig) => workers.prefill(id, r, sig),
      decode: (id, r, sig) => (id === "vanished" ? (async function* () { throw new WorkerGoneError("no responders (test double)"); })() : workers.decode(id, r, sig)),
    };
    const decisions: RouteDecision[] = [];
    const r = req();
    await run(new Router({ workers: withDeadInstance, decodeSelector: recording, onRoute: (d) => decisions.push(d) }), r);
    expect(calls).toEqual(["select vanished", `settled ${r.id}`, `select ${decode.instanceId}`, `settled ${r.id}`]);
    expect(decisions.map((d) => [d.instanceId, d.attempt, d.pinned])).toEqual([["vanished", 1, false], [decode.instanceId, 2, false]]);
    expect(decisions[1]!.candidates).toEqual([{ id: decode.instanceId, outstanding: 5 }]); // no KV index: no cached figure
    // A request that fails on its only worker settles too: nothing stays counted as queued there.
    calls.length = 0;
    const onlyDead: Workers = { ...withDeadInstance, instances: (role) => (role === "decode" ? [{ id: "vanished", load: load(0) }] : []) };
    const r2 = req();
    await expect(run(new Router({ workers: onlyDead, decodeSelector: recording }), r2)).rejects.toMatchObject({ name: "NoWorkersError" });
    expect(calls).toEqual(["select vanished", `settled ${r2.id}`]);
  });

  it("migrates a stream whose decode worker dies after tokens were streamed: prompt + tokens so far, rest of max_tokens, draws resumed (greedy, seeded, with logit controls and logprobs)", async () => {
    const controlled: Partial<GenerateRequest> = {
      sampling: { temperature: 0.9, topP: 1, topK: 0, seed: 77, frequencyPenalty: -1, presencePenalty: 0.3, repetitionPenalty: 1.2, minP: 0.05 },
      logitBias: { [String(PROMPT[3])]: 2 },
      minTokens: 5,
      stopTokenIds: [PROMPT[5]],
      logprobs: true,
      topLogprobs: 2,
    };
    for (const extra of [{ sampling: { temperature: 0, topP: 1, topK: 0 } }, { sampling: { temperature: 1.2, topP: 0.95, topK: 40, seed: 1234 } }, controlled]) {
      const r = req({ maxTokens: 12, ...extra });
      const plainChunks = await run(new Router({ workers, prefill: { enabled: false } }), { ...r, id: "plain" });
      const plain = plainChunks.flatMap((c) => c.tokens);
      // TEST DOUBLE around the real worker: instance "dying" relays the real stream, then fails after 3 tokens.
      const sent: Array<{ id: string; tokens: number; maxTokens: number; generatedOffset?: number }> = [];
      const dying: Workers = {
        instances: (role) => (role === "decode" ? [{ id: "dying", load: load(0) }, ...workers.instances("decode").map((w) => ({ ...w, load: load(5) }))] : []),
        prefill: (id, q, sig) => workers.prefill(id, q, sig),
        decode: (id, q, sig) => {
          sent.push({ id, tokens: q.tokens.length, maxTokens: q.maxTokens, generatedOffset: q.generatedOffset });
          const real = workers.decode(decode.instanceId, q, sig);
          if (id !== "dying") return real;
          return (async function* () {
            let n = 0;
            for await (const c of real) {
              for (const [i, t] of c.tokens.entries()) {
                if (n++ === 3) throw new WorkerGoneError("heartbeats stopped (test double)");
                // one token per chunk (with its logprobs); like the real worker, only the stream's first chunk carries
                // mode and KV figures (a real chunk may hold several tokens when the executor batched them)
                const lp = c.logprobs ? { logprobs: [c.logprobs[i]!] } : {};
                yield n === 1 ? { ...c, tokens: [t], ...lp, finishReason: undefined } : { tokens: [t], ...lp };
              }
            }
          })();
        },
      };
      const migrations: number[] = [];
      const chunks = await run(new Router({ workers: dying, prefill: { enabled: false }, onMigration: (n) => migrations.push(n) }), r);
      expect(chunks.flatMap((c) => c.tokens)).toEqual(plain);
      // The continuation's logprobs follow the first worker's: the client sees one sequence of entries.
      expect(chunks.flatMap((c) => c.logprobs ?? [])).toEqual(plainChunks.flatMap((c) => c.logprobs ?? []));
      if (extra === controlled) expect(chunks.flatMap((c) => c.logprobs ?? [])).toHaveLength(plain.length);
      expect(migrations).toEqual([3]);
      expect(sent).toEqual([
        { id: "dying", tokens: PROMPT.length, maxTokens: 12, generatedOffset: undefined },
        { id: decode.instanceId, tokens: PROMPT.length + 3, maxTokens: 9, generatedOffset: 3 },
      ]);
      expect(chunks.filter((c) => c.mode !== undefined)).toHaveLength(1); // the continuation does not report a mode again
      // With no other decode worker the stream ends with NoWorkersError, and no migration is counted (none happened).
      const alone: Workers = { ...dying, instances: (role) => (role === "decode" ? [{ id: "dying", load: load(0) }] : []) };
      const none: number[] = [];
      await expect(run(new Router({ workers: alone, prefill: { enabled: false }, onMigration: (n) => none.push(n) }), { ...r, id: "alone" })).rejects.toMatchObject({
        name: "NoWorkersError",
        message: expect.stringContaining("died mid-stream"),
      });
      expect(none).toEqual([]);
    }
  });

  it("refuses at once with 503 overloaded when every decode worker is at its request limit", async () => {
    const full: Workers = { ...workers, instances: (role) => (role === "decode" ? [{ id: "a", load: load(2) }, { id: "b", load: load(1, { queuedRequests: 1 }) }] : []), prefill: workers.prefill.bind(workers), decode: workers.decode.bind(workers) };
    await expect(run(new Router({ workers: full, maxRequestsPerWorker: 2 }), req())).rejects.toMatchObject({ name: "OverloadedError", status: 503, code: "overloaded" });
    const room: Workers = { ...full, instances: (role) => (role === "decode" ? workers.instances("decode").map((w) => ({ ...w, load: load(1) })) : []) };
    expect((await run(new Router({ workers: room, maxRequestsPerWorker: 2, prefill: { enabled: false } }), req())).flatMap((c) => c.tokens)).toHaveLength(8);
  });

  it("is not ready without decode workers", async () => {
    const other = new RequestPlaneWorkers(plane, "nobody-here");
    const router = new Router({ workers: other });
    expect(router.readiness().ready).toBe(false);
    await expect(run(router, req())).rejects.toMatchObject({ name: "NoWorkersError", status: 503 });
    other.close();
  });
});

describe("router - the prefill's first token goes out at once", () => {
  let plane: RequestPlane;
  let decode: RunningDecodeWorker;
  let prefill: RunningPrefillWorker;
  let workers: RequestPlaneWorkers;
  const executor = { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: 256 };

  beforeAll(async () => {
    plane = createInProcessPlane({ leaseMs: 600 });
    decode = await startDecodeWorker({ plane, executor });
    prefill = await startPrefillWorker({ plane, executor });
    workers = new RequestPlaneWorkers(plane);
    await workers.waitForDecode(1, 5000);
    await eventually(() => workers.instances("prefill").length > 0, 5000, "the prefill worker to be discovered", { intervalMs: 20 });
  });
  afterAll(async () => {
    workers?.close();
    await prefill?.stop(1000);
    await decode?.stop(1000);
    await plane?.close();
  });

  /** TEST DOUBLE around the real workers: notes each call to a decode worker in `events` (against the chunks seen). */
  const recordingDecodeCalls = (events: string[]): Workers => ({
    instances: (role) => workers.instances(role),
    prefill: (id, r, sig) => workers.prefill(id, r, sig),
    decode: (id, r, sig) => {
      events.push(`decode called (firstTokenSent ${r.firstTokenSent === true})`);
      return workers.decode(id, r, sig);
    },
  });

  it("before any decode worker is asked; then the decode worker's tokens after it: the aggregated output, greedy and seeded", async () => {
    const events: string[] = [];
    const recording = recordingDecodeCalls(events);
    const disaggregated = new Router({ workers: recording, prefill: { minPromptTokens: 1 } });
    const aggregated = new Router({ workers, prefill: { enabled: false } });
    for (const sampling of [{ temperature: 0, topP: 1, topK: 0 }, { temperature: 0.8, topP: 0.9, topK: 0, seed: 5 }]) {
      events.length = 0;
      const r = req({ sampling, maxTokens: 10 });
      const chunks: DecodeChunk[] = [];
      for await (const c of disaggregated.generate(r, new AbortController().signal)) {
        if (chunks.length === 0) events.push(`first chunk: ${c.tokens.length} token, mode ${c.mode ?? "none"}`);
        chunks.push(c);
      }
      expect(events).toEqual(["first chunk: 1 token, mode none", "decode called (firstTokenSent true)"]);
      expect(chunks.find((c) => c.mode)?.mode).toBe("disaggregated");
      const plain = await run(aggregated, { ...r, id: `${r.id}-agg` });
      expect(chunks.flatMap((c) => c.tokens)).toEqual(plain.flatMap((c) => c.tokens));
    }
    await eventually(() => decode.executor.stats().activeRequests === 0 && prefill.executor.stats().activeRequests === 0, 5000, "both executors idle");
    expect(prefill.offers.stats().active).toBe(0);
  });

  it("a consumer that stops at the streamed token (a stop string, a client gone) has the prefill's KV offer released at once", async () => {
    // as server.ts builds it: the router declines an offer no decode worker took
    const router = new Router({ workers, prefill: { minPromptTokens: 1 }, releasePrefill: (r) => declineKvOffer(r.kvHandle, { requestPlane: plane }) });
    const seen: number[] = [];
    for await (const c of router.generate(req({ maxTokens: 10 }), new AbortController().signal)) {
      seen.push(...c.tokens);
      break; // leaving the loop at the token the router streamed from the prefill
    }
    expect(seen).toHaveLength(1);
    // released by the router, not by the offer's 30 s lease
    await eventually(() => prefill.offers.stats().active === 0, 3000, "the offer released");
    expect(decode.executor.stats().activeRequests).toBe(0);
  });

  it("not while a decode worker that may take the request does not announce first-token-sent (one from before it)", async () => {
    expect(workers.instances("decode")[0]!.features).toContain(DecodeFeatures.firstTokenSent); // the real worker does
    const events: string[] = [];
    const oldTwin: Workers = {
      instances: (role) => (role === "decode" ? [...workers.instances("decode"), { id: "old", load: load(9) }] : workers.instances(role)),
      prefill: (id, r, sig) => workers.prefill(id, r, sig),
      decode: (id, r, sig) => {
        events.push(`decode ${id === "old" ? "old" : "real"} (firstTokenSent ${r.firstTokenSent === true})`);
        return workers.decode(decode.instanceId, r, sig);
      },
    };
    const r = req({ maxTokens: 6 });
    const chunks: DecodeChunk[] = [];
    for await (const c of new Router({ workers: oldTwin, prefill: { minPromptTokens: 1 } }).generate(r, new AbortController().signal)) {
      if (chunks.length === 0) events.push(`first chunk, mode ${c.mode ?? "none"}`);
      chunks.push(c);
    }
    expect(events).toEqual(["decode real (firstTokenSent false)", "first chunk, mode disaggregated"]);
    const plain = await run(new Router({ workers, prefill: { enabled: false } }), { ...r, id: `${r.id}-agg` });
    expect(chunks.flatMap((c) => c.tokens)).toEqual(plain.flatMap((c) => c.tokens));
  });

  it("a first token that ends the request (max_tokens 1) is not sent ahead: the decode worker answers it as before", async () => {
    const events: string[] = [];
    const recording = recordingDecodeCalls(events);
    const chunks = await run(new Router({ workers: recording, prefill: { minPromptTokens: 1 } }), req({ maxTokens: 1 }));
    expect(events).toEqual(["decode called (firstTokenSent false)"]);
    expect(chunks.flatMap((c) => c.tokens)).toHaveLength(1);
    expect(chunks.at(-1)!.finishReason).toBe("length");
    await eventually(() => prefill.offers.stats().active === 0, 5000, "the declined offer released");
  });

  it("a decode worker gone before its first chunk: the next one continues after the streamed token, no token lost or repeated", async () => {
    const attempts: string[] = [];
    const withDeadInstance: Workers = {
      instances: (role) =>
        role === "decode" ? [{ id: "vanished", load: load(0), features: DECODE_FEATURES }, ...workers.instances("decode").map((w) => ({ ...w, load: load(5) }))] : workers.instances(role),
      prefill: (id, r, sig) => workers.prefill(id, r, sig),
      decode: (id, r, sig) => {
        attempts.push(`${id} ${r.firstTokenSent === true} ${r.prefill ? "prefill" : "no prefill"}`);
        if (id === "vanished") return (async function* () { throw new WorkerGoneError("no responders (test double)"); })();
        return workers.decode(id, r, sig);
      },
    };
    const r = req({ maxTokens: 9, sampling: { temperature: 0.7, topP: 1, topK: 0, seed: 11 } });
    const chunks = await run(new Router({ workers: withDeadInstance, prefill: { minPromptTokens: 1 } }), r);
    // the second attempt still takes the prefill's KV (nothing past the streamed token was generated)
    expect(attempts).toEqual(["vanished true prefill", `${decode.instanceId} true prefill`]);
    const plain = await run(new Router({ workers, prefill: { enabled: false } }), { ...r, id: `${r.id}-agg` });
    expect(chunks.flatMap((c) => c.tokens)).toEqual(plain.flatMap((c) => c.tokens));
    await eventually(() => prefill.offers.stats().active === 0 && decode.executor.stats().activeRequests === 0, 5000, "offers released, decode idle");
  });
});
