// When an offer's KV is staged to host memory: an offer with a device path (cuda-ipc) is registered without calling
// segments() or computing CRCs; the first host transfer (tcp, shm, nats, the fallback after a failed device import)
// stages it once. Real offer server, puller, sockets and nats-server; the device side is DeviceKvTestDouble, whose
// exported source's segments() stands for the CUDA executor's device → pinned host copy (`hostStagings`).
import { connect as netConnect, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connect, startNatsServer, type NatsServerHandle, type RequestPlane } from "@trtd/request-plane";
import {
  BufferKvSource,
  KvChecksumError,
  KvOfferServer,
  KvProtocolError,
  KvPuller,
  KvTransferError,
  KvTransportError,
  localHostId,
  parseKvHandle,
  ringFilesOf,
  serializeKvHandle,
  type KvHandle,
  type KvTransportName,
} from "../src/index.js";
import { controlFrame, expectedDigest, FrameType, type PullBegin, type PullRequest } from "../src/wire.js";
import { DeviceKvTestDouble } from "./device-double.js";
import { startProxy } from "./proxy.js";
import { layout, randomSource, sameBytes, sinkFor, until } from "./helpers.js";

let nats: NatsServerHandle;
let plane: RequestPlane;
beforeAll(async () => {
  nats = await startNatsServer();
  plane = await connect(nats.uri);
});
afterAll(async () => {
  await plane?.close();
  await nats?.stop();
});

const closers: Array<() => unknown> = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function pair(serverOpts: Partial<Parameters<typeof KvOfferServer.start>[0]> = {}) {
  const server = await KvOfferServer.start({ layout, chunkBytes: 8192, nats: { requestPlane: plane }, ...serverOpts });
  const puller = new KvPuller({ layout, requestPlane: plane });
  closers.push(() => server.close(), () => puller.close());
  return { server, puller };
}

/** A device offer of `blocks` random blocks on its own DeviceKvTestDouble. */
function deviceOffer(server: KvOfferServer, blocks: number, opts: { ttlMs?: number } = {}) {
  const double = new DeviceKvTestDouble();
  const { source, segs, released } = randomSource(blocks);
  const handle = server.offer(double.exporting(source), opts);
  return { handle, segs, released, double };
}

