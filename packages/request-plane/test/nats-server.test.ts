import { connect as natsConnect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { NatsServerNotFoundError, NatsServerStartError, findNatsServer, startNatsServer } from "../src/index.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("startNatsServer", () => {
  it("starts on a free 127.0.0.1 port with JetStream in a temp store, is ready, and stop() kills it and removes the store", async () => {
    const srv = await startNatsServer({ jetstream: true });
    expect(srv.uri).toBe(`nats://127.0.0.1:${srv.port}`);
    expect(alive(srv.pid)).toBe(true);
    const nc = await natsConnect({ servers: srv.uri, timeout: 2000 });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.getAccountInfo();
    expect(info.limits).toBeDefined();
    await nc.close();
    await srv.stop();
    expect(alive(srv.pid)).toBe(false);
    expect(typeof (await srv.exited)).not.toBe("undefined");
    await srv.stop(); // idempotent
  });

  it("uses a given store dir and port, and a second server on the same port fails with a clear error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rp-store-"));
    try {
      const a = await startNatsServer({ jetstream: true, storeDir: dir });
      try {
        const nc = await natsConnect({ servers: a.uri });
        const jsm = await jetstreamManager(nc);
        await jsm.streams.add({ name: "probe", subjects: ["probe.>"], max_bytes: 1 << 20 });
        await nc.close();
        expect(existsSync(join(dir, "jetstream"))).toBe(true);
        const err = await startNatsServer({ port: a.port, readyTimeoutMs: 3000 }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(NatsServerStartError);
        expect(String((err as Error).message)).toMatch(/address already in use|exited/i);
      } finally {
        await a.stop();
      }
      expect(existsSync(dir)).toBe(true); // the caller's dir is the caller's
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("applies maxPayload through a generated config", async () => {
    const srv = await startNatsServer({ maxPayload: 4096 });
    try {
      const nc = await natsConnect({ servers: srv.uri });
      expect(nc.info?.max_payload).toBe(4096);
      await nc.close();
    } finally {
      await srv.stop();
    }
  });

  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    it(`stops with its owner: the owner process gets ${sig} and its nats-server goes too`, async () => {
      const fixture = fileURLToPath(new URL("./fixtures/own-nats-server.ts", import.meta.url));
      const owner = spawn(process.execPath, ["--import", "tsx", "--conditions=source", fixture], { stdio: ["ignore", "pipe", "inherit"] });
      try {
        const pid = await new Promise<number>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error("owner did not report within 20 s")), 20_000);
          owner.stdout!.setEncoding("utf8").on("data", (d: string) => {
            const m = /pid (\d+)/.exec(d);
            if (m) {
              clearTimeout(t);
              resolve(Number(m[1]));
            }
          });
        });
        expect(alive(pid)).toBe(true);
        const exited = new Promise<string | null>((r) => owner.once("exit", (_c, s) => r(s)));
        owner.kill(sig);
        expect(await exited).toBe(sig); // default signal behaviour kept
        const t0 = Date.now();
        while (alive(pid) && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
        expect(alive(pid)).toBe(false);
      } finally {
        if (owner.exitCode === null && owner.signalCode === null) owner.kill("SIGKILL");
      }
    });
  }

  it("a missing binary is NatsServerNotFoundError", async () => {
    expect(() => findNatsServer("/nonexistent/nats-server")).toThrow(NatsServerNotFoundError);
    const err = await startNatsServer({ binary: "/nonexistent/nats-server" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerNotFoundError);
    expect((err as NatsServerNotFoundError).code).toBe("nats_server_not_found");
    expect(findNatsServer()).toMatch(/nats-server$/);
  });
});
