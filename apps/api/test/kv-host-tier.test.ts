// The host KV tier (--kv-host-cache-gb) seen from the api, with a real decode worker on the in-process request plane:
// the worker publishes the tier's figures with its load and /metrics shows them per instance; a prefix that moved
// from the worker's pool to its tier stays in the api's KV index (the worker still holds it: no "removed" event), and
// when it comes back it is a hit counted as a host hit.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, modelDir } from "@trtd/test-support";
import { EXECUTOR_DEFAULTS } from "@trtd/apps-common";
import { startDecodeWorker, type RunningDecodeWorker } from "@trtd/decode";
import { createInProcessPlane, type RequestPlane } from "@trtd/request-plane";
import { createApiMetrics, KvIndex, RequestPlaneWorkers } from "../src/index.js";
import { generateRequest as req } from "./support/router-requests.js";

const T = 16;
/** A 49-token prompt: 3 full blocks and one token. */
const promptOf = (salt: number): number[] => Array.from({ length: 49 }, (_, i) => 5000 + salt * 101 + i);

let plane: RequestPlane;
let decode: RunningDecodeWorker;
let workers: RequestPlaneWorkers;
let ix: KvIndex;

beforeAll(async () => {
  plane = createInProcessPlane({ leaseMs: 600 });
  // 10 blocks of 16: three 49-token prompts fill 9 with cache, a fourth evicts the first to the tier (1 MiB).
  decode = await startDecodeWorker({
    plane,
    executor: { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: 10, kvTokensPerBlock: T, kvHostCacheGb: 1 / 1024 },
  });
  workers = new RequestPlaneWorkers(plane);
  await workers.waitForDecode(1, 5000);
  ix = new KvIndex(workers, { pollMs: 20, roles: ["decode"] });
}, 60_000);
afterAll(async () => {
  await ix?.close();
  workers?.close();
  await decode?.stop(1000);
  await plane?.close();
});

const runOn = async (tokens: number[]) => {
  for await (const _ of workers.decode(decode.instanceId, req(tokens, { maxTokens: 1 }), new AbortController().signal));
};

describe("host KV tier on a decode worker", () => {
  it("a prefix moved to the tier stays in the api's index, comes back as a host hit, and /metrics shows the tier", async () => {
    const ex = decode.executor;
    const bytesPerBlock = ex.kvLayout().bytesPerBlock;
    expect(ex.stats().kvHostBlocksTotal).toBe(Math.floor(2 ** 20 / bytesPerBlock));
    const [a, b, c, d] = [1, 2, 3, 4].map(promptOf);
    for (const p of [a, b, c, d]) await runOn(p!);
    expect(ex.stats()).toMatchObject({ kvHostBlocksHeld: 3, kvHostStoredBlocks: 3, kvHostHitBlocks: 0 });
    // The index, rebuilt from the worker's events and snapshot, still counts a's 3 blocks on this worker.
    await ix.refresh();
    expect(ix.overlap(decode.instanceId, [...a!, 7, 8, 9]).cachedTokens).toBe(3 * T);
    expect(ix.blockCount(decode.instanceId)).toBe(ex.stats().kvBlocksCached + ex.stats().kvHostBlocksHeld);
    // a again: its prefix comes back from the tier.
    const before = ex.stats().prefixCacheHitTokens;
    await runOn(a!);
    const s = ex.stats();
    expect({ hit: s.prefixCacheHitTokens - before, host: s.kvHostHitBlocks }).toEqual({ hit: 3 * T, host: 3 });
    // The published load carries the tier's figures; /metrics shows them for this instance.
    const published = () => workers.instances("decode").flatMap((w) => (w.load ? [{ component: "decode", instance: w.id, load: w.load }] : []));
    await eventually(
      () => {
        const l = published().find((p) => p.instance === decode.instanceId)?.load;
        const now = ex.stats();
        return l?.kvHostHitBlocks === now.kvHostHitBlocks && l.kvHostBlocksHeld === now.kvHostBlocksHeld && l.kvHostBlocksTotal === now.kvHostBlocksTotal;
      },
      5000,
      "the published load to carry the host tier's figures",
      { intervalMs: 20 },
    );
    const now = ex.stats();
    const text = createApiMetrics(published).registry.render();
    const labels = `component="decode",instance="${decode.instanceId}"`;
    expect(text).toContain(`trtd_worker_kv_host_blocks{${labels},state="held"} ${now.kvHostBlocksHeld}`);
    expect(text).toContain(`trtd_worker_kv_host_blocks{${labels},state="total"} ${now.kvHostBlocksTotal}`);
    expect(text).toContain(`trtd_worker_kv_host_hit_blocks_total{${labels}} 3`);
    expect(ex.stats().kvBlocksUsed).toBe(0);
  });
});
