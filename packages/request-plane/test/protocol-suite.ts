import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import {
  CancelledError,
  ClosedError,
  InvalidNameError,
  NoRespondersError,
  PayloadTooLargeError,
  RemoteError,
  TimeoutError,
  leastLoaded,
  type RequestPlane,
  type ServedEndpoint,
} from "../src/index.js";
import { aborted, rejection, sleep, waitUntil } from "./helpers.js";

export interface SuiteEnv {
  /** Plane the handlers run on. */
  server: RequestPlane;
  /** A second plane (another connection) the clients run on. */
  client: RequestPlane;
  /** Max payload the transport enforces. */
  maxPayload: number;
  /** Subscriptions still alive on the transport, if the transport can tell. */
  liveSubscriptions: () => number;
  /** One more client plane, closed by the test itself. */
  extraClient(): Promise<RequestPlane>;
  /** Ends an extra client's connection as a crash would (NATS: closed without a drain). */
  crash(p: RequestPlane): Promise<void>;
  close(): Promise<void>;
}

/**
 * The protocol tests, run once per transport (NATS and in-process): same API, same guarantees.
 * Every endpoint gets a unique name so tests do not see each other's instances.
 */
export function protocolSuite(makeEnv: () => Promise<SuiteEnv>): void {
  let env: SuiteEnv;
  let seq = 0;
  let served: ServedEndpoint[] = [];
  const ep = (name: string) => env.server.endpoint("suite", `c${++seq}`, name);
  const track = (s: ServedEndpoint) => (served.push(s), s);

  beforeAll(async () => {
    env = await makeEnv();
  });
  afterEach(async () => {
    for (const s of served) {
      await s.stop({ graceMs: 100 });
      // nothing may stay in flight after a test
      expect(s.activeRequests).toBe(0);
    }
    served = [];
  });
  afterAll(async () => {
    await env?.close();
  });

  it("round trip: one request, one reply", async () => {
    const e = ep("echo");
    track(await env.server.serve<{ x: number }, { y: number }>(e, (req) => ({ y: req.x * 2 })));
    const c = env.client.client<{ x: number }, { y: number }>(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    expect(await c.request({ x: 21 })).toEqual({ y: 42 });
    c.close();
  });

  it("raw request/reply on a plain subject: one reply; typed timeout, no-responders and abort; no route left", async () => {
    const subject = `suite.raw.${++seq}`;
    const sub = await env.server.reply(subject, (data) => (data[0] === 0 ? undefined : Uint8Array.from(data, (b) => b * 2)));
    try {
      expect([...(await env.client.request(subject, Uint8Array.of(1, 2, 3), { timeoutMs: 5000 }))]).toEqual([2, 4, 6]);
      const t0 = Date.now();
      const silent = await rejection(env.client.request(subject, Uint8Array.of(0), { timeoutMs: 200 }));
      expect(silent).toBeInstanceOf(TimeoutError);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(await rejection(env.client.request(`${subject}.nobody`, Uint8Array.of(1), { timeoutMs: 5000 }))).toBeInstanceOf(NoRespondersError);
      const ac = new AbortController();
      const pending = rejection(env.client.request(subject, Uint8Array.of(0), { timeoutMs: 5000, signal: ac.signal }));
      ac.abort();
      expect(await pending).toBeInstanceOf(CancelledError);
    } finally {
      sub.unsubscribe();
    }
    await waitUntil(() => env.client.mux.size === 0, 2000, "no request routes left in the client's inbox mux");
  });

  it("10,000 streamed replies arrive in order (window 256, credit flow)", async () => {
    const e = ep("count");
    const N = 10_000;
    track(
      await env.server.serve<{ n: number }, { i: number; tokens: number[] }>(e, async function* (req) {
        for (let i = 0; i < req.n; i++) yield { i, tokens: [i, i + 1] };
      }),
    );
    const c = env.client.client<{ n: number }, { i: number; tokens: number[] }>(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    let next = 0;
    for await (const r of c.generate({ n: N }, { timeoutMs: 30_000 })) {
      expect(r.i).toBe(next);
      expect(r.tokens).toEqual([next, next + 1]);
      next++;
    }
    expect(next).toBe(N);
    c.close();
  });

  it("bounded buffers: a slow consumer holds the handler back to the credit window", async () => {
    const e = ep("slow");
    let produced = 0;
    track(
      await env.server.serve(e, async function* () {
        for (let i = 0; i < 100_000; i++) {
          produced++;
          yield i;
        }
      }),
    );
    const c = env.client.client(e, { window: 32 });
    await c.waitForInstances({ timeoutMs: 5000 });
    const stream = c.generate({});
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    await sleep(300); // the consumer stalls; the handler must stall too
    expect(produced).toBeGreaterThan(1);
    expect(produced).toBeLessThanOrEqual(32 + 1);
    for (let i = 0; i < 40; i++) await it.next();
    await sleep(200);
    expect(produced).toBeLessThanOrEqual(41 + 32 + 1);
    await it.return!();
    c.close();
  });

  it("two instances share load (round-robin) and the queue group spreads requests", async () => {
    const e = ep("share");
    const a = track(await env.server.serve(e, (_req, ctx) => ctx.instanceId));
    const b = track(await env.server.serve(e, (_req, ctx) => ctx.instanceId));
    const rr = env.client.client<unknown, string>(e);
    await rr.waitForInstances({ count: 2, timeoutMs: 5000 });
    const counts = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const id = await rr.request({});
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect(counts.get(a.instanceId)).toBe(10);
    expect(counts.get(b.instanceId)).toBe(10);

    const q = env.client.client<unknown, string>(e, { router: "queue" });
    const qc = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const id = await q.request({});
      qc.set(id, (qc.get(id) ?? 0) + 1);
    }
    expect(qc.get(a.instanceId) ?? 0).toBeGreaterThan(5);
    expect(qc.get(b.instanceId) ?? 0).toBeGreaterThan(5);
    rr.close();
    q.close();
  });

  it("direct routing reaches the named instance; an unknown instance is NoResponders, fast", async () => {
    const e = ep("direct");
    const a = track(await env.server.serve(e, (_req, ctx) => ctx.instanceId));
    const b = track(await env.server.serve(e, (_req, ctx) => ctx.instanceId));
    const c = env.client.client<unknown, string>(e);
    await c.waitForInstances({ count: 2, timeoutMs: 5000 });
    for (let i = 0; i < 5; i++) expect(await c.request({}, { instanceId: b.instanceId })).toBe(b.instanceId);
    expect(await c.request({}, { instanceId: a.instanceId })).toBe(a.instanceId);
    const t0 = Date.now();
    const err = await rejection(c.request({}, { instanceId: "deadbeef00000000" }));
    expect(err).toBeInstanceOf(NoRespondersError);
    expect(Date.now() - t0).toBeLessThan(1000);
    c.close();
  });

  it("a listed instance that died is skipped: the request is rerouted and the dead one forgotten at once", async () => {
    const e = ep("reroute");
    const doomedPlane = await env.extraClient();
    const doomed = await doomedPlane.serve(e, (_r, ctx) => ctx.instanceId, { instanceId: "doomed" });
    const alive = track(await env.server.serve(e, (_r, ctx) => ctx.instanceId, { instanceId: "alive" }));
    const c = env.client.client<unknown, string>(e);
    await c.waitForInstances({ count: 2, timeoutMs: 5000 });
    await closeAbruptly(doomedPlane); // no "down" message: the client still lists it until its lease ends
    expect(doomed.activeRequests).toBe(0);
    expect(c.instances().map((i) => i.id)).toEqual(["alive", "doomed"]);
    for (let i = 0; i < 4; i++) expect(await c.request({})).toBe(alive.instanceId);
    expect(c.instances().map((i) => i.id)).toEqual(["alive"]);
    // naming the dead instance is not rerouted
    expect(await rejection(c.request({}, { instanceId: "doomed" }))).toBeInstanceOf(NoRespondersError);
    c.close();
    await doomedPlane.close({ graceMs: 0 }); // releases the dead instance's timers in this process
  });

  it("onInstancesChange tells of arrivals and departures until it is removed", async () => {
    const e = ep("watch");
    const c = env.client.client(e);
    const seen: string[][] = [];
    const off = c.onInstancesChange(() => seen.push(c.instances().map((i) => i.id)));
    const s = await env.server.serve(e, () => 1, { instanceId: "w1" });
    await c.waitForInstances({ timeoutMs: 5000 });
    expect(seen.some((ids) => ids.includes("w1"))).toBe(true);
    await s.stop({ graceMs: 0 }); // announces down
    await waitUntil(() => seen.at(-1)?.length === 0, 5000, "the departure");
    off();
    const n = seen.length;
    track(await env.server.serve(e, () => 1, { instanceId: "w2" }));
    await c.waitForInstances({ timeoutMs: 5000 });
    expect(seen).toHaveLength(n);
    c.close();
  });

  it("no instance at all: NoRespondersError, not a timeout", async () => {
    const c = env.client.client(ep("nobody"));
    const t0 = Date.now();
    const err = await rejection(c.request({}));
    expect(err).toBeInstanceOf(NoRespondersError);
    expect((err as NoRespondersError).code).toBe("no_responders");
    expect(Date.now() - t0).toBeLessThan(1000);
    c.close();
  });

  it("a custom chooser (least loaded by a published metric) picks the instance", async () => {
    const e = ep("chooser");
    const busy = track(await env.server.serve(e, (_r, ctx) => ctx.instanceId, { metrics: () => ({ kvBlocksFree: 1 }) }));
    const idle = track(await env.server.serve(e, (_r, ctx) => ctx.instanceId, { metrics: () => ({ kvBlocksFree: 1 }), meta: { role: "decode" } }));
    idle.setMetrics({ queuedRequests: 0 });
    busy.setMetrics({ queuedRequests: 7 });
    const c = env.client.client<unknown, string>(e, { router: leastLoaded("queuedRequests") });
    await waitUntil(() => c.instances().filter((i) => i.metrics.queuedRequests !== undefined).length === 2, 5000, "metrics");
    const info = c.instances().find((i) => i.id === idle.instanceId)!;
    expect(info.metrics).toMatchObject({ activeRequests: 0, kvBlocksFree: 1, queuedRequests: 0 });
    expect(info.meta).toEqual({ role: "decode" });
    for (let i = 0; i < 4; i++) expect(await c.request({})).toBe(idle.instanceId);
    c.close();
  });

  it("cancel reaches the handler: abort signal and leaving the loop", async () => {
    const e = ep("cancel");
    const signals: AbortSignal[] = [];
    let finalized = 0;
    track(
      await env.server.serve(e, async function* (_req, ctx) {
        signals.push(ctx.signal);
        try {
          for (let i = 0; ; i++) {
            if (ctx.signal.aborted) return;
            yield i;
            await sleep(5);
          }
        } finally {
          finalized++;
        }
      }),
    );
    const c = env.client.client(e);
    await c.waitForInstances({ timeoutMs: 5000 });

    const ac = new AbortController();
    const got: unknown[] = [];
    const err = await rejection(
      (async () => {
        for await (const v of c.generate({}, { signal: ac.signal })) {
          got.push(v);
          if (got.length === 3) ac.abort();
        }
      })(),
    );
    expect(err).toBeInstanceOf(CancelledError);
    expect(await aborted(signals[0], 3000)).toBeInstanceOf(CancelledError);

    for await (const v of c.generate({})) if (v === 2) break;
    expect(await aborted(signals[1], 3000)).toBeInstanceOf(CancelledError);
    await waitUntil(() => finalized === 2, 3000, "handlers' finally blocks");
    c.close();
  });

  it("a cancel issued before the server's first frame still reaches the handler", async () => {
    const e = ep("early-cancel");
    const signals: AbortSignal[] = [];
    track(
      await env.server.serve(e, async (req: { warm?: boolean }, ctx) => {
        if (req.warm) return "warm";
        signals.push(ctx.signal);
        await aborted(ctx.signal, 10_000);
        return "never";
      }),
    );
    const c = env.client.client(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    // A request cancelled while its direct link is still being opened is never sent (nothing to cancel): one
    // request first, so that this one goes out at once on whatever carrier the plane uses.
    expect(await c.request({ warm: true })).toBe("warm");
    const stream = c.generate({});
    stream.cancel("changed my mind"); // synchronously: no frame can have arrived yet
    expect(await rejection(stream.next())).toBeInstanceOf(CancelledError);
    await waitUntil(() => signals.length === 1, 3000, "handler started");
    const reason = await aborted(signals[0], 3000);
    expect(reason).toBeInstanceOf(CancelledError);
    expect((reason as Error).message).toContain("changed my mind");
    await waitUntil(() => env.client.mux.size === 0, 3000, "inbox route released");
    c.close();
  });

  it("deadline: the client gets TimeoutError and the handler's signal fires", async () => {
    const e = ep("deadline");
    let signal: AbortSignal | undefined;
    let deadline: number | undefined;
    track(
      await env.server.serve(e, async (_req, ctx) => {
        signal = ctx.signal;
        deadline = ctx.deadline;
        await aborted(ctx.signal, 10_000);
        return "late";
      }),
    );
    const c = env.client.client(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    const t0 = Date.now();
    const err = await rejection(c.request({}, { timeoutMs: 300 }));
    const took = Date.now() - t0;
    expect(err).toBeInstanceOf(TimeoutError);
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(2000);
    expect(deadline).toBeGreaterThan(t0);
    expect(await aborted(signal!, 3000)).toBeInstanceOf(Error);
    c.close();
  });

  it("payload too large: refused before sending (request) and reported as such (reply)", async () => {
    const e = ep("big");
    let calls = 0;
    track(
      await env.server.serve<{ size: number }, Uint8Array>(e, (req) => {
        calls++;
        return new Uint8Array(req.size);
      }),
    );
    const c = env.client.client<{ size: number; pad?: Uint8Array }, Uint8Array>(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    const t0 = Date.now();
    const err = await rejection(c.request({ size: 1, pad: new Uint8Array(env.maxPayload + 1) }));
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    expect((err as PayloadTooLargeError).maxPayload).toBe(env.maxPayload);
    expect(Date.now() - t0).toBeLessThan(200);
    expect(calls).toBe(0);

    const err2 = await rejection(c.request({ size: env.maxPayload + 10 }));
    expect(err2).toBeInstanceOf(PayloadTooLargeError);
    expect((err2 as PayloadTooLargeError).code).toBe("payload_too_large");
    // a reply just under the limit still passes
    expect((await c.request({ size: env.maxPayload - 100 })).byteLength).toBe(env.maxPayload - 100);
    c.close();
  });

  it("handler errors arrive as RemoteError with code and message; replies before it are delivered", async () => {
    const e = ep("fails");
    track(
      await env.server.serve(e, async function* () {
        yield 1;
        yield 2;
        throw Object.assign(new Error("kv blocks exhausted"), { code: "kv_exhausted" });
      }),
    );
    const c = env.client.client(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    const got: unknown[] = [];
    const err = await rejection(
      (async () => {
        for await (const v of c.generate({})) got.push(v);
      })(),
    );
    expect(got).toEqual([1, 2]);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).remoteCode).toBe("kv_exhausted");
    expect((err as RemoteError).message).toBe("kv blocks exhausted");
    c.close();
  });

  it("a stream that idles longer than the heartbeat bound stays alive", async () => {
    const e = ep("idle");
    track(
      await env.server.serve(e, async function* () {
        yield "a";
        await sleep(env.server.heartbeatMs * 4);
        yield "b";
      }),
    );
    const c = env.client.client(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    expect(await c.generate({}).collect()).toEqual(["a", "b"]);
    c.close();
  });

  it("a client that goes away cancels its handler (no subscriber on its inbox)", async () => {
    const e = ep("gone");
    let signal: AbortSignal | undefined;
    track(
      await env.server.serve(e, async function* (_req, ctx) {
        signal = ctx.signal;
        for (;;) {
          if (ctx.signal.aborted) return;
          yield Date.now();
          await sleep(20);
        }
      }),
    );
    const extra = await env.extraClient();
    const c = extra.client(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    const stream = c.generate({});
    await stream[Symbol.asyncIterator]().next();
    await closeAbruptly(extra); // no cancel message is sent: the server must notice by itself
    expect(await aborted(signal!, env.server.heartbeatMs * 3 + 2000)).toBeInstanceOf(CancelledError);
  });

  it("closing a plane ends its in-flight requests with ClosedError and cancels them on the server", async () => {
    const e = ep("plane-close");
    let signal: AbortSignal | undefined;
    track(
      await env.server.serve(e, async function* (_req, ctx) {
        signal = ctx.signal;
        for (let i = 0; !ctx.signal.aborted; i++) {
          yield i;
          await sleep(10);
        }
      }),
    );
    const extra = await env.extraClient();
    const c = extra.client(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    const stream = c.generate({});
    await stream.next();
    const t0 = Date.now();
    await extra.close();
    const err = await rejection((async () => { for await (const _ of stream); })());
    expect(err).toBeInstanceOf(ClosedError);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await aborted(signal!, 3000)).toBeInstanceOf(CancelledError);
  });

  it("instances: stop removes at once; setMetrics is visible; invalid names are typed errors", async () => {
    const e = ep("disc");
    const s = await env.server.serve(e, () => 1, { instanceId: "worker-1" });
    const c = env.client.client(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    expect(c.instances().map((i) => i.path)).toEqual([`suite/${e.component}/disc/worker-1`]);
    s.setMetrics({ kvBlocksFree: 9 });
    await waitUntil(() => c.instances()[0]?.metrics.kvBlocksFree === 9, 3000, "metrics update");
    await s.stop();
    await waitUntil(() => c.instances().length === 0, 1000, "down announcement");
    expect(() => env.server.endpoint("Bad", "x", "y")).toThrow(InvalidNameError);
    expect(() => env.server.endpoint("a/b")).toThrow(InvalidNameError);
    await expect(env.server.serve(e, () => 1, { instanceId: "no.dots" })).rejects.toBeInstanceOf(InvalidNameError);
    const err = await rejection(c.request({}, { instanceId: "UPPER" }));
    expect(err).toBeInstanceOf(InvalidNameError);
    await expect(c.waitForInstances({ timeoutMs: 100 })).rejects.toBeInstanceOf(TimeoutError);
    c.close();
  });

  it("nothing leaks: subscriptions return to the baseline after clients and servers close", async () => {
    await sleep(100); // let the previous test's unsubscriptions settle
    const before = env.liveSubscriptions();
    const e = ep("leak");
    const s = await env.server.serve(e, async function* () {
      for (let i = 0; i < 50; i++) yield i;
    });
    const c = env.client.client(e);
    await c.waitForInstances({ timeoutMs: 5000 });
    await waitUntil(() => env.liveSubscriptions() > before, 2000, "subscriptions while serving");
    await c.generate({}).collect();
    for await (const v of c.generate({})) if (v === 3) break;
    await rejection(c.request({}, { instanceId: "nope" }));
    c.close();
    await s.stop();
    expect(s.activeRequests).toBe(0);
    await waitUntil(() => env.client.mux.size === 0, 2000, "no request routes left in the client's inbox mux");
    await waitUntil(() => env.liveSubscriptions() === before, 2000, "subscriptions back to baseline");
  });

  function closeAbruptly(p: RequestPlane): Promise<void> {
    return env.crash(p);
  }
}
