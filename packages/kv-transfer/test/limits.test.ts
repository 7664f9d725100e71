import { describe, expect, it } from "vitest";
import { KvAbortedError, KvOfferServer, KvTimeoutError } from "../src/index.js";
import { Semaphore } from "../src/limits.js";
import { layout, randomSource } from "./helpers.js";

describe("concurrency limit", () => {
  it("grants at most `limit`, in FIFO order, with bounded and abortable waits", async () => {
    const sem = new Semaphore(2);
    const far = Date.now() + 10_000;
    const a = await sem.acquire(far);
    const b = await sem.acquire(far);
    expect(sem.inUse).toBe(2);
    const order: string[] = [];
    const c = sem.acquire(far).then((r) => (order.push("c"), r));
    const d = sem.acquire(far).then((r) => (order.push("d"), r));
    expect(sem.waiting).toBe(2);
    const t0 = Date.now();
    await expect(sem.acquire(Date.now() + 50)).rejects.toBeInstanceOf(KvTimeoutError);
    expect(Date.now() - t0).toBeLessThan(1000);
    const ac = new AbortController();
    const e = sem.acquire(far, ac.signal);
    ac.abort();
    await expect(e).rejects.toBeInstanceOf(KvAbortedError);
    expect(sem.waiting).toBe(2);
    a();
    a(); // releasing twice is a no-op
    const rc = await c;
    expect(sem.inUse).toBe(2);
    b();
    const rd = await d;
    expect(order).toEqual(["c", "d"]);
    rc();
    rd();
    expect(sem.inUse).toBe(0);
  });
});

describe("addresses", () => {
  it("handles carry the advertised address and the bound port, not the listen address", async () => {
    const server = await KvOfferServer.start({ layout, host: "127.0.0.1", advertiseHost: "prefill-3.cluster.local" });
    try {
      const h = server.offer(randomSource(1).source);
      const tcp = h.endpoints.find((e) => e.transport === "tcp");
      expect(tcp).toEqual({ transport: "tcp", host: "prefill-3.cluster.local", port: server.address.port });
      expect(server.address.port).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });
});
