// @trtd/grammar over models/tiny's tokenizer (cl100k_base + ChatML specials, 100 352 logit rows): random walks
// through the masks always end in JSON that ajv (a validator nobody here wrote) accepts against the schema;
// texts the grammar must refuse are refused token by token; special tokens are never allowed inside a grammar;
// the cache compiles a spec once (keys canonical, LRU, evicted grammars live on with their matchers); bad specs are
// refused naming the field; everything is freed.
import { Ajv2020 } from "ajv/dist/2020.js";
import { mulberry32, modelDir } from "@trtd/test-support";
import { Tokenizer } from "@trtd/tokenizer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  checkGrammarSpec,
  CompilerFreedError,
  GrammarCompiler,
  InvalidGrammarError,
  MatcherFreedError,
  type GrammarMatcher,
  type GrammarSpec,
  type JsonSchema,
} from "../src/index.js";

let tok: Tokenizer;
let compiler: GrammarCompiler;
const ajv = new Ajv2020({ strict: false });

beforeAll(async () => {
  tok = Tokenizer.fromModelDir(modelDir);
  compiler = await GrammarCompiler.create(tok);
});
afterAll(() => {
  compiler?.free();
  tok?.free();
});

function allowedTokens(mask: Int32Array, vocab: number): number[] {
  const out: number[] = [];
  for (let t = 0; t < vocab; t++) if ((mask[t >>> 5] >>> (t & 31)) & 1) out.push(t);
  return out;
}

/**
 * Walks a matcher with uniformly random allowed tokens (as a random-weight model would pick them) until it accepts a
 * stop token or `maxSteps` pass; returns the text before the stop token.
 */
async function randomWalk(m: GrammarMatcher, rand: () => number, maxSteps: number): Promise<{ text: string; done: boolean; tokens: number[] }> {
  const tokens: number[] = [];
  for (let step = 0; step < maxSteps; step++) {
    const allowed = allowedTokens(await m.nextTokenMask(), compiler.vocabSize);
    expect(allowed.length, `step ${step}: some token is allowed`).toBeGreaterThan(0);
    const t = allowed[Math.floor(rand() * allowed.length)];
    expect(m.acceptToken(t)).toBe(true);
    if (compiler.stopTokenIds.includes(t)) {
      expect(m.isTerminated()).toBe(true);
      return { text: tok.decode(tokens), done: true, tokens };
    }
    tokens.push(t);
  }
  return { text: tok.decode(tokens), done: false, tokens };
}

// Schemas whose documents are bounded (enums, ranges, maxLength, maxItems), so a random walk ends.
const SCHEMAS: JsonSchema[] = [
  { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false },
  { type: "object", properties: { color: { enum: ["red", "green", "blue"] }, n: { type: "integer", minimum: -5, maximum: 5 } }, required: ["color", "n"], additionalProperties: false },
  { type: "object", properties: { name: { type: "string", maxLength: 6 }, age: { type: "integer", minimum: 0, maximum: 99 } }, required: ["name", "age"], additionalProperties: false },
  { type: "array", items: { type: "integer", minimum: 0, maximum: 9 }, minItems: 1, maxItems: 4 },
  { type: "object", properties: { tags: { type: "array", items: { enum: ["a", "b", "c"] }, maxItems: 3 }, done: { type: "boolean" } }, required: ["tags", "done"], additionalProperties: false },
  { type: "object", properties: { kind: { const: "point" }, xy: { type: "array", items: { type: "integer", minimum: 0, maximum: 99 }, minItems: 2, maxItems: 2 } }, required: ["kind", "xy"], additionalProperties: false },
  { anyOf: [{ type: "object", properties: { a: { type: "boolean" } }, required: ["a"], additionalProperties: false }, { type: "object", properties: { b: { type: "null" } }, required: ["b"], additionalProperties: false }] },
  { type: "object", properties: { inner: { type: "object", properties: { v: { enum: [1, 2, 3] } }, required: ["v"], additionalProperties: false } }, required: ["inner"], additionalProperties: false },
  { type: "string", pattern: "^[a-z]{0,8}$" },
  { type: "object", properties: { s: { type: "string", pattern: "^[a-c]{1,4}$" } }, required: ["s"], additionalProperties: false },
];

