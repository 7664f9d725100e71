// The direct data path against a real nats-server: frames take the link (nats-server's own counters show it),
// fallback to NATS when the link cannot be opened, a dropped link fails its requests at once and the next request
// reconnects, the secret is checked, the link reaches nothing but its instance, nothing stays open.
import { connect as netConnect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { connect as natsConnect } from "@nats-io/transport-node";
import {
  CancelledError,
  PayloadTooLargeError,
  ServerGoneError,
  binaryCodec,
  connect,
  startNatsServer,
  subjects,
  type RequestPlane,
} from "../src/index.js";
import { breakDirectLinks, freePort } from "../src/testing.js";
import { aborted, rejection, sleep, waitUntil } from "./helpers.js";

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

async function natsWithMonitor() {
  const monitorPort = await freePort();
  const nats = await startNatsServer({ args: ["-m", String(monitorPort)] });
  cleanups.push(() => nats.stop());
  /** Messages nats-server received from the connection named `name` (its PUBs) and sent to it. */
  const counts = async (name: string): Promise<{ in: number; out: number }> => {
    const r = (await (await fetch(`http://127.0.0.1:${monitorPort}/connz?limit=1024`)).json()) as {
      connections: Array<{ name?: string; in_msgs: number; out_msgs: number }>;
    };
    const c = r.connections.find((x) => x.name === name);
    if (!c) throw new Error(`no connection named ${name}`);
    return { in: c.in_msgs, out: c.out_msgs };
  };
  return { nats, counts };
}

/** One frame of the link's wire format (link-socket.ts), written out by hand. */
function frame(type: number, subject: string, reply: string, data: Uint8Array): Buffer {
  const n = 5 + subject.length + reply.length + data.length;
  const b = Buffer.alloc(4 + n);
  b.writeUInt32LE(n, 0);
  b[4] = type;
  b.writeUInt16LE(subject.length, 5);
  b.writeUInt16LE(reply.length, 7);
  b.write(subject, 9, "latin1");
  b.write(reply, 9 + subject.length, "latin1");
  b.set(data, 9 + subject.length + reply.length);
  return b;
}

/** Collects the frames a raw socket receives: [type, subject] each, until it closes. */
function readFrames(s: Socket): { frames: Array<[number, string]>; closed: Promise<void> } {
  const frames: Array<[number, string]> = [];
  let buf = Buffer.alloc(0);
  s.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32LE(0)) {
      const n = buf.readUInt32LE(0);
      frames.push([buf[4], buf.toString("latin1", 9, 9 + buf.readUInt16LE(5))]);
      buf = buf.subarray(4 + n);
    }
  });
  return { frames, closed: new Promise((r) => s.once("close", () => r())) };
}

const streamer = async function* (req: { n: number }) {
  for (let i = 0; i < req.n; i++) yield i;
};

