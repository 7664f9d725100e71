// KvEventPublisher's poll protocol on the in-process request plane, against a TEST DOUBLE event source (a scripted
// executor: the real executor is exercised end to end in apps/api/test/kv-router.test.ts; a double lets this file
// script what a real one only does after 65,536 undrained events: report them lost).
import { afterEach, describe, expect, it } from "vitest";
import { createInProcessPlane, type RequestPlane } from "@trtd/request-plane";
import { KvEventPublisher, kvEventSubjects, packHashes, unpackHashes, type KvEventReply, type KvEventSource } from "../src/index.js";

/** TEST DOUBLE of an executor's KV events: queued events, a cache set, and a switch that reports events lost. */
class ScriptedEvents implements KvEventSource {
  readonly model = { fingerprint: "fp-double" };
  cache = new Set<bigint>();
  queue: { type: "stored" | "removed"; hash: bigint }[] = [];
  lost = false;
  kvLayout() {
    return { tokensPerBlock: 8 };
  }
  store(...hs: bigint[]) {
    for (const h of hs) (this.cache.add(h), this.queue.push({ type: "stored", hash: h }));
  }
  evict(...hs: bigint[]) {
    for (const h of hs) (this.cache.delete(h), this.queue.push({ type: "removed", hash: h }));
  }
  kvEvents() {
    const out = { events: this.queue, lost: this.lost };
    this.queue = [];
    return out;
  }
  kvCacheSnapshot() {
    this.queue = [];
    this.lost = false;
    return [...this.cache];
  }
}

let plane: RequestPlane | undefined;
let publisher: KvEventPublisher | undefined;
afterEach(async () => {
  publisher?.close();
  await plane?.close();
});

async function setUp(source: KvEventSource, keepBatches?: number) {
  plane = createInProcessPlane();
  publisher = await KvEventPublisher.start(plane, "w1", source, { drainMs: 1_000_000, keepBatches }); // drained by polls only
  if (!publisher) throw new Error("the scripted source has a prefix cache: the publisher must start");
  const p = plane;
  return async (poll: object): Promise<KvEventReply> =>
    JSON.parse(Buffer.from(await p.request(kvEventSubjects.worker("w1"), Buffer.from(JSON.stringify(poll)), { timeoutMs: 2000 })).toString()) as KvEventReply;
}

describe("kv events - the poll protocol", () => {
  it("an executor without a prefix cache (its snapshot refused as UNSUPPORTED) publishes nothing; other errors pass", async () => {
    const refusing = (code: string): KvEventSource => ({
      ...new ScriptedEvents(),
      kvLayout: () => ({ tokensPerBlock: 8 }),
      kvEvents: () => ({ events: [], lost: false }),
      kvCacheSnapshot: () => {
        throw Object.assign(new Error(`no prefix cache (test double, ${code})`), { code });
      },
    });
    plane = createInProcessPlane();
    expect(await KvEventPublisher.start(plane, "w0", refusing("UNSUPPORTED"))).toBeUndefined();
    await expect(KvEventPublisher.start(plane, "w0", refusing("INTERNAL"))).rejects.toThrow(/no prefix cache/);
  });

  it("hashes pack to 8 bytes each, little-endian, and back", () => {
    const hs = [0n, 1n, 0xffff_ffff_ffff_ffffn, 0x0123_4567_89ab_cdefn];
    expect(Buffer.from(packHashes([1n]), "base64")).toEqual(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]));
    expect(unpackHashes(packHashes(hs))).toEqual(hs);
    expect(() => unpackHashes(Buffer.from([1, 2, 3]).toString("base64"))).toThrow(/multiple of 8/);
  });

  it("a first poll gets a snapshot; later polls get the events since, in order; a gap or another epoch gets a snapshot", async () => {
    const src = new ScriptedEvents();
    src.store(1n, 2n); // cached before the publisher starts: in its first snapshot
    const poll = await setUp(src, 2);
    const snap = await poll({});
    if (snap.kind !== "snapshot") throw new Error("expected a snapshot");
    expect({ blocks: unpackHashes(snap.blocks).sort(), tpb: snap.tokensPerBlock, fp: snap.fingerprint }).toEqual({ blocks: [1n, 2n], tpb: 8, fp: "fp-double" });
    src.store(3n);
    src.evict(1n);
    src.store(1n); // evicted, then stored again: the order decides
    const d1 = await poll({ epoch: snap.epoch, since: snap.seq });
    expect(d1).toMatchObject({ kind: "delta", epoch: snap.epoch, seq: snap.seq + 1, types: "srs" });
    if (d1.kind !== "delta") throw new Error("expected a delta");
    expect(unpackHashes(d1.hashes)).toEqual([3n, 1n, 1n]);
    // Nothing new: an empty delta at the same sequence number.
    expect(await poll({ epoch: snap.epoch, since: d1.seq })).toMatchObject({ kind: "delta", seq: d1.seq, hashes: "", types: "" });
    // Two batches kept: a poller three batches behind gets a snapshot.
    for (const h of [4n, 5n, 6n]) {
      src.store(h);
      await poll({ epoch: snap.epoch, since: d1.seq + 100 }); // a cursor from the future: a snapshot, and a drain
    }
    const behind = await poll({ epoch: snap.epoch, since: d1.seq });
    expect(behind.kind).toBe("snapshot");
    if (behind.kind !== "snapshot") throw new Error("expected a snapshot");
    expect(unpackHashes(behind.blocks).sort((a, b) => (a < b ? -1 : 1))).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect((await poll({ epoch: "other", since: behind.seq })).kind).toBe("snapshot");
  });

  it("events the executor lost start a new epoch from its snapshot: every poller resyncs", async () => {
    const src = new ScriptedEvents();
    const poll = await setUp(src);
    const first = await poll({});
    src.store(7n);
    src.lost = true; // the executor dropped events (its queue overflowed)
    const after = await poll({ epoch: first.epoch, since: first.seq });
    expect(after.kind).toBe("snapshot");
    expect(after.epoch).not.toBe(first.epoch);
    if (after.kind !== "snapshot") throw new Error("expected a snapshot");
    expect(unpackHashes(after.blocks)).toEqual([7n]);
    expect(publisher!.blocks()).toEqual(new Set([7n]));
  });
});
