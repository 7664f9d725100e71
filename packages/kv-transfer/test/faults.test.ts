// Failure paths with real executors: peers killed mid-transfer, expiry, layout mismatch, concurrency, wire
// corruption, close. Every test checks that no block, offer, connection or ring file is left behind.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Executor } from "@trtd/trtllm";
import {
  executorKvSource,
  KvChecksumError,
  KvLayoutMismatchError,
  KvOfferExpiredError,
  KvOfferNotFoundError,
  KvOfferServer,
  KvPeerLostError,
  KvPuller,
  KvAbortedError,
  KvLeaseExpiredError,
  KvUnauthorizedError,
  layoutFromExecutor,
  ringFilesOf,
  type KvHandle,
  type KvTransportName,
} from "../src/index.js";
import { spawnPeer, type Peer } from "./peer.js";
import { startProxy } from "./proxy.js";
import { pseudoTokens } from "@trtd/test-support";
import { expectIdle, tiny, until } from "./helpers.js";

let ex: Executor;
let puller: KvPuller;
let peer: Peer;

/** Points a handle's TCP/shm endpoints at a relay. */
function via(handle: KvHandle, port: number): KvHandle {
  return { ...handle, endpoints: handle.endpoints.map((e) => (e.transport === "tcp" || e.transport === "shm" ? { ...e, port } : e)) };
}
async function offerInParent(server: KvOfferServer, len: number, salt: number) {
  const s = ex.generate({ prompt: pseudoTokens(len, salt), maxNewTokens: 2, type: "context_only" });
  const r = await s.collect();
  return { handle: server.offer(executorKvSource(ex, s.requestId)), firstToken: r.tokens[0]! };
}

beforeAll(async () => {
  ex = Executor.open(tiny, { threads: 1, kvTokensPerBlock: 8 });
  puller = new KvPuller({ layout: layoutFromExecutor(ex.kvLayout()) });
  peer = await spawnPeer();
});
afterAll(async () => {
  await peer?.exit();
  puller?.close();
  await ex?.close();
});

describe("peer killed mid-transfer", () => {
  for (const transport of ["tcp", "shm"] as KvTransportName[]) {
    it(`${transport}: offering process SIGKILLed → typed error here, import aborted, no ring file left`, async () => {
      const victim = await spawnPeer({ SHM_STAGING: "0" }); // shm: the ring, whose chunk notices the proxy stalls
      const { handle } = await victim.call<{ handle: KvHandle }>({ cmd: "offer", prompt: pseudoTokens(300, 21), maxNewTokens: 2 });
      const target = handle.endpoints.find((e) => e.transport === "tcp") as { port: number };
      const stallAfter = transport === "tcp" ? 40 * 1024 : 500;
      const proxy = await startProxy(target.port, { stallAfter });
      try {
        const imp = ex.reserveKvImport(handle.numTokens);
        const pulling = puller.pull(via(handle, proxy.port), imp, { transports: [transport] }).catch((e: unknown) => e);
        await until(() => proxy.forwarded() >= stallAfter);
        const killedAt = Date.now();
        await victim.kill("SIGKILL");
        const err = await pulling;
        expect(err).toBeInstanceOf(KvPeerLostError);
        // The import is aborted as soon as the connection drops, not at the idle timeout (10 s) or the deadline.
        expect(Date.now() - killedAt).toBeLessThan(2000);
        expect(imp.state).toBe("aborted");
        expectIdle(ex);
        expect(ringFilesOf(victim.pid)).toEqual([]);
        expect(puller.stats().active).toBe(0);
      } finally {
        await proxy.close();
        await victim.kill();
      }
    });
  }

  it("shm single copy: offering process SIGKILLed before the pull → typed error here, import aborted, nothing left", async () => {
    const victim = await spawnPeer();
    try {
      const { handle } = await victim.call<{ handle: KvHandle }>({ cmd: "offer", prompt: pseudoTokens(300, 23), maxNewTokens: 2 });
      expect(handle.endpoints.find((e) => e.transport === "shm")).toHaveProperty("segment");
      await victim.kill("SIGKILL");
      const imp = ex.reserveKvImport(handle.numTokens);
      const t0 = Date.now();
      // its staging segment went with it (memfd): nothing to map, and the ring's control connection is refused
      const err = await puller.pull(handle, imp, { transports: ["shm"] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvPeerLostError);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(imp.state).toBe("aborted");
      expectIdle(ex);
      expect(ringFilesOf(victim.pid)).toEqual([]);
      expect(puller.stats().active).toBe(0);
    } finally {
      await victim.kill();
    }
  });

  it("pulling process SIGKILLed → the offering side releases the offer and its blocks", async () => {
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()), chunkBytes: 16 * 1024 });
    const victim = await spawnPeer();
    const proxy = await startProxy(server.address.port, { stallAfter: 40 * 1024 });
    try {
      const { handle, firstToken } = await offerInParent(server, 300, 22);
      expect(ex.stats().pinnedExports).toBe(1);
      const pending = victim.start({ cmd: "pull-generate", handle: via(handle, proxy.port), firstToken, prompt: pseudoTokens(300, 22), maxNewTokens: 2, transports: ["tcp"] });
      pending.catch(() => undefined);
      await until(() => proxy.forwarded() >= 40 * 1024);
      expect(server.stats().active).toBe(1);
      await victim.kill("SIGKILL");
      await until(() => server.stats().active === 0);
      expect(server.stats().released.failed).toBe(1);
      expectIdle(ex);
      expect(server.stats().transfersActive).toBe(0);
    } finally {
      await proxy.close();
      await victim.kill();
      await server.close();
    }
  });
});

