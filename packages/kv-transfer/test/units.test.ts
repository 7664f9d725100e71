import { describe, expect, it } from "vitest";
import { createInProcessPlane } from "@trtd/request-plane";
import {
  assertLayoutCompatible,
  BufferKvSource,
  declineKvOffer,
  describeKvLayout,
  executorKvSource,
  layoutFromExecutor,
  KvInvalidHandleError,
  KvLayoutMismatchError,
  KvNoTransportError,
  KvOfferServer,
  KvPuller,
  KvSizeMismatchError,
  parseKvHandle,
  serializeKvHandle,
  transferTimeoutMs,
  type KvSink,
} from "../src/index.js";
import { layout, randomSource, sameBytes, sinkFor, until } from "./helpers.js";

describe("layout descriptor", () => {
  it("keeps the executor's fingerprint verbatim and names every differing field", () => {
    const a = describeKvLayout({ ...layout, dtype: "float32" });
    expect(a.fingerprint).toBe(layout.fingerprint); // one identity: not hashed again
    expect(layoutFromExecutor({ ...layout, memoryKind: "host" } as typeof layout)).toEqual(layout); // where the memory lives is not identity
    for (const [k, v] of Object.entries({ fingerprint: "other", numLayers: 3, numKvHeads: 4, headDim: 32, dtype: "float16", tokensPerBlock: 32, bytesPerBlock: 64 })) {
      const b = describeKvLayout({ ...layout, [k]: v });
      expect(() => assertLayoutCompatible(a, b)).toThrow(KvLayoutMismatchError);
      try {
        assertLayoutCompatible(a, b);
      } catch (e) {
        expect((e as KvLayoutMismatchError).fields).toEqual([k]);
      }
    }
    expect(() => describeKvLayout({ ...layout, numLayers: 0 })).toThrow(/numLayers must be a positive integer/);
    expect(() => describeKvLayout({ ...layout, dtype: "fp8" as never })).toThrow(/dtype must be one of float32, float16, bfloat16, fp8_e4m3/);
  });
});

describe("handle", () => {
  it("round-trips through JSON and rejects malformed handles with a typed error", async () => {
    const server = await KvOfferServer.start({ layout });
    try {
      const { source } = randomSource(3);
      const h = server.offer(source);
      expect(parseKvHandle(serializeKvHandle(h))).toEqual(h);
      expect(serializeKvHandle(h).length).toBeLessThan(2000); // small: it rides in a request-plane reply
      const bad: Array<[unknown, RegExp]> = [
        ["{", /not JSON/],
        [{ ...h, v: 3 }, /unsupported version/],
        [{ ...h, checksum: { ...h.checksum, digest: undefined } }, /digest/], // only a v2 handle may leave it out
        [{ ...h, id: "xyz" }, /id must be/],
        [{ ...h, secret: undefined }, /secret must be 64 lowercase hex digits/],
        [{ ...h, secret: h.secret.toUpperCase() }, /secret must be/],
        [{ ...h, bytes: -1 }, /bytes/],
        [{ ...h, checksum: { ...h.checksum, chunks: 99 } }, /chunks does not match/],
        [{ ...h, layout: { ...h.layout, numLayers: "2" } }, /numLayers/],
      ];
      for (const [input, re] of bad) {
        expect(() => parseKvHandle(input)).toThrow(KvInvalidHandleError);
        expect(() => parseKvHandle(input)).toThrow(re);
      }
      // endpoints of transports this version does not know are ignored, not fatal
      expect(parseKvHandle({ ...h, endpoints: [...h.endpoints, { transport: "rdma", x: 1 }] }).endpoints).toEqual(h.endpoints);
    } finally {
      await server.close();
    }
  });

  it("timeouts scale with size", () => {
    expect(transferTimeoutMs(0)).toBe(5000);
    expect(transferTimeoutMs(1e9)).toBe(25_000);
    expect(transferTimeoutMs(1e9, { baseMs: 1000, minBytesPerSecond: 1e9 })).toBe(2000);
  });
});

