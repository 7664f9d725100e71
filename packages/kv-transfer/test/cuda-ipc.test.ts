// The cuda-ipc transport (device to device) without a GPU: its handle endpoint, its negotiation, the lease / ack /
// fallback protocol over the real offer server, and real reference executors on both sides. The device copy itself
// is DeviceKvTestDouble's (test/device-double.ts); everything around it is the real code.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Executor } from "@trtd/trtllm";
import {
  executorKvSink,
  executorKvSource,
  KvInvalidHandleError,
  KvOfferServer,
  KvPuller,
  KvSizeMismatchError,
  KvTransportError,
  layoutFromExecutor,
  localHostId,
  MAX_DEVICE_DESCRIPTOR_BYTES,
  parseKvHandle,
  ringFilesOf,
  serializeKvHandle,
  type CudaIpcEndpoint,
  type KvHandle,
  type KvTransportName,
} from "../src/index.js";
import { DeviceKvTestDouble } from "./device-double.js";
import { pseudoTokens } from "@trtd/test-support";
import { expectIdle, layout, randomSource, sameBytes, sinkFor, tiny, until } from "./helpers.js";

const closers: Array<() => unknown> = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function pair(serverOpts: Partial<Parameters<typeof KvOfferServer.start>[0]> = {}, pullerOpts: Partial<ConstructorParameters<typeof KvPuller>[0]> = {}) {
  const server = await KvOfferServer.start({ layout, chunkBytes: 8192, ...serverOpts });
  const puller = new KvPuller({ layout, ...pullerOpts });
  closers.push(() => server.close(), () => puller.close());
  return { server, puller };
}

/** A device offer of `blocks` random blocks and a device-capable sink of the same size, on one double. */
function deviceOffer(server: KvOfferServer, blocks: number, double = new DeviceKvTestDouble()) {
  const { source, segs, released } = randomSource(blocks);
  const handle = server.offer(double.exporting(source));
  return { handle, segs, released, double, sink: double.importing(sinkFor(blocks)) };
}

const cudaIpc = (h: KvHandle) => h.endpoints.find((e): e is CudaIpcEndpoint => e.transport === "cuda-ipc")!;
const withCudaIpc = (h: KvHandle, patch: Partial<CudaIpcEndpoint>): KvHandle => ({
  ...h,
  endpoints: h.endpoints.map((e) => (e.transport === "cuda-ipc" ? { ...e, ...patch } : e)),
});
const moved = (s: { transports: Record<KvTransportName, { completed: number; bytes: number }> }) =>
  Object.fromEntries(Object.entries(s.transports).filter(([, v]) => v.completed > 0).map(([k, v]) => [k, [v.completed, v.bytes]]));

