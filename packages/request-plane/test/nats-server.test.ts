import { connect as natsConnect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { waitUntil } from "./helpers.js";
import { NatsServerNotFoundError, NatsServerStartError, findNatsServer, startNatsServer } from "../src/index.js";
import { isAlive } from "@trtd/process";


describe("startNatsServer", () => {
  it("starts on a free 127.0.0.1 port with JetStream in a temp store, is ready, and stop() kills it and removes the store", async () => {
    const srv = await startNatsServer({ jetstream: true });
    expect(srv.uri).toBe(`nats://127.0.0.1:${srv.port}`);
    expect(isAlive(srv.pid)).toBe(true);
    const nc = await natsConnect({ servers: srv.uri, timeout: 2000 });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.getAccountInfo();
    expect(info.limits).toBeDefined();
    await nc.close();
    await srv.stop();
    expect(isAlive(srv.pid)).toBe(false);
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

  /** The server's temp dirs under `tmp` (tsx keeps its cache there too). */
  const natsTemp = (tmp: string) => readdirSync(tmp).filter((n) => n.startsWith("trtd-nats-"));
  const fixture = fileURLToPath(new URL("./fixtures/own-nats-server.ts", import.meta.url));

  /** Runs the owner fixture in its own process group with a private TMPDIR; resolves once it printed its pids. */
  async function startOwner(mode: "default" | "exit" | "own-stop") {
    const tmp = mkdtempSync(join(tmpdir(), "rp-owner-"));
    const owner = spawn(process.execPath, ["--import", "tsx", "--conditions=source", fixture, mode], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, TMPDIR: tmp },
      detached: true,
    });
    const lines: string[] = [];
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) => owner.once("exit", (code, signal) => r({ code, signal })));
    createInterface({ input: owner.stdout! }).on("line", (l) => lines.push(l));
    const waitLine = (re: RegExp, what: string) =>
      waitUntil(() => lines.some((l) => re.test(l)), 20_000, what).then(() => re.exec(lines.find((l) => re.test(l))!)!);
    const m = await waitLine(/^pid (\d+) sleeper (\d+)$/, "the owner to report its nats-server");
    const cleanup = () => {
      if (owner.exitCode === null && owner.signalCode === null) owner.kill("SIGKILL");
      for (const pid of [Number(m[1]), Number(m[2])]) if (isAlive(pid)) process.kill(pid, "SIGKILL");
      rmSync(tmp, { recursive: true, force: true });
    };
    return { owner, server: Number(m[1]), sleeper: Number(m[2]), tmp, exited, waitLine, cleanup };
  }

  // No signal or exit handlers in the library: a watchdog on a pipe from the owner stops the server (SIGTERM,
  // SIGKILL after 5 s) and removes its temp store once the owner is gone, however it ended, even while another
  // child of the owner (the sleeper) lives on.
  for (const sig of ["SIGTERM", "SIGINT", "SIGKILL"] as const) {
    it(`stops with its owner: the owner gets ${sig}, dies of it, and its nats-server and temp store go within 8 s`, async () => {
      const o = await startOwner("default");
      try {
        expect(isAlive(o.server)).toBe(true);
        expect(natsTemp(o.tmp).length).toBeGreaterThan(0); // the JetStream store
        o.owner.kill(sig);
        expect((await o.exited).signal).toBe(sig); // Node's default signal behaviour: nothing here handles it
        await waitUntil(() => !isAlive(o.server) && natsTemp(o.tmp).length === 0, 8000, "the server and its store to go");
        expect(isAlive(o.sleeper)).toBe(true);
      } finally {
        o.cleanup();
      }
    });
  }

  it("stops with its owner: the owner exits without stopping it, and the server goes within 8 s", async () => {
    const o = await startOwner("exit");
    try {
      expect((await o.exited).code).toBe(0);
      await waitUntil(() => !isAlive(o.server) && natsTemp(o.tmp).length === 0, 8000, "the server and its store to go");
    } finally {
      o.cleanup();
    }
  });

  it("the owner owns the stop: Ctrl-C to the owner's process group leaves the server up until the owner stops it", async () => {
    const o = await startOwner("own-stop");
    try {
      process.kill(-o.owner.pid!, "SIGINT"); // what a terminal does: the whole foreground group
      await o.waitLine(/^sigint$/, "the owner to handle SIGINT");
      expect(isAlive(o.server)).toBe(true); // the owner waits 500 ms before it stops the server
      await o.waitLine(/^stopped$/, "the owner to stop its server");
      expect(isAlive(o.server)).toBe(false);
      expect((await o.exited).code).toBe(0);
    } finally {
      o.cleanup();
    }
  });

  it("a missing binary is NatsServerNotFoundError", async () => {
    expect(() => findNatsServer("/nonexistent/nats-server")).toThrow(NatsServerNotFoundError);
    const err = await startNatsServer({ binary: "/nonexistent/nats-server" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerNotFoundError);
    expect((err as NatsServerNotFoundError).code).toBe("nats_server_not_found");
    expect(findNatsServer()).toMatch(/nats-server$/);
  });
});
