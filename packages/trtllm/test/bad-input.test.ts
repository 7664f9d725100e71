// Bad input gets a clear typed error and disturbs nothing else: the executor keeps serving afterwards.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Executor,
  InvalidArgumentError,
  LibraryLoadError,
  ModelLoadError,
  NotFoundError,
  type GenerateRequest,
} from "../src/index.js";
import { pseudoTokens } from "@trtd/test-support";
import { expectIdle, openExecutor, openTiny, run, skipSuite, testExecutor, tinyDir } from "./helpers.js";

const skip = skipSuite("bad-input");

let ex: Executor;
let scratch: string;
beforeAll(() => {
  ex = openTiny({ maxContextLength: 256 });
  scratch = mkdtempSync(join(tmpdir(), "trtllm-bad-"));
});
afterAll(async () => {
  await ex?.close();
  rmSync(scratch, { recursive: true, force: true });
});

function modelDir(name: string, files: Record<string, string | Buffer>): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, body] of Object.entries(files)) writeFileSync(join(dir, f), body);
  return dir;
}

describe.skipIf(skip)("bad model directories", () => {
  const config = readFileSync(join(tinyDir, "config.json"), "utf8");
  const cases: [string, () => string, RegExp][] = [
    ["missing directory", () => join(scratch, "nope"), /not found/],
    ["no config.json", () => modelDir("empty", {}), /missing config\.json/],
    ["garbage config.json", () => modelDir("garbage", { "config.json": "{ not json" }), /config\.json: invalid JSON/],
    ["config without dimensions", () => modelDir("nodims", { "config.json": "{}" }), /missing "vocab_size"/],
    ["no weights", () => modelDir("noweights", { "config.json": config }), /cannot open .*model\.safetensors/],
    ["garbage weights", () => modelDir("garbageweights", { "config.json": config, "model.safetensors": Buffer.from("garbage garbage garbage") }), /safetensors/],
    [
      "truncated weights",
      () => {
        const dir = modelDir("truncated", { "config.json": config });
        const full = readFileSync(join(tinyDir, "model.safetensors"));
        writeFileSync(join(dir, "model.safetensors"), full.subarray(0, full.length >> 1));
        return dir;
      },
      /out of range/,
    ],
    [
      "wrong tensor shape",
      () => {
        const dir = modelDir("shape", {});
        copyFileSync(join(tinyDir, "model.safetensors"), join(dir, "model.safetensors"));
        writeFileSync(join(dir, "config.json"), JSON.stringify({ ...JSON.parse(config), hidden_size: 32 }));
        return dir;
      },
      /shape/,
    ],
    [
      "head_dim 8 (the weights' shapes differ too)",
      () => {
        const dir = modelDir("headdim8", {});
        copyFileSync(join(tinyDir, "model.safetensors"), join(dir, "model.safetensors"));
        writeFileSync(join(dir, "config.json"), JSON.stringify({ ...JSON.parse(config), hidden_size: 32, head_dim: 8 }));
        return dir;
      },
      // The reference executor runs any even head_dim and finds the shapes wrong; the CUDA executor's attention
      // kernels take head_dim 16, 32, 64, 128 or 256, which it checks before it reads a weight.
      testExecutor === "cuda" ? /head_dim 8 is not supported/ : /shape/,
    ],
  ];
  for (const [name, make, message] of cases) {
    it(`${name} → ModelLoadError`, () => {
      const dir = make();
      let err: unknown;
      try {
        void openExecutor(dir, { threads: 1 }).close();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ModelLoadError);
      expect((err as ModelLoadError).code).toBe("MODEL_LOAD");
      expect((err as Error).message).toMatch(message);
    });
  }

  it("bad options and a missing library are typed errors", () => {
    expect(() => openTiny({ maxBatchSize: 0 })).toThrow(InvalidArgumentError);
    expect(() => openTiny({ maxBatchSize: 0 })).toThrow(/max_batch_size must be in \[1, 4096\]/); // abi_common's rule, both executors
    expect(() => openTiny({ kvTokensPerBlock: 0 })).toThrow(/kv_tokens_per_block must be in/);
    expect(() => openTiny({ kvTokensPerBlock: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => openTiny({ maxContextLength: 1 << 20 })).toThrow(/exceeds the model/);
    expect(() => Executor.open(tinyDir, { library: join(scratch, "libnothing.so") })).toThrow(LibraryLoadError);
  });

  it("a device the executor cannot use is refused", () => {
    if (testExecutor === "cuda") {
      expect(() => openTiny({ deviceId: -1 })).toThrow(InvalidArgumentError);
      expect(() => openTiny({ deviceId: -1 })).toThrow(/needs device_id >= 0/);
      expect(() => openTiny({ deviceId: 4096 })).toThrow(/device_id 4096 is out of range/);
    } else {
      expect(() => openTiny({ deviceId: 1 })).toThrow(/device_id must be -1 or 0/);
    }
  });
});

describe.skipIf(skip)("bad requests", () => {
  const ok: GenerateRequest = { prompt: [1, 2, 3], maxNewTokens: 4 };
  const cases: [string, GenerateRequest, RegExp][] = [
    ["token id >= vocab", { ...ok, prompt: [1, 100352, 3] }, /prompt token id 100352 is out of range/],
    ["negative token id", { ...ok, prompt: [-1] }, /out of range/],
    ["non-integer token id", { ...ok, prompt: [1.5] as number[] }, /prompt\[0\] is not a token id/],
    ["empty prompt", { ...ok, prompt: [] }, /prompt is empty/],
    ["prompt longer than the context", { ...ok, prompt: pseudoTokens(256, 1) }, /256 tokens; the context holds 256/],
    ["zero max tokens", { ...ok, maxNewTokens: 0 }, /max_new_tokens must be >= 1/],
    ["negative temperature", { ...ok, sampling: { temperature: -1 } }, /temperature/],
    ["NaN temperature", { ...ok, sampling: { temperature: NaN } }, /temperature/],
    ["top_p 0", { ...ok, sampling: { topP: 0 } }, /top_p/],
    ["top_p > 1", { ...ok, sampling: { topP: 1.5 } }, /top_p/],
    ["negative top_k", { ...ok, sampling: { topK: -3 } }, /top_k/],
    ["negative seed", { ...ok, sampling: { seed: -1 } }, /seed/],
    ["end id >= vocab", { ...ok, endId: 200000 }, /end id/],
    ["stop token >= vocab", { ...ok, stopTokenIds: [5, 100352] }, /stop token id/],
    ["generation-only without context phase", { ...ok, type: "generation_only" }, /needs context phase/],
    ["context phase on a normal request", { ...ok, contextPhase: { firstToken: 1 } }, /only for generation-only/],
    ["generation-only without a KV import", { ...ok, type: "generation_only", contextPhase: { firstToken: 1 } }, /kv_import_id/],
    ["unknown type", { ...ok, type: "both" as never }, /unknown request type/],
  ];
  for (const [name, req, message] of cases) {
    it(`${name} → InvalidArgumentError`, async () => {
      expect(() => ex.generate(req)).toThrow(InvalidArgumentError);
      expect(() => ex.generate(req)).toThrow(message);
      // nothing else disturbed: a good request still runs
      expect((await run(ex, ok)).tokens).toHaveLength(4);
      expectIdle(ex);
    });
  }

  it("unknown ids are NotFoundError", () => {
    expect(() => ex.exportKv(987654)).toThrow(NotFoundError);
    expect(ex.cancel(987654)).toBe(false);
    expect(() => ex.reserveKvImport(0)).toThrow(InvalidArgumentError);
    expect(() => ex.computeLogits([100352])).toThrow(InvalidArgumentError);
  });

  it("generation stops at the end of the context with finishReason length", async () => {
    const r = await run(ex, { prompt: pseudoTokens(250, 2), maxNewTokens: 100 });
    expect(r.tokens).toHaveLength(6);
    expect(r.finishReason).toBe("length");
    expectIdle(ex);
  });

  it("endId and stop tokens end generation and are the last output token", async () => {
    const base = await run(ex, { prompt: [7, 8, 9], maxNewTokens: 12 });
    const end = base.tokens[4];
    const firstAt = base.tokens.indexOf(end);
    const r = await run(ex, { prompt: [7, 8, 9], maxNewTokens: 12, endId: end });
    expect(r).toMatchObject({ finishReason: "end_id", tokens: base.tokens.slice(0, firstAt + 1) });
    const s = await run(ex, { prompt: [7, 8, 9], maxNewTokens: 12, stopTokenIds: [base.tokens[2]] });
    expect(s.finishReason).toBe("stop_token");
    expect(s.tokens.at(-1)).toBe(base.tokens[2]);
    expectIdle(ex);
  });
});