describe("direct data path over a real nats-server", () => {
  it("request and reply frames take the link: nats-server relays none of them (its /connz counters), and the client counts them as direct", async () => {
    const { nats, counts } = await natsWithMonitor();
    const server = await connect(nats.uri, { name: "dl-server", heartbeatMs: 200, leaseMs: 3000 });
    cleanups.push(() => server.close());
    await server.serve("dl/proof/gen", streamer, { instanceId: "w1" });
    for (const directLink of [true, false]) {
      const name = `dl-client-${directLink}`;
      const client = await connect(nats.uri, { name, directLink });
      cleanups.push(() => client.close());
      const c = client.client<{ n: number }, number>("dl/proof/gen");
      await c.waitForInstances({ timeoutMs: 5000 });
      expect(c.instances()[0].directLink).toMatch(/^127\.0\.0\.1:\d+$/);
      await c.generate({ n: 3 }).collect(); // opens the link (or not)
      const before = await counts(name);
      for (let r = 0; r < 20; r++) expect(await c.generate({ n: 10 }).collect()).toEqual([...Array(10).keys()]);
      const after = await counts(name);
      if (directLink) {
        // not one message from the client through nats-server: the 20 requests (and their credits) took the link;
        // what it received is discovery's announcements only (one per lease/3 = 1 s), not 220 reply frames
        expect(after.in - before.in).toBe(0);
        expect(after.out - before.out).toBeLessThan(10);
        expect(c.carrierCounts()).toEqual({ w1: { direct: 21, nats: 0 } });
        expect(client.openLinks).toBe(1);
      } else {
        expect(after.in - before.in).toBeGreaterThanOrEqual(20);
        expect(after.out - before.out).toBeGreaterThanOrEqual(20 * 10);
        expect(c.carrierCounts()).toEqual({ w1: { direct: 0, nats: 21 } });
        expect(client.openLinks).toBe(0);
      }
      c.close();
    }
  });

  it("falls back to NATS when the advertised link cannot be opened: nothing listening (refused) or no answer within connectTimeoutMs", async () => {
    const { nats } = await natsWithMonitor();
    // 127.0.0.2 is loopback too, but the listener is bound to 127.0.0.1 only: connecting there is refused.
    // 192.0.2.1 (TEST-NET-1, RFC 5737) routes nowhere: the connect hangs or fails, bounded by connectTimeoutMs.
    for (const advertiseHost of ["127.0.0.2", "192.0.2.1"]) {
      const server = await connect(nats.uri, { directLink: { advertiseHost } });
      const client = await connect(nats.uri, { directLink: { connectTimeoutMs: 300 } });
      cleanups.push(() => client.close(), () => server.close());
      await server.serve("dl/fallback/gen", streamer, { instanceId: "w1" });
      const c = client.client<{ n: number }, number>("dl/fallback/gen");
      await c.waitForInstances({ timeoutMs: 5000 });
      expect(c.instances()[0].directLink).toMatch(new RegExp(`^${advertiseHost.replaceAll(".", "\\.")}:`));
      const t0 = Date.now();
      expect(await c.generate({ n: 5 }).collect()).toEqual([0, 1, 2, 3, 4]);
      expect(Date.now() - t0).toBeLessThan(300 + 700);
      // the next ones go straight to NATS (no new connect attempt within retryAfterMs)
      const t1 = Date.now();
      for (let i = 0; i < 5; i++) expect(await c.request({ n: 1 })).toBe(0);
      expect(Date.now() - t1).toBeLessThan(250);
      expect(c.carrierCounts()).toEqual({ w1: { direct: 0, nats: 6 } });
      expect(client.openLinks).toBe(0);
      c.close();
      await client.close();
      await server.close();
    }
  });

  it("a link dropped mid-stream fails its request at once with ServerGoneError and cancels the handler; the next request reconnects", async () => {
    const { nats } = await natsWithMonitor();
    const server = await connect(nats.uri, { heartbeatMs: 1000 });
    const client = await connect(nats.uri, { heartbeatMs: 1000 });
    cleanups.push(() => client.close(), () => server.close());
    const signals: AbortSignal[] = [];
    const served = await server.serve(
      "dl/drop/gen",
      async function* (req: { n: number }, ctx) {
        signals.push(ctx.signal);
        for (let i = 0; i < req.n && !ctx.signal.aborted; i++) {
          yield i;
          await sleep(5);
        }
      },
      { instanceId: "w1" },
    );
    const c = client.client<{ n: number }, number>("dl/drop/gen");
    await c.waitForInstances({ timeoutMs: 5000 });
    let received = 0;
    let brokeAt = 0;
    const err = await rejection(
      (async () => {
        for await (const _ of c.generate({ n: 100_000 })) {
          if (++received === 10) {
            breakDirectLinks(client);
            brokeAt = Date.now();
          }
        }
      })(),
    );
    // at once: not after 3 heartbeats (3 s here)
    expect(Date.now() - brokeAt).toBeLessThan(200);
    expect(err).toBeInstanceOf(ServerGoneError);
    expect((err as ServerGoneError).instanceId).toBe("w1");
    expect(await aborted(signals[0], 2000)).toBeInstanceOf(CancelledError);
    await waitUntil(() => served.activeRequests === 0, 2000, "the handler to end");
    expect(client.mux.size).toBe(0);
    // the next request opens a new link
    expect(await c.generate({ n: 3 }).collect()).toEqual([0, 1, 2]);
    expect(c.carrierCounts()).toEqual({ w1: { direct: 2, nats: 0 } });
    expect(client.openLinks).toBe(1);
    c.close();
  });

  it("the secret is checked: a wrong one is refused; the right one (from discovery) opens a link that reaches its own instance only", async () => {
    const { nats } = await natsWithMonitor();
    const server = await connect(nats.uri);
    cleanups.push(() => server.close());
    await server.serve("dl/secret/gen", (req: { x: number }) => req.x + 1, { instanceId: "w1" });
    await server.serve("dl/secret/other", () => "other", { instanceId: "w2" });
    // what a client learns: the announcement carries host, port and secret
    const nc = await natsConnect({ servers: nats.uri });
    cleanups.push(() => nc.close());
    const sub = nc.subscribe(subjects.announce({ namespace: "dl", component: "secret", endpoint: "gen" }), { max: 1 });
    nc.publish(subjects.probe({ namespace: "dl", component: "secret", endpoint: "gen" }), binaryCodec.encode({ k: "probe" }));
    let link: { h: string; p: number; s: string } | undefined;
    for await (const m of sub) link = (binaryCodec.decode(m.data) as { l: typeof link }).l;
    expect(link).toMatchObject({ h: "127.0.0.1", p: expect.any(Number), s: expect.stringMatching(/^[A-Za-z0-9_-]{24}$/) });

    const open = async (instance: string, secret: string) => {
      const s = netConnect({ host: link!.h, port: link!.p });
      cleanups.push(() => s.destroy());
      const r = readFrames(s);
      await new Promise<void>((res, rej) => s.once("connect", res).once("error", rej));
      s.write(frame(1, instance, "", Buffer.from(secret)));
      return { s, ...r };
    };
    for (const [instance, secret] of [["w1", link!.s.replace(/^./, (ch) => (ch === "A" ? "B" : "A"))], ["w1", ""], ["nobody", link!.s], ["w2", link!.s]]) {
      const bad = await open(instance, secret);
      await bad.closed; // the server ends the connection
      expect(bad.frames.map((f) => f[0])).toEqual([3]); // refused, nothing else
    }
    const good = await open("w1", link!.s);
    await waitUntil(() => good.frames.length > 0, 2000, "welcome");
    expect(good.frames[0][0]).toBe(2);
    // bound to w1: a request to another instance's subject gets no-responders, as NATS would answer
    const req = binaryCodec.encode({ k: "req", id: "r1", p: {}, w: 16 });
    good.s.write(frame(4, subjects.instance({ namespace: "dl", component: "secret", endpoint: "other" }, "w2"), "_INBOX.test.1", req));
    good.s.write(frame(4, subjects.instance({ namespace: "dl", component: "secret", endpoint: "gen" }, "w1"), "_INBOX.test.2", binaryCodec.encode({ k: "req", id: "r2", p: { x: 41 }, w: 16 })));
    await waitUntil(() => good.frames.length >= 3, 2000, "two answers");
    expect(good.frames.slice(1)).toEqual([
      [5, "_INBOX.test.1"],
      [4, "_INBOX.test.2"],
    ]);
  });

  it("oversize payloads: the same PayloadTooLargeError as over NATS, before sending (request) and from the server (reply)", async () => {
    const { nats } = await natsWithMonitor();
    const server = await connect(nats.uri);
    const client = await connect(nats.uri);
    cleanups.push(() => client.close(), () => server.close());
    await server.serve("dl/big/gen", (req: { n: number }) => new Uint8Array(req.n), { instanceId: "w1" });
    const c = client.client<{ n: number } | { pad: Uint8Array }, Uint8Array>("dl/big/gen");
    await c.waitForInstances({ timeoutMs: 5000 });
    const max = client.transport.maxPayload;
    expect((await c.request({ n: 1000 })).length).toBe(1000);
    const tooBigRequest = await rejection(c.request({ pad: new Uint8Array(max + 1) }));
    expect(tooBigRequest).toBeInstanceOf(PayloadTooLargeError);
    const tooBigReply = await rejection(c.request({ n: max + 1 }));
    expect(tooBigReply).toBeInstanceOf(PayloadTooLargeError);
    expect((tooBigReply as PayloadTooLargeError).maxPayload).toBe(max);
    expect(c.carrierCounts()).toEqual({ w1: { direct: 2, nats: 0 } });
    c.close();
  });

  it("large frames split across TCP reads arrive intact, in order, interleaved with small ones", async () => {
    const { nats } = await natsWithMonitor();
    const server = await connect(nats.uri);
    const client = await connect(nats.uri);
    cleanups.push(() => client.close(), () => server.close());
    await server.serve(
      "dl/large/gen",
      async function* (req: { sizes: number[] }) {
        for (const [i, n] of req.sizes.entries()) yield Uint8Array.from({ length: n }, (_, j) => (i * 31 + j) & 0xff);
      },
      { instanceId: "w1" },
    );
    const c = client.client<{ sizes: number[] }, Uint8Array>("dl/large/gen");
    await c.waitForInstances({ timeoutMs: 5000 });
    const sizes = [700_000, 3, 65_537, 1, 300_000, 0, 128 * 1024];
    const [a, b] = await Promise.all([c.generate({ sizes }).collect(), c.generate({ sizes: [...sizes].reverse() }).collect()]);
    for (const [got, want] of [[a, sizes], [b, [...sizes].reverse()]] as const) {
      expect(got.map((x) => x.length)).toEqual(want);
      got.forEach((x, i) => expect(x.every((v, j) => v === ((i * 31 + j) & 0xff))).toBe(true));
    }
    expect(c.carrierCounts()).toEqual({ w1: { direct: 2, nats: 0 } });
    c.close();
  });

  it("nothing stays open: plane.close() closes the listener and every link, on both sides", async () => {
    const { nats } = await natsWithMonitor();
    const sockets = () => process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap" || r === "TCPServerWrap").length;
    const baseline = sockets();
    const server: RequestPlane = await connect(nats.uri);
    const client: RequestPlane = await connect(nats.uri);
    await server.serve("dl/leak/gen", streamer, { instanceId: "w1" });
    await server.serve("dl/leak/gen", streamer, { instanceId: "w2" });
    const address = await server.linkAddress();
    const c = client.client<{ n: number }, number>("dl/leak/gen");
    await c.waitForInstances({ count: 2, timeoutMs: 5000 });
    for (const instanceId of ["w1", "w2"]) expect(await c.generate({ n: 2 }, { instanceId }).collect()).toEqual([0, 1]);
    expect(client.openLinks).toBe(2);
    // 2 NATS connections + the listener + 2 links, each with two ends in this process
    expect(sockets() - baseline).toBe(2 + 1 + 2 * 2);
    await client.close();
    await server.close();
    await waitUntil(() => sockets() === baseline, 2000, "every socket closed");
    expect(client.openLinks).toBe(0);
    const [host, port] = address!.split(":");
    const refused = await rejection(new Promise((res, rej) => netConnect({ host, port: Number(port) }).once("connect", res).once("error", rej)));
    expect((refused as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });
});
