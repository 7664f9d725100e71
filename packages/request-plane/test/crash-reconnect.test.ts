import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { ServerGoneError, connect, startNatsServer, type NatsServerHandle, type RequestPlane } from "../src/index.js";
import { rejection, sleep, waitUntil } from "./helpers.js";

const fixture = fileURLToPath(new URL("./fixtures/serve-child.ts", import.meta.url));

/** Starts the fixture worker and waits (bounded) for its "ready" line. */
function spawnWorker(uri: string, id: string, hb: number, lease: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "--conditions=source", fixture, uri, id, String(hb), String(lease)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("worker did not become ready within 20 s"));
    }, 20_000);
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (d: string) => {
      if (d.includes("ready")) {
        clearTimeout(t);
        resolve(child);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`worker exited early (${code})`));
    });
  });
}

describe("failures over a real nats-server", () => {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  // Over NATS the client notices the silence (3 heartbeats); over the direct link the socket closes with the
  // process and the request fails at once, with the same error.
  for (const direct of [false, true]) {
    it(`a serving child process SIGKILLed mid-stream (${direct ? "direct link" : "NATS"}): the client gets ServerGoneError ${direct ? "at once" : "within 3 heartbeats"}, the instance disappears within its lease`, async () => {
      const nats = await startNatsServer();
      cleanups.push(() => nats.stop());
      const HB = 200;
      const LEASE = 1000;
      const plane = await connect(nats.uri, { heartbeatMs: HB, leaseMs: LEASE, directLink: direct });
      cleanups.push(() => plane.close());
      const child = await spawnWorker(nats.uri, "victim", HB, LEASE);
      cleanups.push(() => child.exitCode === null && child.kill("SIGKILL"));

      const client = plane.client<unknown, { i: number; pid: number }>("crash/child/stream");
      await client.waitForInstances({ timeoutMs: 5000 });
      expect(client.instances().map((i) => i.id)).toEqual(["victim"]);

      let killedAt = 0;
      let received = 0;
      const err = await rejection(
        (async () => {
          for await (const r of client.generate({}, { instanceId: "victim" })) {
            expect(r.pid).toBe(child.pid);
            expect(r.i).toBe(received);
            if (++received === 10) {
              child.kill("SIGKILL");
              killedAt = Date.now();
            }
          }
        })(),
      );
      const detectMs = Date.now() - killedAt;
      expect(err).toBeInstanceOf(ServerGoneError);
      expect((err as ServerGoneError).instanceId).toBe("victim");
      expect(client.carrierCounts().victim).toEqual(direct ? { direct: 1, nats: 0 } : { direct: 0, nats: 1 });
      if (direct) {
        // the kernel closes the socket with the process: well under one heartbeat
        expect(detectMs).toBeLessThan(HB);
      } else {
        // bound: 3 × heartbeat after the last frame (frames came every 20 ms); slack for a busy 2-core VM
        expect(detectMs).toBeGreaterThanOrEqual(3 * HB - 50);
        expect(detectMs).toBeLessThan(3 * HB + 500);
      }

      const goneMs = await waitUntil(() => client.instances().length === 0, LEASE + LEASE / 4 + 1000, "instance expiry");
      expect(goneMs + detectMs).toBeLessThan(LEASE + LEASE / 4 + 1000);
      client.close();
    });
  }

  it("reconnects after the nats-server restarts: serving and requests work again", async () => {
    const first: NatsServerHandle = await startNatsServer();
    const port = first.port;
    // NATS's own reconnect: with the direct link on, the requests below could succeed over the link before it
    const opts = { heartbeatMs: 200, leaseMs: 1000, reconnectTimeWaitMs: 100, directLink: false };
    const server = await connect(first.uri, { ...opts, name: "rc-server" });
    const client = await connect(first.uri, { ...opts, name: "rc-client" });
    let second: NatsServerHandle | undefined;
    cleanups.push(async () => {
      await client.close();
      await server.close();
      await first.stop();
      await second?.stop();
    });
    const statuses: string[] = [];
    client.transport.onStatus((s) => statuses.push(s));

    await server.serve("rc/svc/echo", (req: { n: number }) => ({ n: req.n + 1 }), { instanceId: "survivor" });
    const c = client.client<{ n: number }, { n: number }>("rc/svc/echo");
    await c.waitForInstances({ timeoutMs: 5000 });
    expect(await c.request({ n: 1 })).toEqual({ n: 2 });

    await first.stop();
    await waitUntil(() => statuses.includes("disconnected"), 5000, "disconnect seen");
    second = await startNatsServer({ port });

    // bounded retry: until both connections are back and subscriptions are restored
    let answer: { n: number } | undefined;
    const t0 = Date.now();
    while (!answer && Date.now() - t0 < 15_000) {
      try {
        answer = await c.request({ n: 41 }, { timeoutMs: 1000 });
      } catch {
        await sleep(100);
      }
    }
    expect(answer).toEqual({ n: 42 });
    expect(statuses).toContain("reconnected");
    await waitUntil(() => c.instances().some((i) => i.id === "survivor"), 3000, "re-announced instance");
    c.close();
  });
});
