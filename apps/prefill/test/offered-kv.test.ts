// The prefill handler's offer path (executorKvSource → KvOfferServer.offer) under kv-transfer's staging
// rule, measured by nothing but calls: the reference executor's KV is staged and checksummed at offer time (a v1
// handle with its digest); an executor with a device path gets an offer whose KV is staged only when a host pull
// needs it. The device path is DeviceExecutorTestDouble's (no GPU here): the real reference executor plus a device
// id and a device descriptor of its export, as the CUDA executor has; everything else is the real code.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { modelDir } from "@trtd/test-support";
import type { GenerateRequest, PrefillResult } from "@trtd/apps-common";
import { executorKvSink, KvOfferServer, KvPuller, layoutFromExecutor, parseKvHandle } from "@trtd/kv-transfer";
import type { RequestContext } from "@trtd/request-plane";
import { Executor } from "@trtd/trtllm";
import { createPrefillHandler } from "../src/index.js";

const PROMPT = Array.from({ length: 60 }, (_, i) => 700 + i * 11);

/**
 * DeviceExecutorTestDouble: the real executor, except that it names a device and its exports describe themselves
 * on it (a fixed descriptor). `stagings` counts the exports' segments() calls, i.e. what would be the CUDA
 * executor's device → pinned host copies.
 */
function deviceExecutorTestDouble(ex: Executor) {
  const calls = { stagings: 0, descriptors: 0 };
  const executor = new Proxy(ex, {
    get(target, prop) {
      if (prop === "deviceUuid") return () => "GPU-prefill-test-double";
      if (prop === "exportKv") {
        return (requestId: number) => {
          const kv = target.exportKv(requestId);
          return {
            numTokens: kv.numTokens,
            bytes: kv.bytes,
            segments: () => {
              calls.stagings++;
              return kv.segments();
            },
            release: () => kv.release(),
            deviceDescriptor: () => {
              calls.descriptors++;
              return new Uint8Array(64).fill(7);
            },
          };
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { executor, calls };
}

let ex: Executor;
let offers: KvOfferServer;
let puller: KvPuller;
beforeAll(async () => {
  ex = Executor.open(modelDir, { threads: 1, kvTokensPerBlock: 8 });
  offers = await KvOfferServer.start({ layout: layoutFromExecutor(ex.kvLayout()) });
  puller = new KvPuller({ layout: layoutFromExecutor(ex.kvLayout()) });
});
afterAll(async () => {
  puller?.close();
  await offers?.close();
  await ex?.close();
});

async function prefill(executor: Executor): Promise<PrefillResult> {
  const handler = createPrefillHandler({ executor, offers });
  const req: GenerateRequest = { id: "offered-kv", tokens: PROMPT, sampling: { temperature: 0, topP: 1, topK: 0 }, maxTokens: 6, stopTokenIds: [], deadline: Date.now() + 30_000 };
  const ctx = { signal: new AbortController().signal } as RequestContext;
  return (await handler(req, ctx)) as PrefillResult;
}

/** Pulls the offer into a plain import of the same executor and continues: the generation_only tokens. */
async function continueFrom(r: PrefillResult) {
  const handle = parseKvHandle(r.kvHandle);
  const imp = ex.reserveKvImport(handle.numTokens);
  const pulled = await puller.pull(handle, executorKvSink(ex, imp));
  const tokens = (await ex.generate({ prompt: PROMPT, maxNewTokens: 6, type: "generation_only", contextPhase: { firstToken: r.firstToken, kvImport: imp } }).collect()).tokens;
  return { transport: pulled.transport, tokens };
}

describe("prefill's offer path and host staging", () => {
  it("reference executor: staged and checksummed at offer time (v1 handle with digest), continues token-exact", async () => {
    const agg = (await ex.generate({ prompt: PROMPT, maxNewTokens: 6 }).collect()).tokens;
    const stagedBefore = offers.stats().staged;
    const r = await prefill(ex);
    const handle = parseKvHandle(r.kvHandle);
    expect(handle.v).toBe(1);
    expect(handle.checksum.digest).toMatch(/^[0-9a-f]{8}$/);
    expect(handle.endpoints.map((e) => e.transport)).not.toContain("cuda-ipc");
    expect(handle.bytes).toBe(r.kvBytes);
    const { transport, tokens } = await continueFrom(r);
    expect(transport).toBe("shm");
    expect(tokens).toEqual(agg); // generation_only yields the first token too
    expect(offers.stats().staged).toBe(stagedBefore); // nothing left to stage on pull
  });

  it("an executor with a device path: offered without host staging, staged once by a host pull, token-exact", async () => {
    const agg = (await ex.generate({ prompt: PROMPT, maxNewTokens: 6 }).collect()).tokens;
    const { executor, calls } = deviceExecutorTestDouble(ex);
    const r = await prefill(executor);
    const handle = parseKvHandle(r.kvHandle);
    expect(calls).toEqual({ stagings: 0, descriptors: 1 });
    expect(handle.v).toBe(2);
    expect(handle.checksum.digest).toBeUndefined();
    expect(handle.endpoints[0]).toMatchObject({ transport: "cuda-ipc", deviceUuid: "GPU-prefill-test-double" });
    expect(handle.bytes).toBe(r.kvBytes);
    expect(ex.stats().pinnedExports).toBe(1);
    // a plain import (the reference executor has no device of its own) pulls over shm: the host copy is made now
    const { transport, tokens } = await continueFrom(r);
    expect(transport).toBe("shm");
    expect(calls).toEqual({ stagings: 1, descriptors: 1 });
    expect(tokens).toEqual(agg); // generation_only yields the first token too
    expect(offers.stats().staged).toBeGreaterThanOrEqual(1);
    expect(ex.stats().pinnedExports).toBe(0);
  });

  it("an unpulled device offer is released (withdrawn) without ever being staged, its export unpinned", async () => {
    const { executor, calls } = deviceExecutorTestDouble(ex);
    const before = offers.stats().released.withdrawn;
    const r = await prefill(executor);
    expect(ex.stats().pinnedExports).toBe(1);
    expect(offers.withdraw(parseKvHandle(r.kvHandle).id)).toBe(true);
    expect(offers.stats().released.withdrawn).toBe(before + 1);
    expect(calls.stagings).toBe(0);
    const s = ex.stats();
    expect({ pinned: s.pinnedExports, used: s.kvBlocksUsed, active: s.activeRequests }).toEqual({ pinned: 0, used: 0, active: 0 });
  });
});
