// NATS core delivers at most once: across a reconnect (e.g. nats-server restarted) replies and credit can be
// lost while both ends stay alive and keep exchanging heartbeats. These tests lose exactly such messages on a
// real nats-server, deterministically, through `LossyTransport` (a test double wrapping the real NATS
// transport of the client's plane), and check that every stream still completes or fails with a typed error
// within the heartbeat bound instead of waiting for its deadline (the nats-restart reliability flake).
// These are properties of the NATS carrier, so the planes here have the direct link off (`directLink: false`);
// a dropped direct link is tested in direct-link.test.ts.
import { afterEach, describe, expect, it } from "vitest";
import {
  NatsTransport,
  RequestPlane,
  StreamBrokenError,
  binaryCodec,
  connect,
  startNatsServer,
  type Transport,
  type TransportMsg,
  type TransportPublishOptions,
  type TransportStatus,
  type TransportSubscribeOptions,
} from "../src/index.js";
import { connect as natsConnect } from "@nats-io/transport-node";
import { aborted, rejection, sleep, waitUntil } from "./helpers.js";

type Frame = { k?: string; s?: number; n?: number };
const frameOf = (data: Uint8Array): Frame => {
  try {
    return binaryCodec.decode(data) as Frame;
  } catch {
    return {};
  }
};

/** Test double: the real NATS transport, except that messages matching `dropIn` / `dropOut` vanish (as in a reconnect). */
class LossyTransport implements Transport {
  readonly kind = "nats" as const;
  dropIn: (m: TransportMsg, f: Frame) => boolean = () => false;
  dropOut: (subject: string, f: Frame) => boolean = () => false;
  dropped = 0;
  constructor(private readonly inner: Transport) {}
  get maxPayload() {
    return this.inner.maxPayload;
  }
  get isClosed() {
    return this.inner.isClosed;
  }
  publish(subject: string, data: Uint8Array, options?: TransportPublishOptions): void {
    if (this.dropOut(subject, frameOf(data))) {
      this.dropped++;
      return;
    }
    this.inner.publish(subject, data, options);
  }
  subscribe(subject: string, cb: (m: TransportMsg) => void, options?: TransportSubscribeOptions) {
    return this.inner.subscribe(
      subject,
      (m) => {
        if (!m.noResponders && this.dropIn(m, frameOf(m.data))) {
          this.dropped++;
          return;
        }
        cb(m);
      },
      options,
    );
  }
  newInbox() {
    return this.inner.newInbox();
  }
  flush() {
    return this.inner.flush();
  }
  onStatus(listener: (s: TransportStatus) => void) {
    return this.inner.onStatus(listener);
  }
  close() {
    return this.inner.close();
  }
}

const HB = 100; // heartbeat ms; the client allows 3 missed
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

/** A real nats-server, a serving plane, and a client plane whose transport can lose messages. */
async function setup(window: number, handler: Parameters<RequestPlane["serve"]>[1]) {
  const nats = await startNatsServer();
  cleanups.push(() => nats.stop());
  const serverPlane = await connect(nats.uri, { heartbeatMs: HB });
  cleanups.push(() => serverPlane.close());
  const served = await serverPlane.serve("lost/msgs/gen", handler, { instanceId: "w0" });
  const lossy = new LossyTransport(NatsTransport.fromConnection(await natsConnect({ servers: nats.uri })));
  const clientPlane = new RequestPlane(lossy, { heartbeatMs: HB, directLink: false });
  cleanups.push(() => clientPlane.close());
  const client = clientPlane.client<unknown, number>("lost/msgs/gen", { window });
  await client.waitForInstances({ timeoutMs: 5000 });
  return { served, lossy, client, clientPlane };
}

