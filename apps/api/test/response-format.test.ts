// response_format through the real system (api, in-process request plane, decode worker on models/tiny with the
// reference executor, the real tokenizer and @trtd/grammar): the random-weight model's output is JSON valid against
// the schema, checked with ajv and through the official client's chat.completions.parse with a zod schema, whole
// and streamed; bad formats get OpenAI error JSON (400) naming the field; nothing leaks (executor stats back to
// zero, every matcher freed).
import { Ajv2020 } from "ajv/dist/2020.js";
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { eventually } from "@trtd/test-support";
import { startRealApi, type RealApi } from "./support/real-api.js";

let api: RealApi;
let client: OpenAI;
const ajv = new Ajv2020({ strict: false });

beforeAll(async () => {
  api = await startRealApi();
  client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
});
afterAll(async () => {
  await api?.stop();
});

async function expectIdle(): Promise<void> {
  await eventually(() => api.decode.executor.stats().activeRequests === 0, 5000, "the decode executor to go idle");
  const s = api.decode.executor.stats();
  expect({ active: s.activeRequests, queued: s.queuedRequests, used: s.kvBlocksUsed }).toEqual({ active: 0, queued: 0, used: 0 });
  expect(api.decode.grammars.stats().liveMatchers).toBe(0);
}

async function post(body: Record<string, unknown>) {
  const res = await fetch(`${api.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "Answer in JSON." }], ...body }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

// Bounded documents (enums, small integer ranges, booleans, short arrays), so every generation ends within max_tokens.
const SCHEMAS: Record<string, unknown>[] = [
  { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false },
  { type: "object", properties: { color: { enum: ["red", "green", "blue"] }, n: { type: "integer", minimum: 0, maximum: 9 } }, required: ["color", "n"], additionalProperties: false },
  { type: "object", properties: { tags: { type: "array", items: { enum: ["a", "b"] }, maxItems: 3 }, done: { type: "boolean" } }, required: ["tags", "done"], additionalProperties: false },
  { type: "array", items: { type: "integer", minimum: 0, maximum: 9 }, minItems: 1, maxItems: 3 },
  { type: "object", properties: { point: { type: "object", properties: { x: { enum: [1, 2] }, y: { type: "null" } }, required: ["x", "y"], additionalProperties: false } }, required: ["point"], additionalProperties: false },
];

describe("response_format json_schema on the random-weight tiny model", () => {
  it("every output validates against its schema (ajv): 5 schemas x 4 samplings, strict", async () => {
    for (const [i, schema] of SCHEMAS.entries()) {
      const validate = ajv.compile(schema);
      for (const [k, sampling] of [{ temperature: 0 }, { temperature: 1, seed: 1 }, { temperature: 1, seed: 2 }, { temperature: 0.7, top_p: 0.9, seed: 3 }].entries()) {
        const { status, json } = await post({
          response_format: { type: "json_schema", json_schema: { name: `s${i}`, schema, strict: true } },
          max_tokens: 200,
          ...sampling,
        });
        expect(status, JSON.stringify(json)).toBe(200);
        const choice = json.choices[0];
        expect(choice.finish_reason, `schema ${i} sampling ${k}: ${choice.message.content}`).toBe("stop");
        const doc = JSON.parse(choice.message.content);
        expect(validate(doc), `schema ${i} sampling ${k}: ${choice.message.content} ${ajv.errorsText(validate.errors)}`).toBe(true);
      }
    }
    await expectIdle();
  });

  it("streamed output joins to JSON that validates", async () => {
    const schema = SCHEMAS[1];
    const res = await fetch(`${api.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "x" }], stream: true, temperature: 1, seed: 9, max_tokens: 100, response_format: { type: "json_schema", json_schema: { name: "c", schema, strict: true } } }),
    });
    expect(res.status).toBe(200);
    const events = (await res.text()).split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6));
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    expect(chunks.at(-1).choices[0].finish_reason).toBe("stop");
    expect(ajv.validate(schema, JSON.parse(text)), text).toBe(true);
    await expectIdle();
  });

  it("the official client's chat.completions.parse with a zod schema", async () => {
    const Weather = z.object({
      city: z.enum(["Paris", "Oslo", "Lima"]),
      celsius: z.number().int().min(-9).max(9),
      sunny: z.boolean(),
      hours: z.array(z.enum(["am", "pm"])).max(2),
    });
    for (const seed of [1, 2, 3]) {
      const completion = await client.chat.completions.parse({
        model: "tiny",
        messages: [{ role: "user", content: "Weather?" }],
        response_format: zodResponseFormat(Weather, "weather"),
        temperature: 1,
        seed,
        max_tokens: 120,
      });
      const choice = completion.choices[0];
      expect(choice.finish_reason).toBe("stop");
      const parsed = choice.message.parsed;
      expect(parsed).not.toBeNull();
      expect(Weather.parse(parsed)).toEqual(parsed);
    }
    await expectIdle();
  });

  it("json_object: an output that ends is a JSON object; one cut by max_tokens says length", async () => {
    let stopped = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const { status, json } = await post({ response_format: { type: "json_object" }, temperature: 1, seed, max_tokens: 60 });
      expect(status).toBe(200);
      const { finish_reason, message } = json.choices[0];
      expect(message.content.startsWith("{")).toBe(true);
      if (finish_reason === "length") continue; // random weights: an unbounded object may be cut, as OpenAI's is
      expect(finish_reason).toBe("stop");
      const doc = JSON.parse(message.content);
      expect(typeof doc === "object" && doc !== null && !Array.isArray(doc)).toBe(true);
      stopped++;
    }
    expect(stopped).toBeGreaterThan(0);
    await expectIdle();
  });

  it('response_format {type: "text"} and null are plain generation', async () => {
    const a = await post({ max_tokens: 8, temperature: 0 });
    const b = await post({ max_tokens: 8, temperature: 0, response_format: { type: "text" } });
    const c = await post({ max_tokens: 8, temperature: 0, response_format: null });
    expect(b.json.choices[0].message.content).toBe(a.json.choices[0].message.content);
    expect(c.json.choices[0].message.content).toBe(a.json.choices[0].message.content);
  });
});

