import { describe, expect, it } from "vitest";
import { CHATML_TEMPLATE } from "@trtd/model";
import { HERMES_TOOLS_TEMPLATE, LLAMA31_CHAT_TEMPLATE } from "@trtd/test-support";
import { createToolCallParser, splitToolCalls, toolCallFormatFromTemplate, toolCallFromJson, type ParsedToolCall, type ToolCallFormat } from "./tool-calls.js";

/** Feeds `chunks` one by one and joins the pieces; a call's tag or JSON never reaches the content. */
function feed(chunks: string[], format: ToolCallFormat) {
  const p = createToolCallParser(format);
  let content = "";
  const calls: ParsedToolCall[] = [];
  for (const piece of [...chunks.map((c) => p.push(c)), p.finish()]) {
    content += piece.content;
    calls.push(...piece.calls);
  }
  return { content, calls };
}

/** Every way to cut `text` in two, and one chunk per character. */
function splits(text: string): string[][] {
  const out: string[][] = [[text], [...text]];
  for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

const weather = { name: "get_weather", arguments: '{"city":"Paris","unit":"c"}' };
const time = { name: "get_time", arguments: '{"tz":"UTC"}' };

type Case = [string, string, { content: string; calls: ParsedToolCall[] }];

const HERMES: Case[] = [
  ["one call", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>', { content: "", calls: [weather] }],
  [
    "text before a call is content, the whitespace before the tag dropped",
    'Let me check.\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>',
    { content: "Let me check.", calls: [weather] },
  ],
  [
    "two calls, whitespace between and after dropped",
    '<tool_call>{"name":"get_weather","arguments":{"city":"Paris","unit":"c"}}</tool_call>\n<tool_call>\n{"arguments": {"tz": "UTC"}, "name": "get_time"}\n</tool_call>\n',
    { content: "", calls: [weather, time] },
  ],
  ["text after a call is content", '<tool_call>{"name":"get_time","arguments":{"tz":"UTC"}}</tool_call>\n done', { content: "done", calls: [time] }],
  ["braces and tags inside strings", '<tool_call>{"name":"f","arguments":{"s":"}{ </tool_ <tool_call>"}}</tool_call>', { content: "", calls: [{ name: "f", arguments: '{"s":"}{ </tool_ <tool_call>"}' }] }],
  ["no arguments: {}", '<tool_call>{"name": "now"}</tool_call>', { content: "", calls: [{ name: "now", arguments: "{}" }] }],
  ["unclosed at the end but whole JSON: a call (as vLLM)", '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n', { content: "", calls: [time] }],
  ["cut off inside a call: its text is content", 'ok <tool_call>\n{"name": "get_ti', { content: "ok<tool_call>\n{\"name\": \"get_ti", calls: [] }],
  ["a block that is not a call stays text", 'a\n<tool_call>{"nome": 1}</tool_call>b', { content: 'a<tool_call>{"nome": 1}</tool_call>b', calls: [] }],
  ["arguments that are not an object: not a call", '<tool_call>{"name":"f","arguments":"x"}</tool_call>', { content: '<tool_call>{"name":"f","arguments":"x"}</tool_call>', calls: [] }],
  ["no tags: content untouched", "  Hello <b>world</b> <tool_ \n", { content: "  Hello <b>world</b> <tool_ \n", calls: [] }],
  ["a near-tag is text", "x <tool_cal y", { content: "x <tool_cal y", calls: [] }],
  ["empty output", "", { content: "", calls: [] }],
];

const LLAMA3: Case[] = [
  ["one call", '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "c"}}', { content: "", calls: [weather] }],
  ["after <|python_tag|> and whitespace", '\n<|python_tag|>{"type": "function", "name": "get_time", "parameters": {"tz": "UTC"}}', { content: "", calls: [time] }],
  [
    "two calls separated by ;",
    '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "c"}}; {"name": "get_time", "arguments": {"tz": "UTC"}};',
    { content: "", calls: [weather, time] },
  ],
  ["text after the calls is content", '{"name": "get_time", "parameters": {"tz": "UTC"}}\nDone.', { content: "Done.", calls: [time] }],
  ["plain text: content as it came", "  The weather is {fine}.", { content: "  The weather is {fine}.", calls: [] }],
  ["JSON that is not a call: content as it came", ' {"answer": 4}', { content: ' {"answer": 4}', calls: [] }],
  ["cut off inside the object: content", '{"name": "get_time", "parameters": {"tz"', { content: '{"name": "get_time", "parameters": {"tz"', calls: [] }],
  ["a second object that is not a call ends the calls", '{"name": "get_time", "parameters": {"tz": "UTC"}}; {"x": 1}', { content: '{"x": 1}', calls: [time] }],
  ["braces inside strings", '{"name": "f", "parameters": {"s": "}}\\"{"}}', { content: "", calls: [{ name: "f", arguments: '{"s":"}}\\"{"}' }] }],
  ["a lone '<' is content", "<b>", { content: "<b>", calls: [] }],
  ["empty output", "", { content: "", calls: [] }],
];

for (const [format, cases] of [["hermes", HERMES], ["llama3_json", LLAMA3]] as const) {
  describe(`tool-call parser ${format} - split`, () => {
    for (const [name, text, want] of cases) {
      it(`${name}: the same result for every chunking`, () => {
        expect(splitToolCalls(text, format)).toEqual(want);
        for (const chunks of splits(text)) expect(feed(chunks, format), JSON.stringify(chunks)).toEqual(want);
      });
    }
  });
}

describe("tool-call parser - streaming", () => {
  it("hermes: a call is released when its closing tag arrives, content before it at once", () => {
    const p = createToolCallParser("hermes");
    expect(p.push("Checking")).toEqual({ content: "Checking", calls: [] });
    expect(p.push(" now\n<tool_c")).toEqual({ content: " now", calls: [] });
    expect(p.push('all>{"name":"get_time","arguments":{"tz":"UTC"}}')).toEqual({ content: "", calls: [] });
    expect(p.push("</tool_call>")).toEqual({ content: "", calls: [time] });
    expect(p.finish()).toEqual({ content: "", calls: [] });
  });

  it("llama3_json: each object is released once complete, before the output ends", () => {
    const p = createToolCallParser("llama3_json");
    expect(p.push('{"name": "get_time", "parameters": {"tz": "UT')).toEqual({ content: "", calls: [] });
    expect(p.push('C"}}; {"name"')).toEqual({ content: "", calls: [time] });
    expect(p.push(': "get_weather", "parameters": {"city": "Paris", "unit": "c"}}')).toEqual({ content: "", calls: [weather] });
    expect(p.finish()).toEqual({ content: "", calls: [] });
  });
});

describe("toolCallFromJson", () => {
  it("re-serialises the arguments compactly and refuses what is not a call", () => {
    expect(toolCallFromJson('{ "name": "f", "arguments": { "a": [1, 2] } }')).toEqual({ name: "f", arguments: '{"a":[1,2]}' });
    for (const bad of ["", "[]", "null", '{"name": ""}', '{"name": 3}', '{"name": "f", "parameters": [1]}', '{"name": "f"']) {
      expect(toolCallFromJson(bad), bad).toBeUndefined();
    }
  });
});

describe("toolCallFormatFromTemplate", () => {
  it("auto reads the format from the chat template; explicit modes win; none is none", () => {
    expect(toolCallFormatFromTemplate("auto", HERMES_TOOLS_TEMPLATE)).toBe("hermes");
    expect(toolCallFormatFromTemplate("auto", LLAMA31_CHAT_TEMPLATE)).toBe("llama3_json");
    expect(toolCallFormatFromTemplate("auto", CHATML_TEMPLATE)).toBeUndefined();
    expect(toolCallFormatFromTemplate("auto", undefined)).toBeUndefined();
    expect(toolCallFormatFromTemplate("hermes", CHATML_TEMPLATE)).toBe("hermes");
    expect(toolCallFormatFromTemplate("llama3_json", undefined)).toBe("llama3_json");
    expect(toolCallFormatFromTemplate("none", HERMES_TOOLS_TEMPLATE)).toBeUndefined();
  });
});