describe("an offer with a device path is staged only when a host transfer needs it", () => {
  it("is registered without segments() or CRCs: a v2 handle without digest, which round-trips", async () => {
    const { server } = await pair();
    const { handle, double, released } = deviceOffer(server, 37);
    expect(double.hostStagings).toBe(0);
    expect(handle.v).toBe(2);
    expect(handle.checksum.digest).toBeUndefined();
    expect(handle.checksum).toEqual({ algorithm: "crc32c-chunks/v1", chunkBytes: 8192, chunks: Math.ceil((37 * layout.bytesPerBlock) / 8192) });
    expect(handle.bytes).toBe(37 * layout.bytesPerBlock);
    expect(handle.endpoints.map((e) => e.transport)).toEqual(["cuda-ipc", "shm", "tcp", "nats"]);
    expect(parseKvHandle(serializeKvHandle(handle))).toEqual(handle);
    expect(server.stats()).toMatchObject({ active: 1, offered: 1, staged: 0 });
    expect(released()).toBe(0);
  });

  it("a cuda-ipc pull never stages it", async () => {
    const { server, puller } = await pair();
    const { handle, segs, double, released } = deviceOffer(server, 20);
    const sink = double.importing(sinkFor(20));
    expect((await puller.pull(handle, sink)).transport).toBe("cuda-ipc");
    expect(sameBytes(segs, sink.segments())).toBe(true);
    await until(() => released() === 1);
    expect(double.hostStagings).toBe(0);
    expect(server.stats()).toMatchObject({ staged: 0, released: { ack: 1 } });
  });

  for (const transport of ["shm", "tcp", "nats"] as KvTransportName[]) {
    it(`a ${transport} pull stages it once, checks every chunk and the digest from BEGIN, delivers identical bytes`, async () => {
      const { server, puller } = await pair();
      const { handle, segs, double, released } = deviceOffer(server, 37);
      const sink = sinkFor(37); // a plain import: no device path on the pulling side
      const r = await puller.pull(handle, sink, { transports: [transport] });
      expect(r).toMatchObject({ transport, bytes: handle.bytes, fallbacks: [] });
      expect(double.hostStagings).toBe(1);
      expect(sameBytes(segs, sink.segments())).toBe(true);
      await until(() => released() === 1);
      expect(server.stats()).toMatchObject({ staged: 1, released: { ack: 1, failed: 0 } });
      expect(ringFilesOf()).toEqual([]);
    });
  }

  for (const transport of ["shm", "tcp"] as KvTransportName[]) {
    it(`a failed cuda-ipc import falls back to ${transport} on the same connection, which stages it once`, async () => {
      const { server, puller } = await pair();
      const { handle, segs, double, released } = deviceOffer(server, 9);
      double.failWith = new Error("UNSUPPORTED: this device cannot reach the exporter's memory");
      const sink = double.importing(sinkFor(9));
      const r = await puller.pull(handle, sink, { transports: ["cuda-ipc", transport] });
      expect(r.transport).toBe(transport);
      expect(r.fallbacks.map((f) => f.transport)).toEqual(["cuda-ipc"]);
      expect(double.hostStagings).toBe(1);
      expect(sameBytes(segs, sink.segments())).toBe(true);
      await until(() => released() === 1);
      expect(server.stats()).toMatchObject({ staged: 1, connections: 1, released: { ack: 1, failed: 0 } });
    });
  }

  it("the CRCs computed at staging are checked: a bit flipped on the wire fails the pull typed, released once", async () => {
    const { server, puller } = await pair();
    const { handle, double, released } = deviceOffer(server, 8);
    const proxy = await startProxy(server.address.port, { flipAt: 5000 }); // inside the first DATA chunk
    closers.push(() => proxy.close());
    const viaProxy: KvHandle = { ...handle, endpoints: handle.endpoints.map((e) => (e.transport === "tcp" ? { ...e, port: proxy.port } : e)) };
    const sink = sinkFor(8);
    const err = await puller.pull(viaProxy, sink, { transports: ["tcp"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvChecksumError);
    expect(sink.aborted).toBe(true);
    await until(() => released() === 1);
    expect(double.hostStagings).toBe(1);
    expect(server.stats().released).toMatchObject({ failed: 1, ack: 0 });
  });
});

describe("staging failures and the one release path", () => {
  for (const [name, transports] of [
    ["tcp", ["tcp"]],
    ["shm", ["shm"]],
    ["nats", ["nats"]],
    ["a cuda-ipc fallback", ["cuda-ipc", "shm"]],
  ] as Array<[string, KvTransportName[]]>) {
    it(`a staging error fails the ${name} pull typed, the offer is released once, the server goes on`, async () => {
      const { server, puller } = await pair();
      const { handle, double, released } = deviceOffer(server, 4);
      double.stagingFailure = new Error("INTERNAL: cudaMemcpy failed");
      double.failWith = new Error("UNSUPPORTED"); // for the fallback case: the device import gives up first
      const sink = double.importing(sinkFor(4));
      const err = await puller.pull(handle, sink, { transports }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvTransportError);
      expect((err as KvTransferError).message).toMatch(/staging offer .* failed: INTERNAL: cudaMemcpy failed/);
      expect((sink.inner as ReturnType<typeof sinkFor>).aborted).toBe(true);
      await until(() => released() === 1);
      expect(double.hostStagings).toBe(1);
      expect(server.stats()).toMatchObject({ active: 0, staged: 0, released: { failed: 1 } });
      // the worker is fine: the next offer goes through
      const next = deviceOffer(server, 2);
      const nextSink = sinkFor(2);
      expect((await puller.pull(next.handle, nextSink, { transports: transports.filter((t) => t !== "cuda-ipc") })).bytes).toBe(next.handle.bytes);
      expect(sameBytes(next.segs, nextSink.segments())).toBe(true);
      await until(() => next.released() === 1);
      expect(released()).toBe(1);
    });
  }

  it("expiry, withdraw, decline and close of never-staged offers release each exactly once, never staging", async () => {
    const { server, puller } = await pair({ ttlMs: 100 });
    const expiring = deviceOffer(server, 2);
    const withdrawn = deviceOffer(server, 2, { ttlMs: 60_000 });
    const declined = deviceOffer(server, 2, { ttlMs: 60_000 });
    const closed = deviceOffer(server, 2, { ttlMs: 60_000 });
    expect(server.withdraw(withdrawn.handle.id)).toBe(true);
    expect(server.withdraw(withdrawn.handle.id)).toBe(false);
    await puller.decline(declined.handle);
    await until(() => expiring.released() === 1 && declined.released() === 1);
    await server.close();
    await server.close();
    for (const o of [expiring, withdrawn, declined, closed]) {
      expect(o.released()).toBe(1);
      expect(o.double.hostStagings).toBe(0);
      expect(o.double.memory.size).toBe(0);
    }
    expect(server.stats()).toMatchObject({ active: 0, staged: 0, released: { expired: 1, withdrawn: 1, failed: 1, closed: 1 } });
  });

  it("an expiry that falls due while the claimed offer stages does not release it under the transfer", async () => {
    const { server, puller } = await pair({ ttlMs: 100 });
    const { handle, segs, double, released } = deviceOffer(server, 6);
    double.duringStaging = () => {
      const end = handle.expiresAt + 100;
      while (Date.now() < end) {
        /* a slow device → host copy: the expiry timer becomes due meanwhile */
      }
    };
    const sink = sinkFor(6);
    expect((await puller.pull(handle, sink, { transports: ["tcp"] })).transport).toBe("tcp");
    expect(sameBytes(segs, sink.segments())).toBe(true);
    await until(() => released() === 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(released()).toBe(1);
    expect(server.stats().released).toMatchObject({ ack: 1, expired: 0 });
  });

  it("close() while a claimed lazy offer waits for a transfer slot: released once, never staged", async () => {
    const { server, puller } = await pair({ maxConcurrentTransfers: 1 });
    // The puller's connection comes first (a warm-up pull leaves it pooled): close() then drops the slot holder's
    // connection before the queued transfer's (libuv closes in reverse), so the slot is handed to the queued
    // transfer of an offer close() has already released, which must not stage it.
    const warm = randomSource(1);
    await puller.pull(server.offer(warm.source), sinkFor(1), { transports: ["tcp"] });
    await until(() => warm.released() === 1);
    // The only slot is held by an shm transfer whose puller never opens the ring (a raw socket).
    const holder = randomSource(2);
    const held = server.offer(holder.source);
    const raw: Socket = netConnect({ host: "127.0.0.1", port: server.address.port });
    closers.push(() => raw.destroy());
    raw.on("error", () => {});
    const pull: PullRequest = { offerId: held.id, secret: held.secret, fingerprint: layout.fingerprint, transport: "shm", bytes: held.bytes, digest: held.checksum.digest, hostId: localHostId() };
    for (const b of controlFrame(FrameType.Pull, pull, Buffer.from(held.id, "hex"))) raw.write(b);
    await until(() => server.stats().transfersActive === 1);
    const { handle, double, released } = deviceOffer(server, 4);
    const pulling = puller.pull(handle, sinkFor(4), { transports: ["tcp"] }).catch((e: unknown) => e);
    await until(() => server.stats().transfersQueued === 1); // claimed, waiting for the slot, not staged
    expect(double.hostStagings).toBe(0);
    await server.close();
    expect(await pulling).toBeInstanceOf(KvTransferError);
    await new Promise((r) => setTimeout(r, 50)); // let the slot hand-over run: it must not stage a released offer
    expect(released()).toBe(1);
    expect(holder.released()).toBe(1);
    expect(double.hostStagings).toBe(0);
    expect(server.stats()).toMatchObject({ active: 0, staged: 0, released: { ack: 1, closed: 2 } });
    await until(() => ringFilesOf().length === 0);
  });
});

describe("sources without a device path keep eager staging", () => {
  /** A host-only source (the reference executor's kind) that counts its segments() calls. */
  function countingSource(blocks: number) {
    const { source, segs, released } = randomSource(blocks);
    let calls = 0;
    const counted = new BufferKvSource(segs, source.numTokens, () => source.release());
    const segments = counted.segments.bind(counted);
    counted.segments = () => {
      calls++;
      return segments();
    };
    return { source: counted, segs, released, calls: () => calls };
  }

  it("stages and checksums at offer time (v1 handle with digest), so later corruption of the memory is caught", async () => {
    // shm ring (staging off): it reads the exported memory at pull time, like tcp and nats
    const { server, puller } = await pair({ shm: { staging: false } });
    for (const transport of ["shm", "tcp", "nats"] as KvTransportName[]) {
      const s = countingSource(5);
      const handle = server.offer(s.source);
      expect(s.calls()).toBe(1);
      expect(handle.v).toBe(1);
      expect(handle.checksum.digest).toMatch(/^[0-9a-f]{8}$/);
      s.segs[2]![100] ^= 0x01; // the exported memory changes after the offer
      const err = await puller.pull(handle, sinkFor(5), { transports: [transport] }).catch((e: unknown) => e);
      expect(err, transport).toBeInstanceOf(KvChecksumError);
      await until(() => s.released() === 1);
      expect(s.calls()).toBe(1);
    }
    expect(server.stats()).toMatchObject({ staged: 0, released: { failed: 3 } });
  });

  it("a device source on a server that does not serve cuda-ipc is staged eagerly too", async () => {
    const { server, puller } = await pair({ transports: ["shm", "tcp"] });
    const double = new DeviceKvTestDouble();
    const { source, segs, released } = randomSource(3);
    const handle = server.offer(double.exporting(source));
    expect(double.hostStagings).toBe(1);
    expect(handle.v).toBe(1);
    expect(handle.endpoints.map((e) => e.transport)).toEqual(["shm", "tcp"]);
    const sink = sinkFor(3);
    await puller.pull(handle, sink);
    expect(sameBytes(segs, sink.segments())).toBe(true);
    await until(() => released() === 1);
    expect(double.hostStagings).toBe(1);
  });
});

describe("digest of a byte transfer (handle or BEGIN)", () => {
  it("comes from the handle (v1) or from BEGIN (v2); a contradiction or none at all is a protocol error", () => {
    const base = { bytes: 10, chunkBytes: 8192, chunks: 1 } satisfies PullBegin;
    const v1 = { checksum: { digest: "0a0b0c0d" } } as KvHandle;
    const v2 = { checksum: {} } as KvHandle;
    expect(expectedDigest(v1, base)).toBe("0a0b0c0d");
    expect(expectedDigest(v1, { ...base, digest: "0a0b0c0d" })).toBe("0a0b0c0d");
    expect(expectedDigest(v2, { ...base, digest: "12345678" })).toBe("12345678");
    expect(() => expectedDigest(v1, { ...base, digest: "12345678" })).toThrow(KvProtocolError);
    expect(() => expectedDigest(v2, base)).toThrow(KvProtocolError);
    expect(() => expectedDigest(v2, { ...base, digest: "XYZ" })).toThrow(KvProtocolError);
    // a v1 handle must carry its digest; a v2 handle may, in the same format
    const h = { v: 2, id: "0".repeat(32), secret: "0".repeat(64), layout, numTokens: 16, bytes: 10, checksum: { algorithm: "crc32c-chunks/v1", chunkBytes: 8192, chunks: 1 }, endpoints: [], expiresAt: Date.now() + 1000 };
    expect(parseKvHandle(h).checksum.digest).toBeUndefined();
    expect(() => parseKvHandle({ ...h, v: 1 })).toThrow(/digest/);
    expect(() => parseKvHandle({ ...h, checksum: { ...h.checksum, digest: "nothex!!" } })).toThrow(/digest/);
    expect(parseKvHandle({ ...h, checksum: { ...h.checksum, digest: "0a0b0c0d" } }).checksum.digest).toBe("0a0b0c0d");
  });
});