describe("bad response_format: OpenAI error JSON, 400, naming the field", () => {
  const cases: [string, unknown, string, RegExp][] = [
    ["not an object", "json", "response_format", /must be an object/],
    ["unknown type", { type: "xml" }, "response_format.type", /"text", "json_object" or "json_schema"/],
    ["json_schema without its object", { type: "json_schema" }, "response_format.json_schema", /is required/],
    ["a bad name", { type: "json_schema", json_schema: { name: "has space", schema: { type: "object" } } }, "response_format.json_schema.name", /letters, digits/],
    ["strict not a boolean", { type: "json_schema", json_schema: { name: "a", schema: { type: "object" }, strict: "yes" } }, "response_format.json_schema.strict", /boolean/],
    ["a schema that is not JSON Schema", { type: "json_schema", json_schema: { name: "a", schema: { type: "bogus" } } }, "response_format.json_schema.schema", /not a valid JSON Schema/],
    ["a schema the grammar engine cannot build", { type: "json_schema", json_schema: { name: "a", schema: { type: "object", properties: { a: { $ref: "#/$defs/nope" } }, required: ["a"] } } }, "response_format.json_schema.schema", /cannot be turned into a grammar/],
    ["an unknown field", { type: "json_schema", json_schema: { name: "a", schema: {}, extra: 1 } }, "response_format.json_schema.extra", /unknown field/],
  ];
  for (const [what, rf, param, message] of cases) {
    it(what, async () => {
      const { status, json } = await post({ response_format: rf, max_tokens: 4 });
      expect(status).toBe(400);
      expect(json.error).toMatchObject({ type: "invalid_request_error", param });
      expect(json.error.message).toMatch(message);
      expect(typeof json.error.code).toBe("string");
    });
  }

  it("the server keeps serving after them, and leaks nothing", async () => {
    const { status } = await post({ response_format: { type: "json_schema", json_schema: { name: "ok", schema: SCHEMAS[0], strict: true } }, max_tokens: 40 });
    expect(status).toBe(200);
    await expectIdle();
    expect(api.logs.filter((l) => /\b500\b/.test(l))).toEqual([]);
  });
});