describe("random walks through the masks end in valid JSON", () => {
  it("200 walks over 10 bounded schemas: every one ends, parses and validates (ajv)", async () => {
    const rand = mulberry32(22);
    let walks = 0;
    for (const [i, schema] of SCHEMAS.entries()) {
      const validate = ajv.compile(schema);
      const compiled = await compiler.compile({ type: "json_schema", schema, strict: true });
      for (let k = 0; k < 20; k++) {
        const m = await compiled.matcher();
        try {
          const walk = await randomWalk(m, rand, 400);
          expect(walk.done, `schema ${i} walk ${k} ended: ${walk.text.slice(0, 80)}`).toBe(true);
          const doc = JSON.parse(walk.text);
          expect(validate(doc), `schema ${i}: ${walk.text} (${ajv.errorsText(validate.errors)})`).toBe(true);
          walks++;
        } finally {
          m.free();
        }
      }
    }
    expect(walks).toBe(200);
    expect(compiler.cacheStats.liveMatchers).toBe(0);
  });

  it("json_object: a walk that ends is a JSON object; compact whitespace only", async () => {
    const rand = mulberry32(5);
    let ended = 0;
    for (let k = 0; k < 6; k++) {
      const m = await compiler.matcher({ type: "json_object" });
      try {
        const walk = await randomWalk(m, rand, 120);
        expect(walk.text.startsWith("{")).toBe(true);
        if (!walk.done) continue; // an unbounded object: the walk's step limit, like max_tokens, cuts it
        ended++;
        const doc = JSON.parse(walk.text);
        expect(typeof doc === "object" && doc !== null && !Array.isArray(doc)).toBe(true);
        expect(walk.text).not.toMatch(/[\n\r\t]/); // JSON strings hold none raw: any would be layout whitespace
      } finally {
        m.free();
      }
    }
    expect(ended).toBeGreaterThan(0);
  });
});

describe("what the grammar refuses", () => {
  async function acceptsText(spec: GrammarSpec, text: string): Promise<boolean> {
    const m = await compiler.matcher(spec);
    try {
      for (const t of tok.encode(text)) if (!m.acceptToken(t)) return false;
      return m.acceptToken(compiler.stopTokenIds[0]) && m.isTerminated();
    } finally {
      m.free();
    }
  }
  const person: GrammarSpec = { type: "json_schema", schema: SCHEMAS[2], strict: true };

  it("accepts documents of the schema in the compact form, refuses others", async () => {
    expect(await acceptsText(person, '{"name": "Ann", "age": 41}')).toBe(true);
    expect(await acceptsText(person, '{"name": "Ann", "age": 100}')).toBe(false); // maximum
    expect(await acceptsText(person, '{"name": "A\tb", "age": 1}')).toBe(false); // no raw control character in a bounded string
    expect(await acceptsText(person, '{"name": "Annabelle", "age": 4}')).toBe(false); // maxLength
    expect(await acceptsText(person, '{"name": "Ann"}')).toBe(false); // required
    expect(await acceptsText(person, '{"name": "Ann", "age": 4, "x": 1}')).toBe(false); // strict: no extra property
    expect(await acceptsText(person, '{"name":"Ann","age":4}')).toBe(false); // compact separators are ", " and ": "
    expect(await acceptsText(person, '{"name": "Ann", "age": 4}\n')).toBe(false);
    expect(await acceptsText({ type: "json_object" }, '{"a": [1, {"b": null}], "c": "d"}')).toBe(true);
    expect(await acceptsText({ type: "json_object" }, "[1, 2]")).toBe(false);
    expect(await acceptsText({ type: "json_object" }, '{"a": 1} {"b": 2}')).toBe(false);
  });

  it("strict false follows JSON Schema's defaults: extra properties allowed", async () => {
    const loose: GrammarSpec = { type: "json_schema", schema: { type: "object", properties: { a: { type: "integer" } }, required: ["a"] }, strict: false };
    expect(await acceptsText(loose, '{"a": 1, "zz": true}')).toBe(true);
    expect(await acceptsText({ ...loose, strict: true }, '{"a": 1, "zz": true}')).toBe(false);
  });

  it("never allows a special token inside the grammar; the stop tokens only at its end", async () => {
    const specials = [...tok.specialTokens.values()];
    const m = await compiler.matcher(person);
    try {
      const text = '{"name": "Al", "age": 7}';
      const ids = tok.encode(text);
      for (const [i, t] of ids.entries()) {
        const allowed = new Set(allowedTokens(await m.nextTokenMask(), compiler.vocabSize));
        for (const s of specials) expect(allowed.has(s), `special ${s} before token ${i}`).toBe(false);
        expect(m.acceptToken(t)).toBe(true);
      }
      const end = allowedTokens(await m.nextTokenMask(), compiler.vocabSize);
      expect(end.sort((a, b) => a - b)).toEqual([...compiler.stopTokenIds].sort((a, b) => a - b));
      // Padded rows no token owns (cl100k has 100 277 ids, the model 100 352) are never allowed either.
      expect(compiler.vocabSize).toBe(100_352);
    } finally {
      m.free();
    }
  });
});

