// Offer secrets: the offering side serves (and releases) an offer only to a peer presenting the secret its handle
// carries. A refused pull or release is counted and leaves the offer as it was: the holder of the handle still pulls
// it, or it expires. Real executor KV, real TCP, shared memory and NATS.
import { connect as netConnect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, startNatsServer, type NatsServerHandle, type RequestPlane } from "@trtd/request-plane";
import { Executor } from "@trtd/trtllm";
import {
  executorKvSource,
  KvOfferServer,
  KvPuller,
  KvUnauthorizedError,
  layoutFromExecutor,
  ringFilesOf,
  type KvHandle,
  type KvTransportName,
} from "../src/index.js";
import { FrameReader } from "../src/frame-reader.js";
import { controlFrame, FrameType, type ErrorBody, type PullRequest } from "../src/wire.js";
import { pseudoTokens } from "@trtd/test-support";
import { expectIdle, layout, randomSource, sinkFor, tiny, until } from "./helpers.js";

let ex: Executor;
let nats: NatsServerHandle;
let plane: RequestPlane;
let server: KvOfferServer;
let puller: KvPuller;

beforeAll(async () => {
  nats = await startNatsServer();
  plane = await connect(nats.uri);
  ex = Executor.open(tiny, { threads: 1, kvTokensPerBlock: 8 });
  const kvLayout = layoutFromExecutor(ex.kvLayout());
  server = await KvOfferServer.start({ layout: kvLayout, nats: { requestPlane: plane } });
  puller = new KvPuller({ layout: kvLayout, requestPlane: plane });
});

afterAll(async () => {
  puller?.close();
  await server?.close();
  await ex?.close();
  await plane?.close();
  await nats?.stop();
});

/** A context-only request's KV, offered by this process's server. */
async function offerPrompt(p: number[]): Promise<{ handle: KvHandle; firstToken: number }> {
  const s = ex.generate({ prompt: p, maxNewTokens: 8, type: "context_only" });
  const r = await s.collect();
  return { handle: server.offer(executorKvSource(ex, s.requestId)), firstToken: r.tokens[0]! };
}

/** Sends one control frame on a fresh connection and returns the server's ERROR body (bounded). */
function rawControl(type: number, body: unknown, offerId: string): Promise<ErrorBody> {
  const { port } = server.address;
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host: "127.0.0.1", port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("no ERROR frame from the offer server within 5 s"));
    }, 5000);
    const reader = new FrameReader();
    sock.on("data", (d: Buffer) =>
      reader.push(d, (h, payload) => {
        if (h.type !== FrameType.Error) return;
        clearTimeout(timer);
        sock.destroy();
        resolve(JSON.parse(payload.toString("utf8")) as ErrorBody);
      }),
    );
    sock.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    for (const b of controlFrame(type, body, Buffer.from(offerId, "hex"))) sock.write(b);
  });
}

const refused = () => server.stats().refused;

describe("kv-transfer - offer secrets", () => {
  const transports: KvTransportName[] = ["tcp", "shm", "nats"];
  for (const transport of transports) {
    it(`${transport}: a pull with a wrong secret is refused and counted; the offer stays and the right secret pulls it; nothing leaks`, async () => {
      const p = pseudoTokens(37, 5);
      const agg = await ex.generate({ prompt: p, maxNewTokens: 8 }).collect();
      const { handle, firstToken } = await offerPrompt(p);
      expect(handle.secret).toMatch(/^[0-9a-f]{64}$/);
      const before = refused().bad_secret;

      const wrong = { ...handle, secret: handle.secret.replace(/^./, (c) => (c === "0" ? "1" : "0")) };
      const stolen = ex.reserveKvImport(handle.numTokens);
      const err = await puller.pull(wrong, stolen, { transports: [transport] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvUnauthorizedError);
      expect((err as Error).message).toMatch(/secret does not match/);
      expect((err as Error).message).not.toContain(handle.secret);
      // NATS has no connection to drop: the failed puller also sends a NACK, with the same wrong secret (refused too)
      expect(refused().bad_secret).toBe(before + (transport === "nats" ? 2 : 1));
      expect(server.registry.get(handle.id)?.claimed).toBe(false);

      const imp = ex.reserveKvImport(handle.numTokens);
      const r = await puller.pull(handle, imp, { transports: [transport] });
      expect(r.transport).toBe(transport);
      const gen = await ex.generate({ prompt: p, maxNewTokens: 8, type: "generation_only", contextPhase: { firstToken, kvImport: imp } }).collect();
      expect(gen.tokens).toEqual(agg.tokens);

      await until(() => server.stats().active === 0);
      expectIdle(ex); // the refused pull's import reservation and the offer's pinned blocks are back
      expect(ringFilesOf(process.pid)).toEqual([]);
    });
  }

  it("a PULL, ACK or NACK with no secret (or a malformed one) is refused and counted; the offer is not consumed", async () => {
    const { handle } = await offerPrompt(pseudoTokens(20, 6));
    const before = refused();
    const pull: PullRequest = { offerId: handle.id, fingerprint: handle.layout.fingerprint, transport: "tcp", bytes: handle.bytes, digest: handle.checksum.digest };
    const noSecret = await rawControl(FrameType.Pull, pull, handle.id);
    expect(noSecret.code).toBe("KV_UNAUTHORIZED");
    expect(noSecret.message).toMatch(/carries no offer secret/);
    const malformed = await rawControl(FrameType.Pull, { ...pull, secret: "not-hex" }, handle.id);
    expect(malformed.code).toBe("KV_UNAUTHORIZED");
    expect((await rawControl(FrameType.Nack, { secret: "" }, handle.id)).code).toBe("KV_UNAUTHORIZED");
    expect((await rawControl(FrameType.Ack, { secret: "f".repeat(64) }, handle.id)).code).toBe("KV_UNAUTHORIZED");
    expect(refused()).toEqual({ missing_secret: before.missing_secret + 2, bad_secret: before.bad_secret + 2 });
    expect(server.registry.get(handle.id)?.claimed).toBe(false);

    // the holder of the handle declines it: released now, the executor holds nothing
    await puller.decline(handle);
    await until(() => server.registry.get(handle.id) === undefined);
    expect(server.stats().released.failed).toBeGreaterThan(0);
    await until(() => ex.stats().pinnedExports === 0); // the executor frees the export on its own thread
    expectIdle(ex);
  });

  it("an offer only ever probed with wrong secrets expires and is released as usual", async () => {
    const s = await KvOfferServer.start({ layout, ttlMs: 300, transports: ["tcp"] });
    try {
      const { source, released } = randomSource(2);
      const handle = s.offer(source);
      const p = new KvPuller({ layout, transports: ["tcp"] });
      try {
        await expect(p.pull({ ...handle, secret: "a".repeat(64) }, sinkFor(2))).rejects.toBeInstanceOf(KvUnauthorizedError);
      } finally {
        p.close();
      }
      expect(released()).toBe(0);
      expect(s.stats().refused.bad_secret).toBe(1);
      await until(() => released() === 1, 5000);
      expect(s.stats()).toMatchObject({ active: 0, released: { expired: 1 } });
    } finally {
      await s.close();
    }
  });
});
