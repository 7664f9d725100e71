// Single-copy shared memory (src/shm-staging.ts): an eager offer is staged into a pooled memfd segment at offer
// time; a same-host puller claims it through the segment's state word, copies it into its sink, checks the digest
// and acks outside a transfer. Real server, puller and sockets in this process; the cross-process path (a peer in
// its own process with a real executor) is in executor-transfer.test.ts.
import { closeSync, openSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import {
  KvAbortedError,
  KvChecksumError,
  KvInvalidHandleError,
  KvOfferNotFoundError,
  KvOfferServer,
  KvPuller,
  KvUnauthorizedError,
  parseKvHandle,
  ringFilesOf,
  serializeKvHandle,
  shmStagingAvailable,
  type KvHandle,
  type ShmEndpoint,
} from "../src/index.js";
import { chunkChecksums, crc32cJs } from "../src/checksum.js";
import { SegmentMap } from "../src/segments.js";
import { claimStagedOffer, copyWithChunkChecksums, SEGMENT_HEADER_BYTES, SegmentMappings } from "../src/shm-staging.js";
import { layout, randomSource, sameBytes, sinkFor, until } from "./helpers.js";

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function pair(serverOpts: Partial<Parameters<typeof KvOfferServer.start>[0]> = {}) {
  const server = await KvOfferServer.start({ layout, chunkBytes: 8192, ...serverOpts });
  const puller = new KvPuller({ layout });
  closers.push(() => server.close(), () => puller.close());
  return { server, puller };
}

const segmentOf = (h: KvHandle) => (h.endpoints.find((e) => e.transport === "shm") as ShmEndpoint).segment;
const openFds = () => readdirSync("/proc/self/fd").length;

describe("single-copy shm", () => {
  it("is available here (memfd, mmap and the native atomics), else the rest of this file proves nothing", () => {
    expect(shmStagingAvailable()).toBe(true);
  });

  it("copyWithChunkChecksums copies exactly and gives the chunk CRCs of an independent implementation", () => {
    const { segs } = randomSource(7); // 7 × 4096 bytes, chunks of 3000: chunks straddle segments
    const map = new SegmentMap(segs);
    const dst = new Uint8Array(map.bytes + 5);
    const crcs = copyWithChunkChecksums(map, 3000, dst);
    const all = Buffer.concat(segs);
    expect(Buffer.compare(Buffer.from(dst.subarray(0, map.bytes)), all)).toBe(0);
    expect([...dst.subarray(map.bytes)]).toEqual([0, 0, 0, 0, 0]);
    const want = Array.from({ length: Math.ceil(all.length / 3000) }, (_, i) => crc32cJs(0, all.subarray(i * 3000, (i + 1) * 3000)));
    expect([...crcs]).toEqual(want);
    expect([...chunkChecksums(map, 3000)]).toEqual(want);
  });

  it("a pull copies from the staged segment (no transfer slot, no ring), identical bytes, acked; the segment is reused", async () => {
    const { server, puller } = await pair();
    const fds0 = openFds();
    for (let i = 0; i < 3; i++) {
      const { source, segs, released } = randomSource(13);
      const handle = server.offer(source);
      expect(segmentOf(handle)).toMatchObject({ pid: process.pid });
      expect(server.stats().shmStaging).toMatchObject({ inUse: 1, created: 1 });
      const sink = sinkFor(13);
      const r = await puller.pull(handle, sink);
      expect(r.transport).toBe("shm");
      expect(sameBytes(segs, sink.segments())).toBe(true);
      await until(() => released() === 1); // the ACK goes out after pull() returned
      expect(server.stats()).toMatchObject({ active: 0, released: { ack: i + 1, failed: 0 }, transfersPeak: 0 });
      expect(server.stats().shmStaging).toMatchObject({ inUse: 0, idle: 1, created: 1, failed: 0 });
    }
    expect(server.stats().transports.shm).toMatchObject({ completed: 3, failed: 0, bytes: 3 * 13 * layout.bytesPerBlock });
    expect(puller.stats().transports.shm).toMatchObject({ completed: 3, failed: 0 });
    expect(ringFilesOf()).toEqual([]);
    // the offering side's one segment fd and the two ends of the pooled control connection (the ACKs went over
    // it); the puller's mapping holds no fd
    expect(openFds() - fds0).toBe(3);
  });

  it("an offer of a very different size gets its own segment; idle segments beyond stagingIdleBytes are freed", async () => {
    const { server, puller } = await pair({ shm: { stagingIdleBytes: 3 * 1024 * 1024 } });
    for (const blocks of [4, 1200]) {
      const { source, released } = randomSource(blocks); // 16 KiB, then 4.7 MiB (two segment sizes: 2 and 6 MiB)
      await puller.pull(server.offer(source), sinkFor(blocks));
      await until(() => released() === 1);
    }
    // the 6 MiB segment is above the 3 MiB idle limit: freed when given back; the 2 MiB one is kept
    expect(server.stats().shmStaging).toEqual({ inUse: 0, idle: 1, idleBytes: 2 * 1024 * 1024, created: 2, failed: 0 });
  });

  it("a bit flipped in the staged copy after the offer is caught: KvChecksumError, sink aborted, offer released once as failed", async () => {
    const { server, puller } = await pair();
    const { source, released } = randomSource(5);
    const handle = server.offer(source);
    server.registry.get(handle.id)!.host!.shared!.map.bytes[SEGMENT_HEADER_BYTES + 9000]! ^= 0x04;
    const sink = sinkFor(5);
    const err = await puller.pull(handle, sink).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvChecksumError);
    expect(sink.aborted).toBe(true);
    await until(() => released() === 1);
    expect(server.stats()).toMatchObject({ active: 0, released: { failed: 1, ack: 0 } });
    expect(server.stats().transports.shm).toMatchObject({ completed: 0, failed: 1 });
    expect(server.stats().shmStaging).toMatchObject({ inUse: 0 });
  });

  it("a wrong secret claims nothing: the ring path refuses it (counted), the offer stays, the right handle pulls it", async () => {
    const { server, puller } = await pair();
    const { source, segs, released } = randomSource(6);
    const handle = server.offer(source);
    const forged = { ...handle, secret: "0".repeat(64) };
    const err = await puller.pull(forged, sinkFor(6)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvUnauthorizedError);
    expect(server.stats()).toMatchObject({ active: 1, refused: { bad_secret: 1 } });
    const sink = sinkFor(6);
    expect((await puller.pull(handle, sink)).transport).toBe("shm");
    expect(sameBytes(segs, sink.segments())).toBe(true);
    await until(() => released() === 1);
    expect(server.stats()).toMatchObject({ active: 0, released: { ack: 1 } });
  });

  it("single consumer: an offer claimed in its segment is refused to a tcp pull; a withdrawn one cannot be claimed", async () => {
    const { server, puller } = await pair();
    const a = randomSource(3);
    const ha = server.offer(a.source);
    const maps = new SegmentMappings();
    closers.push(() => maps.close());
    expect(claimStagedOffer(maps.get(segmentOf(ha)!), ha.id, ha.secret, ha.bytes)).toBe(true); // a puller that never acks
    expect(claimStagedOffer(maps.get(segmentOf(ha)!), ha.id, ha.secret, ha.bytes)).toBe(false); // nor claims twice
    const err = await puller.pull(ha, sinkFor(3), { transports: ["tcp"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvOfferNotFoundError);
    expect(a.released()).toBe(0);

    const b = randomSource(3);
    const hb = server.offer(b.source);
    expect(server.withdraw(hb.id)).toBe(true);
    expect(claimStagedOffer(maps.get(segmentOf(hb)!), hb.id, hb.secret, hb.bytes)).toBe(false);
    const err2 = await puller.pull(hb, sinkFor(3)).catch((e: unknown) => e); // falls to the ring: the server says why
    expect(err2).toBeInstanceOf(KvOfferNotFoundError);
    expect(b.released()).toBe(1);
  });

  it("a claim naming another offer id, secret or size changes nothing; the right one then claims", async () => {
    const { server, puller } = await pair();
    const { source, segs, released } = randomSource(3);
    const h = server.offer(source);
    const maps = new SegmentMappings();
    closers.push(() => maps.close());
    const map = maps.get(segmentOf(h)!);
    expect(claimStagedOffer(map, "f".repeat(32), h.secret, h.bytes)).toBe(false);
    expect(claimStagedOffer(map, h.id, "e".repeat(64), h.bytes)).toBe(false);
    expect(claimStagedOffer(map, h.id, h.secret, h.bytes - 1)).toBe(false);
    const sink = sinkFor(3);
    expect((await puller.pull(h, sink)).transport).toBe("shm"); // still OFFERED: the real puller claims it
    expect(sameBytes(segs, sink.segments())).toBe(true);
    await until(() => released() === 1);
    expect(server.stats()).toMatchObject({ released: { ack: 1 }, transfersPeak: 0 });
  });

  it("a segment this side cannot map (another fd, wrong inode, not a file) is skipped: the ring serves the pull", async () => {
    const { server, puller } = await pair();
    const file = openSync(fileURLToPath(import.meta.url), "r"); // a regular file of this process, not the segment
    closers.push(() => closeSync(file));
    for (const segment of [
      { ...segmentOf(server.offer(randomSource(1).source))!, fd: file }, // right inode elsewhere: the file's differs
      { pid: process.pid, fd: 0, ino: 1, capacity: 4 * 1024 * 1024 }, // stdin: not a regular file
      { pid: 2 ** 22 + 7, fd: 3, ino: 1, capacity: 4 * 1024 * 1024 }, // no such process
    ]) {
      const { source, segs } = randomSource(4);
      const h = server.offer(source);
      const forged = { ...h, endpoints: h.endpoints.map((e) => (e.transport === "shm" ? { ...e, segment } : e)) };
      const sink = sinkFor(4);
      expect((await puller.pull(forged, sink)).transport).toBe("shm");
      expect(sameBytes(segs, sink.segments())).toBe(true);
    }
    expect(server.stats().transfersPeak).toBe(1); // each went over the ring, one at a time
    await until(() => server.stats().released.ack === 3);
  });

  it("an abort between two copy turns (64 MiB each) ends the pull typed after the claim: NACK, released once", async () => {
    const { server, puller } = await pair({ chunkBytes: 1024 * 1024 });
    const blocks = (70 * 1024 * 1024) / layout.bytesPerBlock; // 70 MiB: two turns
    const { source, released } = randomSource(blocks);
    const handle = server.offer(source);
    const ac = new AbortController();
    const sink = sinkFor(blocks);
    const pulling = puller.pull(handle, sink, { signal: ac.signal }).catch((e: unknown) => e);
    setImmediate(() => ac.abort()); // queued before the copy's first yield: it lands between the two turns
    const err = await pulling;
    expect(err).toBeInstanceOf(KvAbortedError);
    expect(sink.aborted).toBe(true);
    await until(() => released() === 1);
    expect(server.stats()).toMatchObject({ active: 0, released: { failed: 1, ack: 0 } });
    expect(server.stats().transports.shm).toMatchObject({ failed: 1, completed: 0 });
    expect(server.stats().shmStaging).toMatchObject({ inUse: 0 });
  });

  it("a puller that claims and dies: the offer is released as failed once its lease and the claim bound ran out", async () => {
    const { server } = await pair({ timeouts: { baseMs: 100, ackMs: 100 } });
    const { source, released } = randomSource(4);
    const handle = server.offer(source, { ttlMs: 100 });
    const maps = new SegmentMappings();
    closers.push(() => maps.close());
    expect(claimStagedOffer(maps.get(segmentOf(handle)!), handle.id, handle.secret, handle.bytes)).toBe(true);
    await new Promise((r) => setTimeout(r, 150)); // expiry found it claimed: not released yet
    expect(released()).toBe(0);
    expect(server.stats().active).toBe(1);
    await until(() => released() === 1, 3000); // then the claim bound (transfer timeout + ackMs)
    expect(server.stats()).toMatchObject({ active: 0, released: { failed: 1, expired: 0 } });
    expect(server.stats().shmStaging).toMatchObject({ inUse: 0 });
  });

  it("an expired offer cannot be claimed; the puller is told by the offering side (ring path), released once", async () => {
    const { server, puller } = await pair();
    const { source, released } = randomSource(4);
    const handle = server.offer(source, { ttlMs: 60_000 });
    server.registry.release(handle.id, "expired"); // what the lease timer does
    const maps = new SegmentMappings();
    closers.push(() => maps.close());
    expect(claimStagedOffer(maps.get(segmentOf(handle)!), handle.id, handle.secret, handle.bytes)).toBe(false);
    const err = await puller.pull(handle, sinkFor(4)).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe("KV_LEASE_EXPIRED");
    expect(released()).toBe(1);
  });

  it("close() releases the offers and frees every segment; no file is ever created in /dev/shm", async () => {
    const fds0 = openFds();
    const server = await KvOfferServer.start({ layout, chunkBytes: 8192 });
    const held = [randomSource(3), randomSource(300)];
    for (const h of held) server.offer(h.source);
    expect(server.stats().shmStaging).toMatchObject({ inUse: 2, created: 2 });
    expect(ringFilesOf()).toEqual([]);
    await server.close();
    expect(held.map((h) => h.released())).toEqual([1, 1]);
    expect(server.stats().shmStaging).toMatchObject({ inUse: 0, idle: 0, idleBytes: 0 });
    expect(openFds()).toBe(fds0);
  });

  it("staging off (shm.staging: false): no segment in the handle, the ring serves shm", async () => {
    const { server, puller } = await pair({ shm: { staging: false } });
    const { source, segs } = randomSource(5);
    const handle = server.offer(source);
    expect(segmentOf(handle)).toBeUndefined();
    expect(server.stats().shmStaging).toBeNull();
    const sink = sinkFor(5);
    expect((await puller.pull(handle, sink)).transport).toBe("shm");
    expect(sameBytes(segs, sink.segments())).toBe(true);
    expect(server.stats().transfersPeak).toBe(1); // a ring transfer holds a slot
  });

  it("the handle's segment is validated field by field and round-trips", async () => {
    const { server } = await pair();
    const handle = server.offer(randomSource(2).source);
    expect(parseKvHandle(serializeKvHandle(handle))).toEqual(handle);
    const withSegment = (segment: unknown) => ({
      ...handle,
      endpoints: handle.endpoints.map((e) => (e.transport === "shm" ? { ...e, segment } : e)),
    });
    expect(() => parseKvHandle(withSegment({ ...segmentOf(handle), fd: -1 }))).toThrow(/shm segment fd/);
    expect(() => parseKvHandle(withSegment({ ...segmentOf(handle), pid: "1" }))).toThrow(/shm segment pid/);
    expect(() => parseKvHandle(withSegment(7))).toThrow(KvInvalidHandleError);
  });
});

// deferStaging (the prefill worker's): offer() takes the segment and names it in the handle, and the copy with its
// chunk CRCs runs in the next turn of the event loop, after the caller's answer has left.
describe("single-copy shm, staged in the turn after the offer (deferStaging)", () => {
  const nextTurn = () => new Promise<void>((r) => setImmediate(r));

  it("the handle (v2, no digest) names a segment that is claimable only once staged; the pull is single-copy, checked against the header's digest", async () => {
    const { server, puller } = await pair({ deferStaging: true });
    const { source, segs, released } = randomSource(13);
    const handle = server.offer(source);
    expect(handle.v).toBe(2);
    expect(handle.checksum.digest).toBeUndefined();
    expect(segmentOf(handle)).toMatchObject({ pid: process.pid });
    const offer = server.registry.get(handle.id)!;
    expect(offer.host).toBeNull(); // nothing copied inside offer()
    const maps = new SegmentMappings();
    closers.push(() => maps.close());
    expect(claimStagedOffer(maps.get(segmentOf(handle)!), handle.id, handle.secret, handle.bytes)).toBe(false); // not published yet
    await nextTurn();
    expect(offer.host?.shared).not.toBeNull();
    const sink = sinkFor(13);
    const r = await puller.pull(parseKvHandle(serializeKvHandle(handle)), sink);
    expect(r.transport).toBe("shm");
    expect(sameBytes(segs, sink.segments())).toBe(true);
    await until(() => released() === 1);
    expect(server.stats()).toMatchObject({ active: 0, released: { ack: 1, failed: 0 }, transfersPeak: 0 }); // no transfer: the segment path
    expect(server.stats().shmStaging).toMatchObject({ inUse: 0, idle: 1, created: 1 });
  });

  it("a pull started before the staging turn waits for it and still copies from the segment", async () => {
    const { server, puller } = await pair({ deferStaging: true });
    const { source, segs, released } = randomSource(11);
    const handle = server.offer(source);
    const sink = sinkFor(11);
    const pulled = puller.pull(handle, sink); // same turn: the segment's header does not name the offer yet
    expect(server.registry.get(handle.id)!.host).toBeNull();
    expect((await pulled).transport).toBe("shm");
    expect(sameBytes(segs, sink.segments())).toBe(true);
    await until(() => released() === 1);
    expect(server.stats()).toMatchObject({ active: 0, released: { ack: 1 }, transfersPeak: 0 });
  });

  it("a bit flipped in the staged copy is caught against the header's digest: KvChecksumError, released once as failed", async () => {
    const { server, puller } = await pair({ deferStaging: true });
    const { source, released } = randomSource(5);
    const handle = server.offer(source);
    await nextTurn();
    server.registry.get(handle.id)!.host!.shared!.map.bytes[SEGMENT_HEADER_BYTES + 9000]! ^= 0x04;
    const sink = sinkFor(5);
    expect(await puller.pull(handle, sink).catch((e: unknown) => e)).toBeInstanceOf(KvChecksumError);
    expect(sink.aborted).toBe(true);
    await until(() => released() === 1);
    expect(server.stats()).toMatchObject({ active: 0, released: { failed: 1, ack: 0 } });
    expect(server.stats().shmStaging).toMatchObject({ inUse: 0 });
  });

  it("a tcp pull gets the digest in BEGIN; the same bytes", async () => {
    const { server, puller } = await pair({ deferStaging: true });
    const { source, segs, released } = randomSource(9);
    const handle = server.offer(source);
    const sink = sinkFor(9);
    expect((await puller.pull(handle, sink, { transports: ["tcp"] })).transport).toBe("tcp");
    expect(sameBytes(segs, sink.segments())).toBe(true);
    await until(() => released() === 1);
    expect(server.stats()).toMatchObject({ active: 0, released: { ack: 1 } });
    expect(server.stats().shmStaging).toMatchObject({ inUse: 0 });
  });

  it("an offer claimed by a connection transfer before its turn is not staged into the segment: the segment goes back unused", async () => {
    const { server } = await pair({ deferStaging: true });
    const { source, released } = randomSource(4);
    const handle = server.offer(source);
    expect(server.registry.claim(handle.id)).toBeDefined(); // as a tcp/ring pull's claim would
    await nextTurn();
    const offer = server.registry.get(handle.id)!;
    expect(offer.host).toBeNull();
    expect(offer.pendingShared).toBeNull();
    expect(server.stats().shmStaging).toMatchObject({ inUse: 0 });
    expect(server.registry.release(handle.id, "failed")).toBe(true);
    expect(released()).toBe(1);
  });

  it("an offer withdrawn before its turn gives its segment back once and is never published; the source is released once", async () => {
    const { server } = await pair({ deferStaging: true });
    const { source, released } = randomSource(4);
    const handle = server.offer(source);
    const maps = new SegmentMappings();
    closers.push(() => maps.close());
    const map = maps.get(segmentOf(handle)!);
    expect(server.withdraw(handle.id)).toBe(true);
    expect(server.stats().shmStaging).toMatchObject({ inUse: 0, idle: 1 });
    await nextTurn();
    expect(claimStagedOffer(map, handle.id, handle.secret, handle.bytes)).toBe(false);
    expect(server.stats().shmStaging).toMatchObject({ inUse: 0, idle: 1 });
    expect(released()).toBe(1);
  });
});