describe("cuda-ipc handle endpoint", () => {
  it("is offered first for a source with a device descriptor, round-trips, and malformed ones are refused", async () => {
    const { server } = await pair();
    const { handle } = deviceOffer(server, 2);
    const ep = cudaIpc(handle);
    expect(handle.endpoints[0]).toBe(ep);
    expect(ep).toMatchObject({ transport: "cuda-ipc", hostId: localHostId(), deviceUuid: "GPU-00000000-test-double-0000", host: "127.0.0.1", port: server.address.port });
    expect(Buffer.from(ep.descriptor, "base64").byteLength).toBe(96);
    expect(parseKvHandle(serializeKvHandle(handle))).toEqual(handle);
    const bad: Array<[Partial<Record<keyof CudaIpcEndpoint, unknown>>, RegExp]> = [
      [{ hostId: undefined }, /cuda-ipc hostId/],
      [{ deviceUuid: "" }, /deviceUuid/],
      [{ deviceUuid: "GPU-" + "a".repeat(64) }, /deviceUuid/],
      [{ deviceUuid: "GPU 0" }, /deviceUuid/],
      [{ deviceUuid: 7 }, /deviceUuid/],
      [{ descriptor: "" }, /descriptor/],
      [{ descriptor: "not base64!" }, /base64/],
      [{ descriptor: "QUJD=" }, /base64/],
      [{ descriptor: Buffer.alloc(MAX_DEVICE_DESCRIPTOR_BYTES + 1).toString("base64") }, /exceeds/],
      [{ host: undefined }, /cuda-ipc host/],
      [{ port: 0 }, /cuda-ipc port/],
    ];
    for (const [patch, re] of bad) {
      const input = withCudaIpc(handle, patch as Partial<CudaIpcEndpoint>);
      expect(() => parseKvHandle(JSON.parse(JSON.stringify(input))), JSON.stringify(patch).slice(0, 60)).toThrow(KvInvalidHandleError);
      expect(() => parseKvHandle(JSON.parse(JSON.stringify(input)))).toThrow(re);
    }
    // the largest descriptor allowed parses
    const max = Buffer.alloc(MAX_DEVICE_DESCRIPTOR_BYTES).toString("base64");
    expect(cudaIpc(parseKvHandle(withCudaIpc(handle, { descriptor: max }))).descriptor).toBe(max);
  });

  it("is not offered without a device descriptor, with one too large or an invalid device id, or when disabled", async () => {
    const { server } = await pair();
    const transports = (s: Parameters<KvOfferServer["offer"]>[0]) => server.offer(s).endpoints.map((e) => e.transport);
    expect(transports(randomSource(1).source)).toEqual(["shm", "tcp"]);
    const withDevice = (descriptor: Uint8Array | undefined, deviceUuid: string | undefined) =>
      Object.assign(randomSource(1).source, { deviceUuid, deviceDescriptor: () => descriptor });
    expect(transports(withDevice(undefined, "GPU-1"))).toEqual(["shm", "tcp"]);
    expect(transports(withDevice(new Uint8Array(8), undefined))).toEqual(["shm", "tcp"]);
    expect(transports(withDevice(new Uint8Array(8), "GPU 1"))).toEqual(["shm", "tcp"]);
    expect(transports(withDevice(new Uint8Array(0), "GPU-1"))).toEqual(["shm", "tcp"]);
    expect(transports(withDevice(new Uint8Array(MAX_DEVICE_DESCRIPTOR_BYTES + 1), "GPU-1"))).toEqual(["shm", "tcp"]);
    const throwing = Object.assign(randomSource(1).source, { deviceUuid: "GPU-1", deviceDescriptor: (): Uint8Array => { throw new Error("INVALID_STATE"); } });
    expect(transports(throwing)).toEqual(["shm", "tcp"]); // no device path, the segments still serve it
    expect(transports(withDevice(new Uint8Array(8), "GPU-1"))).toEqual(["cuda-ipc", "shm", "tcp"]);
    const { server: plain } = await pair({ transports: ["shm", "tcp"] });
    expect(plain.offer(withDevice(new Uint8Array(8), "GPU-1")).endpoints.map((e) => e.transport)).toEqual(["shm", "tcp"]);
  });
});

describe("cuda-ipc negotiation", () => {
  it("is chosen only for a device-capable sink on the same host and device; otherwise shm/tcp as before", async () => {
    const { server, puller } = await pair();
    const { handle, double, sink } = deviceOffer(server, 2);
    expect(puller.negotiate(handle, sink).transport).toBe("cuda-ipc");
    // a sink that cannot import device KV (a plain import, the reference executor's)
    expect(puller.negotiate(handle, sinkFor(2)).transport).toBe("shm");
    expect(puller.negotiate(handle).transport).toBe("shm");
    // another GPU of this host, another host, a device id but no importDevice
    expect(puller.negotiate(handle, double.importing(sinkFor(2), "GPU-another")).transport).toBe("shm");
    expect(puller.negotiate(withCudaIpc(handle, { hostId: "elsewhere" }), sink).transport).toBe("shm");
    expect(puller.negotiate(handle, { deviceUuid: double.deviceUuid }).transport).toBe("shm");
    // restricted per pull or per puller
    expect(puller.negotiate(handle, sink, ["tcp"]).transport).toBe("tcp");
    const noDevice = new KvPuller({ layout, transports: ["shm", "tcp"] });
    expect(noDevice.negotiate(handle, sink).transport).toBe("shm");
    noDevice.close();
    // the hook for GPUs with peer access
    const peers = new KvPuller({ layout, canReachDevice: (local, remote) => local === "GPU-another" && remote === double.deviceUuid });
    expect(peers.negotiate(handle, double.importing(sinkFor(2), "GPU-another")).transport).toBe("cuda-ipc");
    expect(peers.negotiate(handle, double.importing(sinkFor(2), "GPU-third")).transport).toBe("shm");
    peers.close();
  });
});

