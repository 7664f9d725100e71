import { describe, expect, it } from "vitest";
import type { ChatTool } from "../text-codec.js";
import type { GenerationResult } from "../generation.js";
import { chatMessageParts, chatPieces, type ChatPiece } from "./chat-output.js";
import { createCallListParser, forcedToolGrammar, forcedToolSchema } from "./tool-choice.js";
import type { ParsedToolCall } from "./tool-calls.js";

const CITY = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
const TOOLS: ChatTool[] = [
  { type: "function", function: { name: "get_weather", parameters: CITY } },
  { type: "function", function: { name: "now" } },
];

describe("forcedToolSchema", () => {
  it("a named function: its parameters schema, or any object when it has none", () => {
    expect(forcedToolSchema({ name: "get_weather" }, TOOLS, true)).toEqual(CITY);
    expect(forcedToolSchema({ name: "now" }, TOOLS, true)).toEqual({ type: "object" });
  });

  it("required: a non-empty list of {name, parameters}, one branch per tool; one item without parallel calls", () => {
    const branch = (name: string, parameters: unknown) => ({
      type: "object",
      properties: { name: { type: "string", enum: [name] }, parameters },
      required: ["name", "parameters"],
      additionalProperties: false,
    });
    const items = { anyOf: [branch("get_weather", CITY), branch("now", { type: "object" })] };
    expect(forcedToolSchema("required", TOOLS, true)).toEqual({ type: "array", minItems: 1, items });
    expect(forcedToolSchema("required", TOOLS, false)).toEqual({ type: "array", minItems: 1, maxItems: 1, items });
  });
});

describe("forcedToolGrammar", () => {
  it("a json_schema spec of the schema, strict only when every chosen function is", () => {
    const strictTools: ChatTool[] = [{ type: "function", function: { name: "get_weather", parameters: CITY, strict: true } }, TOOLS[1]];
    expect(forcedToolGrammar({ name: "get_weather" }, strictTools, true)).toEqual({ type: "json_schema", schema: CITY, strict: true });
    expect(forcedToolGrammar({ name: "now" }, strictTools, true)).toEqual({ type: "json_schema", schema: { type: "object" } });
    expect(forcedToolGrammar("required", strictTools, true)).not.toHaveProperty("strict");
    expect(forcedToolGrammar("required", strictTools.slice(0, 1), true)).toMatchObject({ type: "json_schema", strict: true });
  });
});

function splits(text: string): string[][] {
  const out: string[][] = [[text], [...text]];
  for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

function feed(chunks: string[]) {
  const p = createCallListParser();
  let content = "";
  const calls: ParsedToolCall[] = [];
  for (const piece of [...chunks.map((c) => p.push(c)), p.finish()]) {
    content += piece.content;
    calls.push(...piece.calls);
  }
  return { content, calls };
}

describe("call list parser (tool_choice required's output)", () => {
  const weather = { name: "get_weather", arguments: '{"city":"Paris"}' };
  const cases: Array<[string, string, { content: string; calls: ParsedToolCall[] }]> = [
    ["one call", '[{"name": "get_weather", "parameters": {"city": "Paris"}}]', { content: "", calls: [weather] }],
    ["two calls, whitespace anywhere", ' [ {"name":"get_weather","parameters":{"city":"Paris"}} ,\n{"name": "now", "parameters": {}} ] ', { content: "", calls: [weather, { name: "now", arguments: "{}" }] }],
    ["cut off inside the second call: the first stands, the rest is content", '[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "no', { content: '{"name": "no', calls: [weather] }],
    ["not a list: content", '{"name": "now"}', { content: '{"name": "now"}', calls: [] }],
    ["empty output", "", { content: "", calls: [] }],
  ];
  for (const [name, text, want] of cases) {
    it(`${name}: the same for every chunking`, () => {
      for (const chunks of splits(text)) expect(feed(chunks), JSON.stringify(chunks)).toEqual(want);
    });
  }
});

const result: GenerationResult = { finishReason: "stop", promptTokens: 3, completionTokens: 9 };

async function* texts(parts: string[]): AsyncGenerator<string, GenerationResult> {
  for (const p of parts) yield p;
  return result;
}

async function collect(gen: AsyncGenerator<ChatPiece, GenerationResult>) {
  const pieces: ChatPiece[] = [];
  for (;;) {
    const s = await gen.next();
    if (s.done) return { pieces, result: s.value };
    pieces.push(s.value);
  }
}

describe("chat output of forced choices", () => {
  it("named: the header first, then the arguments as generated; finish_reason stays stop (as OpenAI answers)", async () => {
    const { pieces, result: r } = await collect(chatPieces(texts(['{"ci', 'ty": "Pa', 'ris"}']), { namedCall: "get_weather" }));
    expect(pieces[0]).toMatchObject({ kind: "call", index: 0, name: "get_weather" });
    expect(pieces.slice(1)).toEqual(['{"ci', 'ty": "Pa', 'ris"}'].map((a) => ({ kind: "arguments", index: 0, arguments: a })));
    expect(r.finishReason).toBe("stop");
    const whole = chatMessageParts('{"city": "Paris"}', result, { namedCall: "get_weather" });
    expect(whole).toMatchObject({ content: null, tool_calls: [{ type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } }], result });
  });

  it("required: each listed call, finish_reason tool_calls; parallel false keeps one", async () => {
    const out = '[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "now", "parameters": {}}]';
    const { pieces, result: r } = await collect(chatPieces(texts([...out]), { tools: { format: "call_list", parallel: true } }));
    expect(pieces.filter((p) => p.kind === "call").map((p) => (p as { name: string }).name)).toEqual(["get_weather", "now"]);
    expect(r.finishReason).toBe("tool_calls");
    const one = chatMessageParts(out, result, { tools: { format: "call_list", parallel: false } });
    expect(one.tool_calls!.map((c) => c.function)).toEqual([{ name: "get_weather", arguments: '{"city":"Paris"}' }]);
    expect(one).toMatchObject({ content: null, result: { finishReason: "tool_calls" } });
  });
});
