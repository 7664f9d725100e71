// Real executor KV across two processes: a child (test/fixtures/kv-peer.ts) runs its own reference executor on
// models/tiny; this process runs another. Disaggregated generation must equal aggregated, token for token.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, startNatsServer, type NatsServerHandle, type RequestPlane } from "@trtd/request-plane";
import { Executor, type SamplingOptions } from "@trtd/trtllm";
import {
  executorKvSource,
  KvChecksumError,
  KvOfferServer,
  KvPuller,
  KvPayloadTooLargeError,
  layoutFromExecutor,
  ringFilesOf,
  type KvHandle,
  type KvTransportName,
} from "../src/index.js";
import { spawnPeer, type Peer, type PeerStats } from "./peer.js";
import { eventually, pseudoTokens } from "@trtd/test-support";
import { expectIdle, tiny, until } from "./helpers.js";

let ex: Executor;
let puller: KvPuller;
let nats: NatsServerHandle;
let peer: Peer;
let plane: RequestPlane;

async function expectPeerIdle(p: Peer): Promise<PeerStats> {
  const s = await p.stats();
  expect(s.server.active).toBe(0);
  expect(s.executor.pinnedExports).toBe(0);
  expect(s.executor.kvBlocksUsed).toBe(0);
  return s;
}

/** Context-only in the child, pull here, generation-only here. */
async function disaggregated(p: number[], maxNewTokens: number, sampling: SamplingOptions, transport: KvTransportName) {
  const { handle, firstToken } = await peer.call<{ handle: KvHandle; firstToken: number }>({ cmd: "offer", prompt: p, maxNewTokens, sampling });
  expect(handle.endpoints.map((e) => e.transport)).toContain(transport);
  const imp = ex.reserveKvImport(handle.numTokens);
  const r = await puller.pull(handle, imp, { transports: [transport] });
  expect(r.transport).toBe(transport);
  const gen = await ex.generate({ prompt: p, maxNewTokens, sampling, type: "generation_only", contextPhase: { firstToken, kvImport: imp } }).collect();
  return gen.tokens;
}

beforeAll(async () => {
  nats = await startNatsServer();
  ex = Executor.open(tiny, { threads: 1, kvTokensPerBlock: 8 });
  plane = await connect(nats.uri);
  puller = new KvPuller({ layout: layoutFromExecutor(ex.kvLayout()), requestPlane: plane });
  peer = await spawnPeer({ NATS_URI: nats.uri, NATS_MAX_BYTES: String(256 * 1024) });
});

afterAll(async () => {
  await peer?.exit();
  puller?.close();
  await plane?.close();
  await ex?.close();
  await nats?.stop();
});

describe("real executor KV between two processes", () => {
  const samplings: [string, SamplingOptions][] = [
    ["greedy", {}],
    ["seeded", { temperature: 0.9, topK: 40, topP: 0.95, seed: 77 }],
  ];
  for (const transport of ["tcp", "shm", "nats"] as KvTransportName[]) {
    for (const [name, sampling] of samplings) {
      it(`${transport}, ${name}: generation continues token-exact, nothing leaks on either side`, async () => {
        for (const [len, salt] of [[5, 1], [37, 2], [120, 3]] as const) {
          const p = pseudoTokens(len, salt);
          const agg = await ex.generate({ prompt: p, maxNewTokens: 16, sampling }).collect();
          const dis = await disaggregated(p, 16, sampling, transport);
          expect(dis).toEqual(agg.tokens);
        }
        expectIdle(ex);
        const s = await expectPeerIdle(peer);
        expect(s.server.released.failed ?? 0).toBe(0);
        expect(ringFilesOf(peer.pid)).toEqual([]);
      });
    }
  }

  it("the other way round: this process offers, the child pulls and continues generation", async () => {
    const server = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()), chunkBytes: 16 * 1024 });
    try {
      const p = pseudoTokens(50, 9);
      const sampling = { temperature: 0.7, seed: 5 };
      const agg = await ex.generate({ prompt: p, maxNewTokens: 12, sampling }).collect();
      const s = ex.generate({ prompt: p, maxNewTokens: 12, sampling, type: "context_only" });
      const first = await s.collect();
      const handle = server.offer(executorKvSource(ex, s.requestId));
      expect(handle.layout.fingerprint).toBe(ex.kvLayout().fingerprint); // one layout identity: the executor's
      expect(ex.stats().pinnedExports).toBe(1);
      const r = await peer.call<{ tokens: number[]; transport: string }>({ cmd: "pull-generate", handle, firstToken: first.tokens[0], prompt: p, maxNewTokens: 12, sampling });
      expect(r.tokens).toEqual(agg.tokens);
      expect(r.transport).toBe("shm"); // same host: the best shared transport
      await until(() => server.stats().active === 0);
      expect(server.stats().released.ack).toBe(1);
      expectIdle(ex);
      await expectPeerIdle(peer);
    } finally {
      await server.close();
    }
  });

  for (const transport of ["tcp", "shm", "nats"] as KvTransportName[]) {
    it(`${transport}: a corrupted chunk is detected before import; both sides release`, async () => {
      const before = (await peer.stats()).server.released.failed;
      const { handle } = await peer.call<{ handle: KvHandle }>({ cmd: "offer", prompt: pseudoTokens(64, 11), maxNewTokens: 4, corrupt: true });
      const imp = ex.reserveKvImport(handle.numTokens);
      const err = await puller.pull(handle, imp, { transports: [transport] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvChecksumError);
      expect((err as KvChecksumError).code).toBe("KV_CHECKSUM_MISMATCH");
      expect(imp.state).toBe("aborted");
      expectIdle(ex);
      const s = await expectPeerIdleEventually(peer);
      expect(s.server.released.failed).toBe(before + 1);
    });
  }

  it("nats refuses KV above its limit at once with a typed error (no timeout) and the offer is released", async () => {
    const { handle } = await peer.call<{ handle: KvHandle }>({ cmd: "offer", prompt: pseudoTokens(600, 12), maxNewTokens: 2 });
    expect(handle.bytes).toBeGreaterThan(256 * 1024);
    const imp = ex.reserveKvImport(handle.numTokens);
    const t0 = Date.now();
    const err = await puller.pull(handle, imp, { transports: ["nats"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvPayloadTooLargeError);
    expect(Date.now() - t0).toBeLessThan(2000);
    expectIdle(ex);
    await expectPeerIdleEventually(peer);
  });
});

async function expectPeerIdleEventually(p: Peer): Promise<PeerStats> {
  const idle = async () => {
    const s = await p.stats();
    return s.server.active === 0 && s.executor.pinnedExports === 0;
  };
  await eventually(idle, 5000, "the peer to release its offer", { intervalMs: 20, retryOnError: false });
  return expectPeerIdle(p);
}