describe("cuda-ipc transfers (DeviceKvTestDouble)", () => {
  it("moves the KV device to device under a lease, acks, and the export is released only after the import", async () => {
    const { server, puller } = await pair();
    const { handle, segs, released, double, sink } = deviceOffer(server, 37);
    const r = await puller.pull(handle, sink);
    expect(r).toMatchObject({ transport: "cuda-ipc", bytes: handle.bytes, fallbacks: [] });
    expect(double.imports).toBe(1);
    expect(sameBytes(segs, sink.segments())).toBe(true);
    await until(() => released() === 1);
    expect(double.memory.size).toBe(0);
    expect(server.stats().released).toMatchObject({ ack: 1, failed: 0, expired: 0 });
    // no KV byte crossed the offer server: only the device path moved it
    expect(moved(server.stats())).toEqual({ "cuda-ipc": [1, handle.bytes] });
    expect(moved(puller.stats())).toEqual({ "cuda-ipc": [1, handle.bytes] });
    expect(puller.stats().transports["cuda-ipc"].seconds).toBeGreaterThanOrEqual(0);
    // the lease connection goes back to the pool and serves the next pull
    const next = deviceOffer(server, 3, double);
    expect((await puller.pull(next.handle, next.sink)).transport).toBe("cuda-ipc");
    expect(sameBytes(next.segs, next.sink.segments())).toBe(true);
    expect(puller.stats().pooledConnections).toEqual({ idle: 1, busy: 0 });
    expect(server.stats().connections).toBe(1);
    await until(() => server.stats().active === 0);
  });

  it("the lease keeps the offer from expiring while the device copy runs", async () => {
    const { server, puller } = await pair({ ttlMs: 100 });
    const { handle, segs, released, double, sink } = deviceOffer(server, 4);
    double.importDelayMs = 400; // well past the offer's ttl
    expect((await puller.pull(handle, sink)).transport).toBe("cuda-ipc");
    expect(double.releasedDuringImport).toBe(false);
    expect(sameBytes(segs, sink.segments())).toBe(true);
    await until(() => released() === 1);
    expect(server.stats().released).toMatchObject({ ack: 1, expired: 0 });
  });

  for (const [name, sync] of [["rejects", false], ["throws synchronously", true]] as const) {
    it(`importDevice ${name} (UNSUPPORTED) → the same pull falls back to shm on the leased connection, counted`, async () => {
      const { server, puller } = await pair();
      const { handle, segs, released, double, sink } = deviceOffer(server, 9);
      double.failWith = new Error("UNSUPPORTED: this device cannot reach the exporter's memory");
      double.failSync = sync;
      const r = await puller.pull(handle, sink);
      expect(r.transport).toBe("shm");
      expect(r.fallbacks.map((f) => f.transport)).toEqual(["cuda-ipc"]);
      expect(r.fallbacks[0]!.error).toBeInstanceOf(KvTransportError);
      expect(r.fallbacks[0]!.error.message).toMatch(/UNSUPPORTED/);
      expect(sameBytes(segs, sink.segments())).toBe(true);
      await until(() => released() === 1);
      expect(server.stats().released).toMatchObject({ ack: 1, failed: 0 });
      expect(server.stats().transports["cuda-ipc"]).toMatchObject({ completed: 0, fallbacks: 1, failed: 0 });
      expect(puller.stats().transports["cuda-ipc"]).toMatchObject({ completed: 0, fallbacks: 1, failed: 0 });
      expect(moved(server.stats())).toEqual({ shm: [1, handle.bytes] });
      expect(moved(puller.stats())).toEqual({ shm: [1, handle.bytes] });
      expect(server.stats().connections).toBe(1); // one connection: lease, then the bytes
      expect(ringFilesOf()).toEqual([]);
    });
  }

  it("falls back to tcp when that is what the pull may use; with no transport to go on, fails typed and releases", async () => {
    const { server, puller } = await pair();
    const a = deviceOffer(server, 5);
    a.double.failWith = new Error("INTERNAL: checksum mismatch");
    const r = await puller.pull(a.handle, a.sink, { transports: ["cuda-ipc", "tcp"] });
    expect(r.transport).toBe("tcp");
    expect(sameBytes(a.segs, a.sink.segments())).toBe(true);
    await until(() => a.released() === 1);

    const b = deviceOffer(server, 5);
    b.double.failWith = new Error("UNSUPPORTED");
    const err = await puller.pull(b.handle, b.sink, { transports: ["cuda-ipc"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvTransportError);
    expect((err as Error).message).toMatch(/no other transport can go on.*UNSUPPORTED/);
    expect((b.sink.inner as ReturnType<typeof sinkFor>).aborted).toBe(true);
    await until(() => b.released() === 1);
    expect(server.stats().released).toMatchObject({ ack: 1, failed: 1 });
    expect(server.stats().transports["cuda-ipc"]).toMatchObject({ fallbacks: 1, failed: 1 });
    expect(puller.stats().transports["cuda-ipc"]).toMatchObject({ fallbacks: 1, failed: 1 });
    expect(puller.stats()).toMatchObject({ completed: 1, failed: 1, active: 0 });
    await until(() => server.stats().active === 0 && server.stats().transfersActive === 0);
  });

  it("a lease that is never acked ends at the offering side's deadline (released as failed)", async () => {
    const { server, puller } = await pair({ timeouts: { baseMs: 100, ackMs: 100 } });
    const { handle, released, double, sink } = deviceOffer(server, 2);
    double.importDelayMs = 800; // the "device copy" outlasts the lease
    const err = await puller.pull(handle, sink).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvTransportError);
    expect(double.releasedDuringImport).toBe(true); // what the executor's own checksum would catch on a GPU
    expect(released()).toBe(1);
    expect(server.stats().released).toMatchObject({ failed: 1, ack: 0 });
    expect(server.stats().transports["cuda-ipc"].failed).toBe(1);
  });

  it("a sink of the wrong size is refused before the lease, and the offer is released", async () => {
    const { server, puller } = await pair();
    const { handle, released, double } = deviceOffer(server, 4);
    const sink = double.importing(sinkFor(3));
    await expect(puller.pull(handle, sink)).rejects.toBeInstanceOf(KvSizeMismatchError);
    expect(double.imports).toBe(0);
    await until(() => released() === 1);
    expect(server.stats().released.failed).toBe(1);
  });
});

describe("cuda-ipc with real reference executors (host KV: no device path of their own)", () => {
  let exA: Executor; // offering (prefill)
  let exB: Executor; // pulling (decode)
  beforeAll(() => {
    exA = Executor.open(tiny, { threads: 1, kvTokensPerBlock: 8 });
    exB = Executor.open(tiny, { threads: 1, kvTokensPerBlock: 8 });
  });
  afterAll(async () => {
    await exA?.close();
    await exB?.close();
  });

  async function contextOnly(p: number[]) {
    const s = exA.generate({ prompt: p, maxNewTokens: 12, type: "context_only" });
    const r = await s.collect();
    return { requestId: s.requestId, firstToken: r.tokens[0]! };
  }
  async function continueOnB(p: number[], firstToken: number, kvImport: ReturnType<Executor["reserveKvImport"]>) {
    return (await exB.generate({ prompt: p, maxNewTokens: 12, type: "generation_only", contextPhase: { firstToken, kvImport } }).collect()).tokens;
  }

  it("the reference executor has no device descriptor: no cuda-ipc offered, its import takes shm, token-exact", async () => {
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(exA.kvLayout()) });
    const puller = new KvPuller({ layout: layoutFromExecutor(exB.kvLayout()) });
    closers.push(() => server.close(), () => puller.close());
    const p = pseudoTokens(45, 31);
    const agg = await exB.generate({ prompt: p, maxNewTokens: 12 }).collect();
    const { requestId, firstToken } = await contextOnly(p);
    const source = executorKvSource(exA, requestId);
    expect(source.deviceDescriptor).toBeUndefined();
    const handle = server.offer(source);
    expect(handle.endpoints.map((e) => e.transport)).not.toContain("cuda-ipc");
    const imp = exB.reserveKvImport(handle.numTokens);
    const sink = executorKvSink(exB, imp);
    expect(sink.importDevice).toBeUndefined(); // deviceUuid() is undefined for the reference executor
    const r = await puller.pull(handle, sink);
    expect(r.transport).toBe("shm");
    expect(await continueOnB(p, firstToken, imp)).toEqual(agg.tokens);
    await until(() => server.stats().active === 0);
    expectIdle(exA);
    expectIdle(exB);
  });

  it("a device offer of real KV: a device-capable import takes cuda-ipc, and falls back into the real import on failure", async () => {
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(exA.kvLayout()) });
    const puller = new KvPuller({ layout: layoutFromExecutor(exB.kvLayout()) });
    closers.push(() => server.close(), () => puller.close());
    const double = new DeviceKvTestDouble();
    for (const [i, outcome] of (["device", "fallback", "plain-import"] as const).entries()) {
      const p = pseudoTokens(30 + i * 25, 40 + i);
      const agg = await exB.generate({ prompt: p, maxNewTokens: 12 }).collect();
      const { requestId, firstToken } = await contextOnly(p);
      const handle = server.offer(double.exporting(executorKvSource(exA, requestId)));
      expect(handle.endpoints[0]!.transport).toBe("cuda-ipc");
      const imp = exB.reserveKvImport(handle.numTokens);
      double.failWith = outcome === "fallback" ? new Error("UNSUPPORTED") : null;
      // "plain-import": the real reference import as it is (no importDevice): negotiated to shm up front
      const sink = outcome === "plain-import" ? executorKvSink(exB, imp) : double.importing(executorKvSink(exB, imp));
      const r = await puller.pull(handle, sink);
      expect(r.transport).toBe(outcome === "device" ? "cuda-ipc" : "shm");
      expect(r.fallbacks.length).toBe(outcome === "fallback" ? 1 : 0);
      expect(await continueOnB(p, firstToken, imp)).toEqual(agg.tokens);
    }
    await until(() => server.stats().active === 0);
    expect(server.stats().released).toMatchObject({ ack: 3, failed: 0 });
    expect(double.memory.size).toBe(0);
    expectIdle(exA);
    expectIdle(exB);
  });
});