describe("offer lifecycle", () => {
  it("expiry releases an unpulled offer; pulling it then fails fast with a typed error", async () => {
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()), ttlMs: 200 });
    try {
      const { handle } = await offerInParent(server, 40, 31);
      expect(ex.stats().pinnedExports).toBe(1);
      await until(() => server.stats().active === 0, 3000);
      expect(server.stats().released.expired).toBe(1);
      expectIdle(ex);
      const imp = ex.reserveKvImport(handle.numTokens);
      await expect(puller.pull(handle, imp)).rejects.toBeInstanceOf(KvOfferExpiredError);
      // A late pull that reaches the server (its clock behind, or the expiry tampered with): the server reclaimed the
      // offer at its lease's end and says so (KV_LEASE_EXPIRED), to the holder of the handle only.
      const late = { ...handle, expiresAt: Date.now() + 60_000 };
      const imp2 = ex.reserveKvImport(handle.numTokens);
      await expect(puller.pull(late, imp2)).rejects.toBeInstanceOf(KvLeaseExpiredError);
      expect(imp2.state).toBe("aborted");
      const refusedBefore = server.stats().refused.bad_secret;
      const imp3 = ex.reserveKvImport(handle.numTokens);
      await expect(puller.pull({ ...late, secret: "0".repeat(64) }, imp3)).rejects.toBeInstanceOf(KvUnauthorizedError);
      expect(server.stats().refused.bad_secret).toBe(refusedBefore + 1);
      // An offer that was pulled (not reclaimed) is simply unknown afterwards.
      const { handle: pulled } = await offerInParent(server, 40, 33);
      const imp4 = ex.reserveKvImport(pulled.numTokens);
      await puller.pull(pulled, imp4, { transports: ["tcp"] });
      imp4.abort();
      const imp5 = ex.reserveKvImport(pulled.numTokens);
      await expect(puller.pull(pulled, imp5)).rejects.toBeInstanceOf(KvOfferNotFoundError);
      expect(server.stats().released).toMatchObject({ expired: 1, ack: 1 });
      expectIdle(ex);
    } finally {
      await server.close();
    }
  });

  it("expiry racing pulls and nacks: every offer is reclaimed exactly once; a late pull gets KV_LEASE_EXPIRED", async () => {
    const ttlMs = 400;
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()), ttlMs, chunkBytes: 8 * 1024 });
    const releases = new Map<string, string[]>();
    server.registry.onRelease((id, reason) => releases.set(id, [...(releases.get(id) ?? []), reason]));
    // Per offer: when (relative to its expiry) it is pulled or declined. -150/+150 are clear of the expiry; the
    // rest race it (the expiry timer, the pull's PULL frame and the nack arrive in either order).
    const plan: Array<{ op: "pull" | "decline"; at: number; transport?: KvTransportName }> = [];
    for (const at of [-150, -6, -3, 0, 2, 5, 150]) {
      plan.push({ op: "pull", at, transport: "tcp" }, { op: "pull", at, transport: "shm" }, { op: "decline", at });
    }
    try {
      const outcomes: Array<Promise<{ op: string; at: number; id: string; result: unknown }>> = [];
      for (const [i, step] of plan.entries()) {
        const { handle } = await offerInParent(server, 24, 100 + i);
        // The server is the judge here: the handle's own expiry is moved out so the puller's local check passes.
        const late = { ...handle, expiresAt: handle.expiresAt + 60_000 };
        const delay = Math.max(0, handle.expiresAt + step.at - Date.now());
        outcomes.push(
          new Promise<void>((r) => setTimeout(r, delay)).then(async () => {
            if (step.op === "decline") return { ...step, id: handle.id, result: await puller.decline(late) };
            const imp = ex.reserveKvImport(handle.numTokens);
            try {
              await puller.pull(late, imp, { transports: [step.transport!] });
              imp.abort(); // pulled: this test does not generate from it
              return { ...step, id: handle.id, result: "pulled" };
            } catch (err) {
              expect(imp.state).toBe("aborted");
              return { ...step, id: handle.id, result: err };
            }
          }),
        );
      }
      const results = await Promise.all(outcomes);
      await until(() => server.stats().active === 0, 3000);
      for (const r of results) {
        expect(releases.get(r.id), `${r.op} at ${r.at}`).toHaveLength(1); // reclaimed exactly once
        const reason = releases.get(r.id)![0];
        if (r.op === "pull") {
          if (r.result === "pulled") expect(reason).toBe("ack");
          else {
            expect(r.result, `pull at ${r.at}`).toBeInstanceOf(KvLeaseExpiredError);
            expect(reason).toBe("expired");
          }
          if (r.at === -150) expect(r.result).toBe("pulled");
          if (r.at === 150) expect(r.result).toBeInstanceOf(KvLeaseExpiredError);
        } else {
          expect(["failed", "expired"]).toContain(reason); // the nack or the expiry, never both
          if (r.at === -150) expect(reason).toBe("failed");
          if (r.at === 150) expect(reason).toBe("expired");
        }
      }
      const st = server.stats();
      expect(st.released.ack + st.released.failed + st.released.expired).toBe(plan.length);
      expect(st.offered).toBe(plan.length);
      expect(st.transfersActive).toBe(0);
      expectIdle(ex);
      expect(puller.stats().active).toBe(0);
    } finally {
      await server.close();
    }
  });

  it("a second pull of the same offer is refused (offers are single-consumer)", async () => {
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()) });
    try {
      const { handle, firstToken } = await offerInParent(server, 20, 32);
      const imp = ex.reserveKvImport(handle.numTokens);
      await puller.pull(handle, imp);
      await ex.generate({ prompt: pseudoTokens(20, 32), maxNewTokens: 2, type: "generation_only", contextPhase: { firstToken, kvImport: imp } }).collect();
      const imp2 = ex.reserveKvImport(handle.numTokens);
      await expect(puller.pull(handle, imp2)).rejects.toBeInstanceOf(KvOfferNotFoundError);
      expect(imp2.state).toBe("aborted");
      expectIdle(ex);
    } finally {
      await server.close();
    }
  });

  it("decline releases the offer without pulling; close releases the rest", async () => {
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()) });
    const { handle } = await offerInParent(server, 20, 33);
    await offerInParent(server, 20, 34);
    expect(ex.stats().pinnedExports).toBe(2);
    await puller.decline(handle);
    await until(() => server.stats().active === 1);
    expect(server.stats().released.failed).toBe(1);
    await server.close();
    expect(server.stats().released.closed).toBe(1);
    expectIdle(ex);
  });

  it("an abort signal ends a stalled pull with KvAbortedError; both sides release", async () => {
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()), chunkBytes: 16 * 1024 });
    const proxy = await startProxy(server.address.port, { stallAfter: 20 * 1024 });
    try {
      const { handle } = await offerInParent(server, 300, 35);
      const imp = ex.reserveKvImport(handle.numTokens);
      const ac = new AbortController();
      const pulling = puller.pull(via(handle, proxy.port), imp, { signal: ac.signal, transports: ["tcp"] }).catch((e: unknown) => e);
      await until(() => proxy.forwarded() >= 20 * 1024);
      ac.abort();
      expect(await pulling).toBeInstanceOf(KvAbortedError);
      await until(() => server.stats().active === 0);
      expectIdle(ex);
    } finally {
      await proxy.close();
      await server.close();
    }
  });

  it("a stalled peer hits the idle timeout (typed KvTimeoutError), bounded", async () => {
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()), chunkBytes: 16 * 1024 });
    const proxy = await startProxy(server.address.port, { stallAfter: 20 * 1024 });
    const impatient = new KvPuller({ layout: layoutFromExecutor(ex.kvLayout()), idleTimeoutMs: 300 });
    try {
      const { handle } = await offerInParent(server, 300, 36);
      const imp = ex.reserveKvImport(handle.numTokens);
      const t0 = Date.now();
      const err = await impatient.pull(via(handle, proxy.port), imp, { transports: ["tcp"] }).catch((e: unknown) => e);
      expect((err as Error).name).toBe("KvTimeoutError");
      expect(Date.now() - t0).toBeLessThan(3000);
      await until(() => server.stats().active === 0);
      expectIdle(ex);
    } finally {
      impatient.close();
      await proxy.close();
      await server.close();
    }
  });

  it("installs no process-wide handlers: offers are released by their owner's close()", async () => {
    const hooks = () => ["exit", "beforeExit", "SIGINT", "SIGTERM", "SIGHUP"].map((e) => process.listenerCount(e));
    const before = hooks();
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()) });
    await offerInParent(server, 20, 37);
    expect(hooks()).toEqual(before);
    await server.close();
    expect(server.stats().released.closed).toBe(1);
    expectIdle(ex);
  });
});

