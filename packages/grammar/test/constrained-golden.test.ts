// Constrained decoding gives the same tokens as before the mask path was made faster: 40 constrained requests
// (the bench's schemas) decoding together, on fixed seeds, equal token for token what commit 6acd518 produced
// (test/golden/constrained-tokens.json, written by test/golden/record-constrained.ts with that commit's executor),
// both when the masks come in time (drawn in the step that computed the logits) and when every mask comes late
// (the logits held aside until it arrives). Every output also parses as JSON that ajv accepts. Nothing leaks.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { modelDir } from "@trtd/test-support";
import { Executor, type TokenConstraint } from "@trtd/trtllm";
import { Tokenizer } from "@trtd/tokenizer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GrammarCompiler, type GrammarMatcher } from "../src/index.js";
import { goldenSpec, runGolden, type GoldenOutput } from "./golden/constrained-requests.js";

const golden = JSON.parse(readFileSync(new URL("./golden/constrained-tokens.json", import.meta.url), "utf8")) as {
  modelSha256: string;
  outputs: GoldenOutput[];
};

let tok: Tokenizer;
let ex: Executor;
let compiler: GrammarCompiler;

beforeAll(async () => {
  tok = Tokenizer.fromModelDir(modelDir);
  ex = Executor.open(modelDir, { maxBatchSize: 64, kvBlockCount: 4096 });
  compiler = await GrammarCompiler.create(tok, { vocabSize: ex.model.vocabSize });
});
afterAll(async () => {
  compiler?.free();
  tok?.free();
  await ex?.close();
});

/** Test double around a real matcher: each mask is handed over only after `delayMs`, so it misses its step (the row's logits are held). */
function lateMasks(m: GrammarMatcher, delayMs: number): TokenConstraint {
  return {
    acceptToken: (t) => m.acceptToken(t),
    isTerminated: () => m.isTerminated(),
    nextTokenMask: async () => {
      const mask = await m.nextTokenMask();
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return mask;
    },
  };
}

function expectGolden(outputs: GoldenOutput[]): void {
  expect(outputs).toHaveLength(golden.outputs.length);
  outputs.forEach((o, i) => expect(o, `request ${i}`).toEqual(golden.outputs[i]));
  const ajv = new Ajv2020({ strict: false });
  outputs.forEach((o, i) => {
    if (o.finishReason !== "stop_token") return; // cut by max tokens: a prefix of a document
    const spec = goldenSpec(i);
    const schema = spec.type === "json_schema" ? spec.schema : { type: "object" };
    expect(ajv.validate(schema, JSON.parse(tok.decode(o.tokens.slice(0, -1)))), `request ${i}: ${ajv.errorsText()}`).toBe(true);
  });
  const stats = ex.stats();
  expect({ kvBlocksUsed: stats.kvBlocksUsed, activeRequests: stats.activeRequests, liveMatchers: compiler.cacheStats.liveMatchers }).toEqual({
    kvBlocksUsed: 0,
    activeRequests: 0,
    liveMatchers: 0,
  });
}

describe("constrained decoding, tokens equal to the recorded ones (fixed seeds)", () => {
  it("the recording was made with this models/tiny", () => {
    const sha = createHash("sha256").update(readFileSync(join(modelDir, "model.safetensors"))).digest("hex");
    expect(sha, "models/tiny changed: re-record with test/golden/record-constrained.ts on the commit named in the file").toBe(golden.modelSha256);
  });

  it("40 requests together, masks in time: the recorded tokens", async () => {
    const outputs = await runGolden(ex, tok, compiler);
    expect(outputs.filter((o) => o.finishReason === "stop_token").length).toBeGreaterThan(10); // documents end, not only cut
    expectGolden(outputs);
  });

  it("40 requests together, every mask late (held logits): the recorded tokens", async () => {
    const outputs = await runGolden(ex, tok, compiler, (m) => lateMasks(m, 50)); // longer than a step here
    expectGolden(outputs);
  });
});