describe("the compiled-grammar cache", () => {
  it("compiles a spec once; key order does not matter; LRU eviction keeps grammars alive for their matchers", async () => {
    const small = await GrammarCompiler.create(tok, { cacheSize: 2 });
    try {
      const a1 = await small.compile({ type: "json_schema", schema: { type: "object", properties: { x: { type: "integer" } } } });
      const a2 = await small.compile({ type: "json_schema", schema: { properties: { x: { type: "integer" } }, type: "object" } });
      expect(a2).toBe(a1);
      expect(small.cacheStats).toMatchObject({ entries: 1, hits: 1, misses: 1 });
      const [c1, c2] = await Promise.all([small.compile({ type: "json_object" }), small.compile({ type: "json_object" })]);
      expect(c2).toBe(c1); // concurrent compiles of one spec share one job
      const m = await a1.matcher();
      await small.compile({ type: "json_schema", schema: SCHEMAS[0] }); // evicts a1 (least recently used)
      expect(small.cacheStats.entries).toBe(2);
      expect(m.acceptToken(tok.encode("{")[0])).toBe(true); // still usable: freed with its last matcher
      m.free();
      m.free(); // idempotent
      expect(() => m.acceptToken(1)).toThrow(MatcherFreedError);
      expect(small.cacheStats.liveMatchers).toBe(0);
      expect(await small.compile({ type: "json_schema", schema: { type: "object", properties: { x: { type: "integer" } } } })).not.toBe(a1);
    } finally {
      small.free();
    }
    await expect(small.compile({ type: "json_object" })).rejects.toThrow(CompilerFreedError);
  });
});

describe("checkGrammarSpec", () => {
  const field = "response_format.json_schema";
  it("passes good specs through", async () => {
    expect(await checkGrammarSpec({ type: "json_object" }, "response_format")).toEqual({ type: "json_object" });
    expect(await checkGrammarSpec({ type: "json_schema", schema: SCHEMAS[1], strict: true }, field)).toEqual({ type: "json_schema", schema: SCHEMAS[1], strict: true });
  });

  it("refuses bad specs naming the field", async () => {
    const cases: [unknown, RegExp][] = [
      [null, /^response_format\.json_schema: must be an object/],
      [{ type: "json_schema" }, /^response_format\.json_schema\.schema: must be a JSON Schema object/],
      [{ type: "json_schema", schema: { type: "bogus" } }, /^response_format\.json_schema\.schema: not a valid JSON Schema/],
      [{ type: "json_schema", schema: { type: "object" }, strict: "yes" }, /^response_format\.json_schema\.strict: must be a boolean/],
      [{ type: "json_schema", schema: { type: "object", properties: { a: { $ref: "#/$defs/missing" } }, required: ["a"] } }, /^response_format\.json_schema\.schema: cannot be turned into a grammar: .+/],
      [{ type: "xml" }, /^response_format\.json_schema\.type: must be "json_object", "json_schema" or "structural_tag"/],
    ];
    for (const [spec, message] of cases) {
      const err = await checkGrammarSpec(spec, field).then(() => undefined, (e: unknown) => e);
      expect(err, JSON.stringify(spec)).toBeInstanceOf(InvalidGrammarError);
      expect((err as Error).message).toMatch(message);
    }
    // xgrammar aborted on the bad $ref above: it still works.
    expect(await checkGrammarSpec({ type: "json_schema", schema: SCHEMAS[0] }, field)).toMatchObject({ type: "json_schema" });
  });
});

describe("structural tags (tag, then JSON: tool calls)", () => {
  it("free text until the trigger, then the tag's schema, then its end", async () => {
    const structuralTag = {
      type: "structural_tag",
      format: {
        type: "triggered_tags",
        triggers: ["<tool_call>"],
        tags: [{ begin: "<tool_call>", content: { type: "json_schema", json_schema: { type: "object", properties: { name: { const: "get_weather" } }, required: ["name"], additionalProperties: false } }, end: "</tool_call>" }],
      },
    };
    const spec = await checkGrammarSpec({ type: "structural_tag", structuralTag }, "tools");
    const m = await compiler.matcher(spec);
    try {
      for (const t of tok.encode('Sure. <tool_call>{"name": "get_weather"}</tool_call>')) expect(m.acceptToken(t)).toBe(true);
    } finally {
      m.free();
    }
    const bad = await compiler.matcher(spec);
    try {
      const ids = tok.encode('<tool_call>{"name": "other"}');
      expect(ids.every((t) => bad.acceptToken(t))).toBe(false);
    } finally {
      bad.free();
    }
  });
});
