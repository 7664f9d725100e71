import { afterEach, describe, expect, it } from "vitest";
import {
  KvOfferServer,
  KvPuller,
  ringFilesOf,
  type KvTransportName,
} from "../src/index.js";
import { layout, randomSource, sameBytes, sinkFor, until } from "./helpers.js";

const closers: Array<() => unknown> = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function pair(serverOpts: Partial<Parameters<typeof KvOfferServer.start>[0]> = {}) {
  const server = await KvOfferServer.start({ layout, ...serverOpts });
  const puller = new KvPuller({ layout });
  closers.push(() => server.close(), () => puller.close());
  return { server, puller };
}

describe("in-process transfers over plain memory", () => {
  for (const transport of ["tcp", "shm"] as KvTransportName[]) {
    it(`${transport}: moves the bytes exactly, ack releases the offer, nothing left behind`, async () => {
      const { server, puller } = await pair({ chunkBytes: 8192 });
      const { source, segs, released } = randomSource(37); // 37 × 8 KiB blocks, chunks span blocks
      const handle = server.offer(source);
      expect(handle.endpoints.map((e) => e.transport)).toContain(transport);
      const sink = sinkFor(37);
      const r = await puller.pull(JSON.stringify(handle), sink, { transports: [transport] });
      expect(r.transport).toBe(transport);
      expect(sameBytes(segs, sink.segments())).toBe(true);
      await until(() => released() === 1);
      expect(server.stats().active).toBe(0);
      expect(server.stats().released.ack).toBe(1);
      expect(ringFilesOf()).toEqual([]);
    });
  }

  it("the server sends at most maxConcurrentTransfers at once; the rest wait and then complete", async () => {
    const { server, puller } = await pair({ maxConcurrentTransfers: 2 });
    const jobs = Array.from({ length: 12 }, () => randomSource(1024)); // 8 MiB each: sending spans many ticks
    const sinks = jobs.map(() => sinkFor(1024));
    await Promise.all(jobs.map((j, i) => puller.pull(server.offer(j.source), sinks[i]!, { transports: ["tcp"] })));
    jobs.forEach((j, i) => expect(sameBytes(j.segs, sinks[i]!.segments())).toBe(true));
    await until(() => server.stats().active === 0); // the last ACK is on its way
    const s = server.stats();
    expect(s.transfersPeak).toBe(2);
    expect(s.transfersQueuedPeak).toBeGreaterThan(0);
    expect(s).toMatchObject({ active: 0, transfersActive: 0, transfersQueued: 0 });
    expect(puller.stats().peakActive).toBeGreaterThan(2);
  });

  it("reuses pooled connections (and their shared-memory ring) across sequential pulls", async () => {
    const { server, puller } = await pair({ shm: { staging: false } }); // the ring (single copy: shm-staging.test.ts)
    for (let i = 0; i < 6; i++) {
      const { source, segs } = randomSource(3 + i * 40);
      const sink = sinkFor(3 + i * 40);
      await puller.pull(server.offer(source), sink, { transports: [i % 3 === 2 ? "tcp" : "shm"] });
      expect(sameBytes(segs, sink.segments())).toBe(true);
    }
    expect(puller.stats().pooledConnections).toEqual({ idle: 1, busy: 0 });
    expect(server.stats().connections).toBe(1);
    expect(ringFilesOf()).toEqual([]); // unlinked as soon as both sides had it open
  });
});