describe("integrity and compatibility", () => {
  it("a byte flipped on the wire is caught by the chunk checksum", async () => {
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()), chunkBytes: 16 * 1024 });
    const proxy = await startProxy(server.address.port, { flipAt: 30_000 });
    try {
      const { handle } = await offerInParent(server, 100, 41);
      const imp = ex.reserveKvImport(handle.numTokens);
      const err = await puller.pull(via(handle, proxy.port), imp, { transports: ["tcp"] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvChecksumError);
      expect((err as KvChecksumError).seq).toBeGreaterThanOrEqual(0);
      await until(() => server.stats().active === 0);
      expect(server.stats().released.failed).toBe(1);
      expectIdle(ex);
    } finally {
      await proxy.close();
      await server.close();
    }
  });

  it("an incompatible layout is refused with a clear error naming the fields, before any byte moves", async () => {
    const other = Executor.open(tiny, { threads: 1, kvTokensPerBlock: 16 });
    const otherPuller = new KvPuller({ layout: layoutFromExecutor(other.kvLayout()) });
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()) });
    try {
      const { handle } = await offerInParent(server, 40, 42);
      const imp = other.reserveKvImport(handle.numTokens);
      const err = await otherPuller.pull(handle, imp).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvLayoutMismatchError);
      expect((err as KvLayoutMismatchError).fields).toEqual(expect.arrayContaining(["tokensPerBlock", "bytesPerBlock"]));
      expect((err as Error).message).toMatch(/tokensPerBlock: local 16 vs remote 8/);
      expect(imp.state).toBe("aborted");
      await until(() => server.stats().active === 0); // the refused offer is released (declined), not left to expire
      expectIdle(ex);
      expectIdle(other);
    } finally {
      otherPuller.close();
      await server.close();
      await other.close();
    }
  });
});

