// The "engine" KV transport end to end, on CPU: prefill and decode workers run on libtrtd_engine_double.so, a
// TEST DOUBLE of an engine that moves KV itself (packages/trtllm/shim/test/engine_transfer_double.cpp: the
// TensorRT-LLM shim's KV behaviour over the reference executor). exportKv/reserveKvImport answer
// EngineNativeTransferError, so the offer carries the context phase state and the decode side passes it on.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { modelDir, repoRoot } from "@trtd/test-support";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXECUTOR_DEFAULTS, Endpoints, type DecodeChunk, type DecodeRequest, type GenerateRequest, type PrefillResult } from "@trtd/apps-common";
import { startPrefillWorker, type RunningPrefillWorker } from "@trtd/prefill";
import { createInProcessPlane, type EndpointClient, type RequestPlane } from "@trtd/request-plane";
import { EngineNativeTransferError } from "@trtd/trtllm";
import { startDecodeWorker, type RunningDecodeWorker } from "../src/index.js";
import { IDLE, collectFrom, idleStats, tokensOf, until, wireRequest } from "./support/workers.js";

const repo = repoRoot;
const executor = { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: 256 };

let tmp: string;
const logs: string[] = [];
let plane: RequestPlane;
let decode: RunningDecodeWorker;
let prefill: RunningPrefillWorker;
let decodeClient: EndpointClient<DecodeRequest, DecodeChunk>;
let prefillClient: EndpointClient<GenerateRequest, PrefillResult>;

const request = wireRequest;
const collect = (req: DecodeRequest) => collectFrom(decodeClient, decode.instanceId, req);
const idle = idleStats;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "trtd-engine-double-"));
  const lib = join(tmp, "libtrtd_engine_double.so");
  execFileSync("g++", [
    "-std=c++17", "-O1", "-shared", "-fPIC", "-fvisibility=hidden",
    "-I", join(repo, "packages/trtllm/include"),
    join(repo, "packages/trtllm/shim/test/engine_transfer_double.cpp"),
    "-o", lib, "-ldl",
  ]);
  process.env.TRTD_ENGINE_DOUBLE_INNER = join(repo, "packages/trtllm/build/libtrtd_ref.so");
  process.env.TRTD_EXECUTOR_LIB = lib;
  plane = createInProcessPlane();
  decode = await startDecodeWorker({ plane, executor, log: (line) => logs.push(line) });
  prefill = await startPrefillWorker({ plane, executor });
  decodeClient = plane.endpoint(Endpoints.namespace, "decode", "generate").client();
  prefillClient = plane.endpoint(Endpoints.namespace, "prefill", "generate").client();
});

afterAll(async () => {
  await prefill?.stop(1000);
  await decode?.stop(1000);
  await plane?.close();
  delete process.env.TRTD_EXECUTOR_LIB;
  delete process.env.TRTD_ENGINE_DOUBLE_INNER;
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const PROMPT = Array.from({ length: 40 }, (_, i) => 2000 + i * 53);

describe("engine KV transport (test double of an engine that moves KV itself)", () => {
  it("runs on the double: no KV export or import through the binding", () => {
    expect(decode.executor.version).toMatch(/^trtd-engine-double/);
    expect(() => decode.executor.reserveKvImport(8)).toThrow(EngineNativeTransferError);
  });

  it("offers the context state, continues from it, and matches aggregated output; the ack frees the offer", async () => {
    for (const sampling of [{ temperature: 0, topP: 1, topK: 0 }, { temperature: 0.9, topP: 0.95, topK: 40, seed: 5 }]) {
      const req = request(PROMPT, { sampling, maxTokens: 20 });
      const aggregated = tokensOf(await collect(req));
      const p = await prefillClient.request(req, { instanceId: prefill.instanceId });
      expect(p.kvBytes).toBe(0);
      const transports = (p.kvHandle as { endpoints: { transport: string }[] }).endpoints.map((e) => e.transport);
      expect(transports).toContain("engine");
      expect(prefill.executor.stats().pinnedExports).toBe(1); // held until decode acknowledges
      const chunks = await collect({ ...req, prefill: p });
      expect(chunks[0].mode).toBe("disaggregated");
      expect(tokensOf(chunks)).toEqual(aggregated);
      await until(() => prefill.executor.stats().pinnedExports === 0, 5000, "the prefill worker to release its pinned KV");
    }
    expect(idle(prefill)).toEqual(IDLE);
    expect(idle(decode)).toEqual(IDLE);
  });

  it("serves a migrated request on an engine without a draw offset (as the TRT-LLM shim): fresh draw count, logged", async () => {
    const sampling = { temperature: 0.9, topP: 0.95, topK: 40, seed: 5 };
    const whole = tokensOf(await collect(request(PROMPT, { sampling, maxTokens: 12 })));
    const k = 4;
    const resumed = request([...PROMPT, ...whole.slice(0, k)], { sampling, maxTokens: 12 - k });
    const fresh = tokensOf(await collect(resumed)); // what the fallback draws: the continuation restarted at n = 0
    const before = logs.length;
    const chunks = await collect({ ...resumed, generatedOffset: k });
    expect(tokensOf(chunks)).toEqual(fresh);
    expect(chunks.at(-1)!.finishReason).toBe("length");
    expect(logs.slice(before).join("\n")).toMatch(/cannot resume draws at 4/);
    expect(idle(decode)).toEqual(IDLE);
  });

  it("releases the context state when decode declines it (first token ends the request)", async () => {
    const req = request(PROMPT, { maxTokens: 1 });
    const p = await prefillClient.request(req, { instanceId: prefill.instanceId });
    const chunks = await collect({ ...req, prefill: p });
    expect(tokensOf(chunks)).toEqual([p.firstToken]);
    await until(() => prefill.executor.stats().pinnedExports === 0, 5000, "the prefill worker to release its pinned KV");
    expect(idle(prefill)).toEqual(IDLE);
    expect(idle(decode)).toEqual(IDLE);
  });
});