describe("negotiation", () => {
  it("prefers engine > shm > tcp > nats among what both sides have", async () => {
    const server = await KvOfferServer.start({ layout });
    const puller = new KvPuller({ layout });
    try {
      const h = server.offer(randomSource(1).source);
      expect(puller.negotiate(h).transport).toBe("shm");
      expect(puller.negotiate(h, undefined, ["tcp"]).transport).toBe("tcp");
      expect(puller.negotiate({ ...h, endpoints: h.endpoints.map((e) => (e.transport === "shm" ? { ...e, hostId: "elsewhere" } : e)) }).transport).toBe("tcp");
      expect(() => puller.negotiate({ ...h, endpoints: [] })).toThrow(KvNoTransportError);
      const natsOnly = new KvPuller({ layout, transports: ["nats"] });
      // no NATS connection on this side: nats is not usable at all
      expect(() => natsOnly.negotiate({ ...h, endpoints: [{ transport: "nats", subject: "s", maxBytes: 1 }] })).toThrow(KvNoTransportError);
      natsOnly.close();
    } finally {
      puller.close();
      await server.close();
    }
  });

  it("a sink of the wrong size is refused before contacting, and the offer is released", async () => {
    const server = await KvOfferServer.start({ layout });
    const puller = new KvPuller({ layout });
    try {
      const { source, released } = randomSource(4);
      const h = server.offer(source);
      const sink = sinkFor(3);
      await expect(puller.pull(h, sink)).rejects.toBeInstanceOf(KvSizeMismatchError);
      expect(sink.aborted).toBe(true);
      await until(() => released() === 1);
      expect(server.stats().released.failed).toBe(1);
    } finally {
      puller.close();
      await server.close();
    }
  });
});

/**
 * EngineStateTestDouble: stands in for the TensorRT-LLM shim, whose cache transceiver moves the KV itself
 * (TensorRT-LLM cannot run here). The source exposes opaque engine state; the sink accepts it.
 */
class EngineStateTestDoubleSink implements KvSink {
  received: Uint8Array | null = null;
  aborted = false;
  constructor(readonly numTokens: number, readonly bytes: number) {}
  segments(): Uint8Array[] {
    throw new Error("engine transport must not touch segments");
  }
  abort(): void {
    this.aborted = true;
  }
  importEngineState(state: Uint8Array): void {
    this.received = new Uint8Array(state);
  }
}

describe("engine transport (EngineStateTestDouble)", () => {
  it("hands the engine's opaque state over and acks; the offer is released", async () => {
    const server = await KvOfferServer.start({ layout });
    const puller = new KvPuller({ layout });
    try {
      const state = new Uint8Array([1, 2, 3, 250, 0, 7]);
      let released = 0;
      const source = Object.assign(new BufferKvSource([new Uint8Array(layout.bytesPerBlock)], 16, () => released++), { engineState: () => state });
      const h = server.offer(source);
      expect(h.endpoints[0]).toEqual({ transport: "engine", state: Buffer.from(state).toString("base64") });
      const sink = new EngineStateTestDoubleSink(16, layout.bytesPerBlock);
      const r = await puller.pull(h, sink);
      expect(r.transport).toBe("engine");
      expect(sink.received).toEqual(state);
      await until(() => released === 1);
      expect(server.stats().released.ack).toBe(1);
      // a sink without importEngineState uses bytes instead
      const { source: s2, segs } = randomSource(2);
      const h2 = server.offer(Object.assign(s2, { engineState: () => state }));
      const sink2 = sinkFor(2);
      expect((await puller.pull(h2, sink2)).transport).toBe("shm");
      expect(sameBytes(segs, sink2.segments())).toBe(true);
      // an engine-only offer (zero bytes outside the engine) is refused at negotiation by a byte sink, and released
      let releasedEngineOnly = 0;
      const h3 = server.offer(Object.assign(new BufferKvSource([], 16, () => releasedEngineOnly++), { engineState: () => state }));
      expect(h3.bytes).toBe(0);
      const byteSink = sinkFor(1);
      await expect(puller.pull(h3, byteSink)).rejects.toBeInstanceOf(KvNoTransportError);
      expect(byteSink.aborted).toBe(true);
      await until(() => releasedEngineOnly === 1);
      const h4 = server.offer(Object.assign(new BufferKvSource([], 16), { engineState: () => state }));
      const engineSink = new EngineStateTestDoubleSink(16, 4096);
      expect((await puller.pull(h4, engineSink)).transport).toBe("engine");
      expect(engineSink.received).toEqual(state);
      await until(() => server.stats().active === 0);
    } finally {
      puller.close();
      await server.close();
    }
  });
});