describe("load", () => {
  it("50 concurrent transfers from another process, each continuing token-exact", async () => {
    const n = 50;
    const prompts = Array.from({ length: n }, (_, i) => pseudoTokens(10 + (i % 30), 100 + i));
    const agg = [];
    for (const p of prompts) agg.push((await ex.generate({ prompt: p, maxNewTokens: 4 }).collect()).tokens);
    const offers = [];
    for (const p of prompts) offers.push(await peer.call<{ handle: KvHandle; firstToken: number }>({ cmd: "offer", prompt: p, maxNewTokens: 4 }));
    const limited = new KvPuller({ layout: layoutFromExecutor(ex.kvLayout()), maxConcurrentPulls: 8 });
    try {
      const t0 = Date.now();
      const results = await Promise.all(
        offers.map(async ({ handle, firstToken }, i) => {
          const transport: KvTransportName = i % 2 ? "tcp" : "shm";
          const imp = ex.reserveKvImport(handle.numTokens);
          await limited.pull(handle, imp, { transports: [transport] });
          return (await ex.generate({ prompt: prompts[i]!, maxNewTokens: 4, type: "generation_only", contextPhase: { firstToken, kvImport: imp } }).collect()).tokens;
        }),
      );
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(results).toEqual(agg);
      expect(limited.stats()).toMatchObject({ active: 0, queued: 0, completed: n, failed: 0 });
      expect(limited.stats().pooledConnections.idle).toBeLessThanOrEqual(4);
      expectIdle(ex);
      const s = await peer.stats();
      expect(s.server.active).toBe(0);
      expect(s.executor.pinnedExports).toBe(0);
    } finally {
      limited.close();
    }
  });
});
