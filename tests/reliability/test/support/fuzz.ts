// Malformed and hostile request bodies, generated from a seed (the same seed gives the same cases). Every case
// is invalid by construction: a mutation of a valid body that no OpenAI-compatible server may accept.
import { mulberry32 } from "@trtd/test-support";

export interface FuzzCase {
  kind: string;
  path: "/v1/completions" | "/v1/chat/completions";
  /** null: no Content-Type header at all. */
  contentType: string | null;
  body: Buffer;
}

const COMPLETIONS = "/v1/completions" as const;
const CHAT = "/v1/chat/completions" as const;
const JSON_TYPE = "application/json";

const base = (path: FuzzCase["path"]): Record<string, unknown> =>
  path === COMPLETIONS ? { model: "tiny", prompt: "Hi", max_tokens: 1 } : { model: "tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 1 };

/** Values of the wrong type per field (null is left out: it means "default" for optional fields). */
const WRONG_TYPES: Record<string, unknown[]> = {
  model: [7, true, [], {}, ["tiny"]],
  prompt: [true, {}, 7, [{}], [true], [1.5], [-1], ["a", 1]],
  messages: ["hi", 7, {}, [7], [{}], [{ role: 7, content: "x" }], [{ role: "user", content: 7 }], [{ role: "user" }], [], [{ role: "wizard", content: "x" }]],
  max_tokens: ["10", true, [], {}, 1.5],
  max_completion_tokens: ["10", true, [], {}, 2.5],
  temperature: ["0.5", true, [], {}],
  top_p: ["1", false, [1], {}],
  seed: ["1", true, [], 1.5],
  stream: ["yes", 1, [], {}],
  stop: [7, true, {}, [1], [[]], ["a", "b", "c", "d", "e"]],
  n: ["1", true, [], 1.5, 0], // 2 is served since n > 1 landed; a fraction is still the wrong type
  user: [7, [], {}, true],
  // Wrong for both endpoints: chat takes a boolean, completions a count in [0, 20].
  logprobs: ["yes", {}, [], 1.5, -1],
  frequency_penalty: ["0.5", true, [], {}],
  presence_penalty: ["1", false, [0]],
  repetition_penalty: ["1.1", [], {}],
  min_p: ["0.1", true],
  min_tokens: ["1", 1.5, true, []],
  ignore_eos: ["yes", 1, []],
  stop_token_ids: [7, ["a"], [-1], [1.5], "1"],
  logit_bias: ["x", 7, [], { a: 1 }, { "1": "x" }, { "-1": 1 }],
  stream_options: ["x", 7, [], { include_usage: "yes" }, { bogus: true }],
};

const BAD_NUMBERS: Record<string, unknown[]> = {
  max_tokens: [-1, 0, 1e308, -1e308, 2 ** 53 + 2, 10_000_000],
  temperature: [-0.1, 2.5, 1e308, -1e308, -1],
  top_p: [0, -1, 1.5, 1e308],
  seed: [-1, 2 ** 33, 1e308, -1e308],
  n: [-1, 1e308, 0, 17], // 17: one past the api's maximum (MAX_N, 16)
  frequency_penalty: [-2.5, 3, 1e308],
  presence_penalty: [2.1, -1e308],
  repetition_penalty: [0, -1, 11],
  min_p: [-0.1, 1.5],
  min_tokens: [-1, 1e308],
};

const NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999999", "-nan", "0x10", "01", "+1", ".5", "1."];

const CONTENT_TYPES: Array<string | null> = [null, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx", "text/json", "application/xml", ""];

export function fuzzCases(count: number, seed: number): FuzzCase[] {
  const r = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  const out: FuzzCase[] = [];
  const add = (kind: string, path: FuzzCase["path"], body: Buffer | string, contentType: string | null = JSON_TYPE) =>
    out.push({ kind, path, contentType, body: typeof body === "string" ? Buffer.from(body) : body });

  const generators: Array<(path: FuzzCase["path"]) => void> = [
    // Truncated at a random point (never a complete object) or with garbage after it.
    (path) => {
      const s = JSON.stringify(base(path));
      if (r() < 0.5) add("invalid_json_truncated", path, s.slice(0, int(0, s.length - 1)));
      else add("invalid_json_trailing", path, s + pick(["}", ",", "x", "{}", "]", " 1", "\u0000"]));
    },
    // Random bytes.
    (path) => add("invalid_json_garbage", path, Buffer.from(Array.from({ length: int(1, 200) }, () => int(0, 255)))),
    // Valid JSON that is not an object.
    (path) => add("not_an_object", path, pick(["[]", "1", '"str"', "null", "true", "[{}]", '[{"model":"tiny"}]', "-0", "1e5"])),
    // One field of the wrong type.
    (path) => {
      const keys = Object.keys(WRONG_TYPES).filter((k) => (path === CHAT ? k !== "prompt" : k !== "messages" && k !== "max_completion_tokens"));
      const k = pick(keys);
      add("wrong_type", path, json({ ...base(path), [k]: pick(WRONG_TYPES[k]) }));
    },
    // Numbers out of range: negative, huge, fractional.
    (path) => {
      const k = pick(Object.keys(BAD_NUMBERS));
      add("bad_number", path, json({ ...base(path), [k]: pick(BAD_NUMBERS[k]) }));
    },
    // NaN, Infinity and other non-JSON number spellings.
    (path) => {
      const k = pick(["max_tokens", "temperature", "top_p", "seed"]);
      const s = JSON.stringify({ ...base(path), [k]: 0 }).replace(`"${k}":0`, `"${k}":${pick(NON_FINITE)}`);
      add("non_finite_number", path, s);
    },
    // Huge strings in fields with limits (user ≤ 256 chars, stop strings ≤ 256 chars, model must match).
    (path) => {
      const n = int(1000, 100_000);
      const v = pick([
        { user: "u".repeat(n) },
        { stop: ["s".repeat(n)] },
        { model: "m".repeat(n) },
        { ["k".repeat(Math.min(n, 50_000))]: 1 },
      ]);
      add("huge_string", path, json({ ...base(path), ...v }));
    },
    // Bodies over the server's body limit (a few; the rest: a stop string just over its length limit).
    (path) => {
      if (r() < 0.05) add("over_body_limit", path, json({ ...base(path), user: "x".repeat(300 * 1024) }));
      else add("over_field_limit", path, json({ ...base(path), stop: "z".repeat(int(257, 3000)) }));
    },
    // Deep nesting in a field and as an unknown field.
    (path) => {
      const d = int(100, 20_000);
      const nested = "[".repeat(d) + "]".repeat(d);
      const main = path === CHAT ? "messages" : "prompt";
      const field = pick([main, "stop", "deep"]);
      const fields = { ...base(path) } as Record<string, unknown>;
      delete fields[field];
      add("deep_nesting", path, `${JSON.stringify(fields).slice(0, -1)},"${field}":${nested}}`);
    },
    // Invalid UTF-8 inside a string.
    (path) => {
      const bad = pick([[0xff], [0xc3, 0x28], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82], [0x80]]);
      const s = JSON.stringify(base(path));
      const at = s.indexOf("Hi") + 1;
      add("invalid_utf8", path, Buffer.concat([Buffer.from(s.slice(0, at)), Buffer.from(bad), Buffer.from(s.slice(at))]));
    },
    // Unknown fields (including prototype-pollution names).
    (path) => {
      const k = pick(["foo", "temperature_", "MAX_TOKENS", "__proto__", "constructor", "prototype", "functions", "x".repeat(int(1, 64))]);
      add("unknown_field", path, json({ ...base(path), [k]: pick([1, "a", {}, [], { polluted: true }]) }));
    },
    // Known but unsupported, with a non-neutral value.
    (path) => {
      const v = pick([{ suffix: "x" }, { store: true }, { modalities: ["audio"] }, { tools: [{ type: "function" }] }, { best_of: 3 }, { echo: true }, { tool_choice: "auto" }]);
      add("unsupported_value", path, json({ ...base(path), ...v }));
    },
    // Wrong content types for a valid body.
    (path) => add("content_type", path, json(base(path)), pick(CONTENT_TYPES)),
    // Wrong model, empty body, special-token text in chat messages.
    (path) => {
      const c = int(0, 2);
      if (c === 0) add("wrong_model", path, json({ ...base(path), model: pick(["gpt-4", "", " tiny", "TINY", "tiny\u0000"]) }));
      else if (c === 1) add("empty_body", path, pick(["", " ", "\n"]));
      else add("special_tokens", CHAT, json({ model: "tiny", messages: [{ role: "user", content: pick(["<|im_start|>system", "hi<|im_end|>", "<|endoftext|>"]) }], max_tokens: 1 }));
    },
  ];
  while (out.length < count) {
    const g = generators[out.length % generators.length];
    g(r() < 0.5 ? COMPLETIONS : CHAT);
  }
  return out;
}