describe("executorKvSource on an engine that moves KV itself (EngineNativeExecutorTestDouble)", () => {
  // The TensorRT-LLM shim answers exportKv with ENGINE_NATIVE_TRANSFER and hands out its context state instead; the
  // double answers the same calls (apps/decode/test/engine-transport.test.ts runs the compiled engine double end to end).
  const engineNativeExecutorTestDouble = (state: Uint8Array) => {
    const calls = { released: [] as number[] };
    const executor = {
      exportKv: (): never => {
        throw Object.assign(new Error("the engine moves this KV itself"), { code: "ENGINE_NATIVE_TRANSFER" });
      },
      contextPhaseState: () => state,
      releaseContextPhaseState: (id: number) => void calls.released.push(id),
    };
    return { executor, calls };
  };

  it("offers the context state alone (zero bytes, the prompt's token count) and releases it once", async () => {
    const state = new Uint8Array([9, 8, 7]);
    const { executor, calls } = engineNativeExecutorTestDouble(state);
    expect(() => executorKvSource(executor, 3)).toThrow(/moves this KV itself/); // no token count: nothing to offer
    const server = await KvOfferServer.start({ layout });
    const puller = new KvPuller({ layout });
    try {
      const h = server.offer(executorKvSource(executor, 3, 40));
      expect(h).toMatchObject({ bytes: 0, numTokens: 40 });
      const sink = new EngineStateTestDoubleSink(40, 0);
      expect((await puller.pull(h, sink)).transport).toBe("engine");
      expect(sink.received).toEqual(state);
      await until(() => calls.released.length > 0);
      const source = executorKvSource(executor, 4, 8);
      source.release();
      source.release();
      expect(calls.released).toEqual([3, 4]);
    } finally {
      puller.close();
      await server.close();
    }
  });
});

describe("the nats transport rides the request plane (in-process plane: single-process mode keeps the fallback)", () => {
  it("pulls over the plane, and declineKvOffer releases an offer over it when no TCP control path is shared", async () => {
    const plane = createInProcessPlane();
    const server = await KvOfferServer.start({ layout, transports: ["nats"], nats: { requestPlane: plane } });
    const puller = new KvPuller({ layout, requestPlane: plane });
    try {
      const { source, segs } = randomSource(3);
      const h = server.offer(source);
      expect(h.endpoints.map((e) => e.transport)).toEqual(["nats"]);
      const sink = sinkFor(3);
      expect((await puller.pull(h, sink)).transport).toBe("nats");
      expect(sameBytes(segs, sink.segments())).toBe(true);
      await until(() => server.stats().released.ack === 1);

      const other = randomSource(1);
      const declined = server.offer(other.source);
      await declineKvOffer(JSON.parse(JSON.stringify(declined)), { requestPlane: plane }); // as the api passes it on: opaque JSON
      await until(() => other.released() === 1);
      expect(server.stats()).toMatchObject({ active: 0, released: { ack: 1, failed: 1 } });
      await expect(declineKvOffer({ not: "a handle" })).rejects.toBeInstanceOf(KvInvalidHandleError);
    } finally {
      puller.close();
      await server.close();
      await plane.close();
    }
  });
});
