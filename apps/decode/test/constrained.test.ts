// Constrained requests (a grammar in the wire request) through real workers on the in-process request plane:
// aggregated, disaggregated (the prefill worker samples the first token under the first mask, the decode worker's
// own matcher accepts it and goes on) and migrated (the matcher replays the tokens generated before) all give the
// same tokens, and those decode to JSON that ajv validates against the schema. Every matcher is freed and every KV
// block comes back.
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { modelDir } from "@trtd/test-support";
import { Tokenizer } from "@trtd/tokenizer";
import { EXECUTOR_DEFAULTS, Endpoints, type DecodeChunk, type DecodeRequest, type GenerateRequest, type PrefillResult } from "@trtd/apps-common";
import { startPrefillWorker, type RunningPrefillWorker } from "@trtd/prefill";
import { createInProcessPlane, type EndpointClient, type RequestPlane } from "@trtd/request-plane";
import { startDecodeWorker, type RunningDecodeWorker } from "../src/index.js";
import { IDLE, collectFrom, idleStats, tokensOf, wireRequest } from "./support/workers.js";

const executor = { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: 256 };
let plane: RequestPlane;
let decode: RunningDecodeWorker;
let prefill: RunningPrefillWorker;
let tok: Tokenizer;
let decodeClient: EndpointClient<DecodeRequest, DecodeChunk>;
let prefillClient: EndpointClient<GenerateRequest, PrefillResult>;

beforeAll(async () => {
  plane = createInProcessPlane();
  decode = await startDecodeWorker({ plane, executor });
  prefill = await startPrefillWorker({ plane, executor });
  tok = Tokenizer.fromModelDir(modelDir);
  decodeClient = plane.endpoint(Endpoints.namespace, "decode", "generate").client();
  prefillClient = plane.endpoint(Endpoints.namespace, "prefill", "generate").client();
});
afterAll(async () => {
  tok?.free();
  await prefill?.stop(1000);
  await decode?.stop(1000);
  await plane?.close();
});

const schema = {
  type: "object",
  properties: { mood: { enum: ["calm", "busy"] }, level: { type: "integer", minimum: 0, maximum: 9 }, tags: { type: "array", items: { type: "boolean" }, maxItems: 2 } },
  required: ["mood", "level", "tags"],
  additionalProperties: false,
};
const grammar = { type: "json_schema" as const, schema, strict: true };
const PROMPT = Array.from({ length: 30 }, (_, i) => 2000 + i * 41);
const collect = (req: DecodeRequest) => collectFrom(decodeClient, decode.instanceId, req);

function expectValidJson(tokens: number[], stop: readonly number[]) {
  expect(stop).toContain(tokens.at(-1)); // ended by the model's EOS, which the grammar allowed only at the end
  const text = tok.decode(tokens.slice(0, -1));
  const ajv = new Ajv2020({ strict: false });
  expect(ajv.validate(schema, JSON.parse(text)), `${text}: ${ajv.errorsText()}`).toBe(true);
}

describe("constrained requests through the workers", () => {
  it("aggregated, disaggregated and migrated give the same valid JSON (greedy and seeded)", async () => {
    for (const sampling of [{ temperature: 0, topP: 1, topK: 0 }, { temperature: 1, topP: 1, topK: 0, seed: 5 }, { temperature: 0.8, topP: 0.9, topK: 50, seed: 6 }]) {
      const req = wireRequest(PROMPT, { sampling, maxTokens: 80, stopTokenIds: [...tok.eosTokenIds], grammar });
      const aggregated = tokensOf(await collect(req));
      expectValidJson(aggregated, tok.eosTokenIds);

      const p = await prefillClient.request(req, { instanceId: prefill.instanceId });
      expect(p.firstToken).toBe(aggregated[0]);
      const chunks = await collect({ ...req, prefill: p });
      expect(chunks[0].mode).toBe("disaggregated");
      expect(tokensOf(chunks)).toEqual(aggregated);

      // Migration after k tokens: the prompt carries them, the matcher replays them, the draws resume at k.
      const k = Math.floor(aggregated.length / 2);
      const migrated = tokensOf(
        await collect({ ...req, tokens: [...PROMPT, ...aggregated.slice(0, k)], generatedOffset: k, maxTokens: req.maxTokens - k }),
      );
      expect([...aggregated.slice(0, k), ...migrated]).toEqual(aggregated);
    }
    expect(idleStats(decode)).toEqual(IDLE);
    expect(idleStats(prefill)).toEqual(IDLE);
    expect(decode.grammars.stats()).toMatchObject({ liveMatchers: 0, cachedGrammars: 1, misses: 1 });
    expect(prefill.grammars.stats()).toMatchObject({ liveMatchers: 0, cachedGrammars: 1, misses: 1 });
  });

  it("a grammar the worker cannot compile fails the request with the reason, and leaks nothing", async () => {
    const bad = { type: "json_schema" as const, schema: { type: "object", properties: { a: { $ref: "#/$defs/none" } }, required: ["a"] } };
    const req = wireRequest(PROMPT, { maxTokens: 8, stopTokenIds: [...tok.eosTokenIds], grammar: bad });
    await expect(collect(req)).rejects.toThrow(/grammar/);
    await expect(prefillClient.request(req, { instanceId: prefill.instanceId })).rejects.toThrow(/grammar/);
    expect(idleStats(decode)).toEqual(IDLE);
    expect(idleStats(prefill)).toEqual(IDLE);
    expect(decode.grammars.stats().liveMatchers).toBe(0);
  });
});