describe("messages lost in a NATS reconnect", () => {
  it("replies lost while the server waits for credit: StreamBrokenError within the heartbeat bound, the handler is cancelled", async () => {
    let handlerSignal: AbortSignal | undefined;
    const { served, lossy, client, clientPlane } = await setup(8, async function* (_req, ctx) {
      handlerSignal = ctx.signal;
      for (let i = 1; i <= 100; i++) yield i;
    });
    // Replies 3..8 vanish: the server has sent its whole window (8) and waits for credit; we got 2, credit none.
    lossy.dropIn = (_m, f) => f.k === "d" && f.s! >= 3 && f.s! <= 8;
    const got: number[] = [];
    let lastAt = 0;
    const t0 = Date.now();
    const err = await rejection(
      (async () => {
        // the deadline only keeps a regression from hanging the test: it would end in TimeoutError instead
        for await (const r of client.generate({}, { timeoutMs: 40 * HB })) {
          got.push(r);
          lastAt = Date.now();
        }
      })(),
    );
    expect(got).toEqual([1, 2]);
    expect(lossy.dropped).toBe(6);
    expect(err).toBeInstanceOf(StreamBrokenError);
    expect((err as StreamBrokenError).code).toBe("stream_broken");
    expect((err as Error).message).toMatch(/replies 3\.\.8 .* lost in transit/);
    // the server heartbeats a quiet stream within 1.5 intervals; allow scheduling slack, well under the deadline
    expect(Date.now() - lastAt).toBeLessThan(3 * HB + 200);
    expect(Date.now() - t0).toBeLessThan(20 * HB);
    // the client's cancel reached the handler, and nothing is left on either side
    expect(handlerSignal).toBeDefined();
    await aborted(handlerSignal!, 2000);
    await waitUntil(() => served.activeRequests === 0, 2000, "the server to let go of the request");
    expect(clientPlane.mux.size).toBe(0);
  });

  it("credit lost: the client sends it again when a heartbeat shows the server short of it, and the stream completes", async () => {
    const { lossy, client, served } = await setup(4, async function* () {
      for (let i = 1; i <= 40; i++) yield i;
    });
    // window 4: credit goes out at 2 and 4 consumed; losing both leaves the server at 4 sent, 0 credited
    let creditsLost = 0;
    lossy.dropOut = (_s, f) => f.k === "credit" && creditsLost < 2 && ++creditsLost > 0;
    const t0 = Date.now();
    const out = await client.generate({}, { timeoutMs: 40 * HB }).collect();
    expect(creditsLost).toBe(2);
    expect(out).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(Date.now() - t0).toBeLessThan(20 * HB); // one heartbeat (≤ 1.5 HB) to notice, not the deadline
    await waitUntil(() => served.activeRequests === 0, 2000, "the server to finish the request");
  }, 30_000);

  it("the accept frame lost: the control subject comes with the next frame, credit flows, the stream completes", async () => {
    const { lossy, client } = await setup(4, async function* () {
      await sleep(50); // no reply by the next turn: the server sends an explicit `acc` first
      for (let i = 1; i <= 20; i++) yield i;
    });
    lossy.dropIn = (_m, f) => f.k === "acc";
    const out = await client.generate({}, { timeoutMs: 40 * HB }).collect();
    expect(lossy.dropped).toBe(1);
    expect(out).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it("data frames carry the control subject until the client's first credit, then go without it; order and credit hold", async () => {
    const { lossy, client, served } = await setup(8, async function* () {
      for (let i = 1; i <= 60; i++) yield i;
    });
    const withReply: number[] = [];
    const withoutReply: number[] = [];
    lossy.dropIn = (m, f) => {
      if (f.k === "d") (m.reply ? withReply : withoutReply).push(f.s!);
      if (f.k === "hb" || f.k === "end" || f.k === "err") expect(m.reply).toBeTruthy();
      return false;
    };
    const out = await client.generate({}, { timeoutMs: 40 * HB }).collect();
    expect(out).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    // frame 1 always carries it, and the frames sent before the first credit (window 8: at most 8); after
    // that only one per half heartbeat interval (this stream takes well under one)
    expect(withReply[0]).toBe(1);
    expect(withReply.length).toBeLessThanOrEqual(8 + 2);
    expect(withoutReply.length).toBe(60 - withReply.length);
    expect(withoutReply.length).toBeGreaterThan(40);
    await waitUntil(() => served.activeRequests === 0, 2000, "the server to finish the request");
  });

  it("a busy stream's client dies: a data frame still carries the control subject each half heartbeat, the handler is cancelled", async () => {
    const nats = await startNatsServer();
    cleanups.push(() => nats.stop());
    const serverPlane = await connect(nats.uri, { heartbeatMs: HB });
    cleanups.push(() => serverPlane.close());
    let handlerSignal: AbortSignal | undefined;
    const served = await serverPlane.serve("lost/msgs/busy", async function* (_req, ctx) {
      handlerSignal = ctx.signal;
      // a steady producer (a decode loop) far from exhausting its window of 1024: it never waits for credit,
      // and is never quiet long enough for a heartbeat
      for (let i = 1; !ctx.signal.aborted && i < 100_000; i++) {
        yield i;
        if (i > 600) await sleep(2);
      }
    });
    const nc = await natsConnect({ servers: nats.uri });
    const clientPlane = new RequestPlane(NatsTransport.fromConnection(nc), { heartbeatMs: HB, directLink: false });
    const client = clientPlane.client<unknown, number>("lost/msgs/busy", { window: 1024 });
    await client.waitForInstances({ timeoutMs: 5000 });
    cleanups.push(() => clientPlane.close().catch(() => undefined));
    const stream = client.generate({});
    // read past the first credit (at 512): the server knows the client has the control subject
    for (let i = 1; i <= 600; i++) expect((await stream.next()).value).toBe(i);
    expect(served.activeRequests).toBe(1);
    await sleep(3 * HB); // the credit has arrived: the frames sent now mostly go without the control subject
    await nc.close(); // no cancel is sent: the connection is simply gone (as when the process dies)
    const t0 = Date.now();
    await aborted(handlerSignal!, 20 * HB);
    expect(Date.now() - t0).toBeLessThan(HB + 300); // the next frame with a reply subject: ≤ HB / 2 later
    await waitUntil(() => served.activeRequests === 0, 2000, "the server to let go of the request");
  });

  it("the cancel lost: the server's next frame for the ended request brings another cancel, the handler is released", async () => {
    let handlerSignal: AbortSignal | undefined;
    const { lossy, client, served, clientPlane } = await setup(8, async function* (_req, ctx) {
      handlerSignal = ctx.signal;
      for (let i = 1; ; i++) yield i; // endless: only a cancel (or the deadline, none here) stops it
    });
    let cancelsLost = 0;
    lossy.dropOut = (_s, f) => f.k === "cancel" && cancelsLost === 0 && ++cancelsLost > 0;
    const got: number[] = [];
    for await (const r of client.generate({})) {
      got.push(r);
      if (got.length === 2) break; // leaving the loop cancels; that cancel is lost
    }
    const t0 = Date.now();
    expect(cancelsLost).toBe(1);
    expect(clientPlane.mux.size).toBe(0);
    await aborted(handlerSignal!, 20 * HB); // without the stray-frame cancel: held with no bound (no deadline)
    expect(Date.now() - t0).toBeLessThan(3 * HB + 200); // frames in flight or the next heartbeat (≤ 1.5 HB)
    await waitUntil(() => served.activeRequests === 0, 2000, "the server to let go of the request");
  });
});
