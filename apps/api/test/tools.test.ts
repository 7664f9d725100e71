// Tool calling through the api's real HTTP server. Part one serves createApiApp over named test doubles (a backend
// that replays scripted text one byte per token, so tags and JSON arrive split at every position) and reads it with
// fetch and the official OpenAI client. Part two runs the real tokenizer with a tools-aware chat template from the
// model directory and a decode worker test double, and plays a two-turn tool loop with the official client: the
// prompts the worker gets are checked against transformers' rendering of the same conversation
// (tools/reference/tool_template_fixtures.py).
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve, type ServerType } from "@hono/node-server";
import OpenAI from "openai";
import type { JSONSchema } from "openai/lib/jsonschema";
import type { RunnableToolFunctionWithParse } from "openai/lib/RunnableFunction";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ajv2020 } from "ajv/dist/2020.js";
import { createInProcessPlane, type RequestPlane } from "@trtd/request-plane";
import { eventually, HERMES_TOOLS_TEMPLATE, LLAMA31_CHAT_TEMPLATE, modelDir } from "@trtd/test-support";
import { Tokenizer } from "@trtd/tokenizer";
import { createApiApp, startApiServer, type RunningApiServer } from "../src/index.js";
import type { ReasoningOptions } from "../src/openai/reasoning.js";
import type { ToolCallFormat } from "../src/openai/tool-calls.js";
import { startScriptedDecodeWorkerTestDouble, type ScriptedDecodeWorkerTestDouble } from "./support/decode-double.js";
import { startRealApi, type RealApi } from "./support/real-api.js";
import { ByteCodecTestDouble, ScriptedBackendTestDouble } from "./support/test-doubles.js";

const MODEL = "tiny";
const EOS = 256;
const TOOLS = [
  { type: "function" as const, function: { name: "get_weather", description: "The weather in a city now.", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } },
  { type: "function" as const, function: { name: "get_time", parameters: { type: "object", properties: { tz: { type: "string" } } } } },
];
const HERMES_TWO_CALLS =
  'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>';
const LLAMA3_TWO_CALLS = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {"tz": "CET"}}';
const WANT_CALLS = [
  { name: "get_weather", arguments: '{"city":"Paris"}' },
  { name: "get_time", arguments: '{"tz":"CET"}' },
];

interface Served {
  url: string;
  backend: ScriptedBackendTestDouble;
  close(): Promise<void>;
}

/** createApiApp over the test doubles, on a real socket (so streams take the Node fast path). */
async function serveTestDoubles(text: string, toolCalls: ToolCallFormat | undefined, reasoning?: ReasoningOptions): Promise<Served> {
  const backend = new ScriptedBackendTestDouble(() => [...Buffer.from(text), EOS]);
  const { app } = createApiApp({ backend, codec: new ByteCodecTestDouble(), modelName: MODEL, toolCalls, reasoning, limits: { contextLength: 4096 }, log: () => {} });
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(s));
    s.once("error", reject);
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    backend,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function post(url: string, extra: Record<string, unknown>) {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Weather and time in Paris?" }], tools: TOOLS, ...extra }),
  });
}

interface WholeCall {
  id: string;
  type: string;
  function: { name: string; arguments: string };
}

async function whole(url: string, extra: Record<string, unknown> = {}) {
  const res = await post(url, extra);
  expect(res.status).toBe(200);
  const j = (await res.json()) as { choices: Array<{ message: { content: string | null; tool_calls?: WholeCall[]; reasoning_content?: string | null }; finish_reason: string }> };
  return j.choices[0];
}

/** Every SSE event of a stream, parsed, after checking it ends with [DONE]. */
async function streamedChunks(url: string, extra: Record<string, unknown> = {}) {
  const res = await post(url, { stream: true, ...extra });
  expect(res.status).toBe(200);
  const events = (await res.text()).split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6));
  expect(events.at(-1)).toBe("[DONE]");
  return events.slice(0, -1).map((e) => JSON.parse(e) as { choices: Array<{ delta: Record<string, unknown>; finish_reason: string | null }> });
}

describe("tool calls - HTTP, test-double backend", () => {
  const servers: Served[] = [];
  const start = async (text: string, format: ToolCallFormat | undefined, reasoning?: ReasoningOptions) => {
    const s = await serveTestDoubles(text, format, reasoning);
    servers.push(s);
    return s;
  };
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  for (const [format, text, content] of [["hermes", HERMES_TWO_CALLS, "Let me check."], ["llama3_json", LLAMA3_TWO_CALLS, null]] as const) {
    it(`${format}: a whole response has tool_calls, the text before them as content, finish_reason tool_calls`, async () => {
      const { url } = await start(text, format);
      const w = await whole(url);
      expect(w.finish_reason).toBe("tool_calls");
      expect(w.message.content).toBe(content);
      expect(w.message.tool_calls!.map((c) => c.function)).toEqual(WANT_CALLS);
      for (const c of w.message.tool_calls!) {
        expect(c.type).toBe("function");
        expect(c.id).toMatch(/^call_[0-9a-f]{24}$/);
      }
      expect(new Set(w.message.tool_calls!.map((c) => c.id)).size).toBe(2);
    });

    it(`${format}: a stream sends each call as OpenAI does: index, id, type and name with empty arguments, then the arguments`, async () => {
      const { url } = await start(text, format);
      const chunks = await streamedChunks(url);
      expect(chunks[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
      const deltas = chunks.map((c) => c.choices[0].delta);
      const calls = deltas.filter((d) => "tool_calls" in d).map((d) => d.tool_calls as Array<Record<string, unknown>>);
      // One call per delta; the header first, then its arguments.
      for (const c of calls) expect(c).toHaveLength(1);
      const ids = calls.filter((c) => "id" in c[0]).map((c) => c[0].id);
      expect(calls.map((c) => c[0])).toEqual([
        { index: 0, id: ids[0], type: "function", function: { name: "get_weather", arguments: "" } },
        { index: 0, function: { arguments: '{"city":"Paris"}' } },
        { index: 1, id: ids[1], type: "function", function: { name: "get_time", arguments: "" } },
        { index: 1, function: { arguments: '{"tz":"CET"}' } },
      ]);
      expect(ids[0]).not.toBe(ids[1]);
      // Content deltas join to the whole response's content, and never carry tag or call text.
      const streamedContent = deltas.map((d) => (d.content as string | undefined) ?? "").join("");
      expect(streamedContent).toBe(content ?? "");
      for (const d of deltas) expect(JSON.stringify(d.content ?? "")).not.toMatch(/tool_call|python_tag|get_weather/);
      // The last chunk: empty delta and finish_reason tool_calls; no other chunk has a finish reason.
      expect(chunks.at(-1)!.choices[0]).toMatchObject({ delta: {}, finish_reason: "tool_calls" });
      expect(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null)).toBe(true);
    });
  }

  it("the official client accumulates the streamed calls into the same message as the whole response", async () => {
    const { url } = await start(HERMES_TWO_CALLS, "hermes");
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
    const messages = [{ role: "user" as const, content: "Weather and time in Paris?" }];
    const r = await client.chat.completions.create({ model: MODEL, messages, tools: TOOLS });
    expect(r.choices[0].finish_reason).toBe("tool_calls");
    const stream = client.chat.completions.stream({ model: MODEL, messages, tools: TOOLS });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0].finish_reason).toBe("tool_calls");
    expect(final.choices[0].message.content).toBe(r.choices[0].message.content);
    const fns = (m: typeof r.choices[0]["message"]) => m.tool_calls!.map((c) => (c.type === "function" ? c.function : null));
    expect(fns(final.choices[0].message)).toEqual(WANT_CALLS);
    expect(fns(r.choices[0].message)).toEqual(WANT_CALLS);
  });

  it("parallel_tool_calls: false keeps the first call only", async () => {
    const { url } = await start(HERMES_TWO_CALLS, "hermes");
    const w = await whole(url, { parallel_tool_calls: false });
    expect(w.message.tool_calls!.map((c) => c.function)).toEqual(WANT_CALLS.slice(0, 1));
    const calls = (await streamedChunks(url, { parallel_tool_calls: false })).flatMap((c) => (c.choices[0]?.delta.tool_calls as unknown[] | undefined) ?? []);
    expect(calls).toHaveLength(2); // the first call's header and arguments
  });

  it("tool_choice none: the output is not parsed, and the backend gets a plain request", async () => {
    const { url } = await start(HERMES_TWO_CALLS, "hermes");
    const w = await whole(url, { tool_choice: "none" });
    expect(w).toMatchObject({ finish_reason: "stop", message: { content: HERMES_TWO_CALLS } });
    expect(w.message).not.toHaveProperty("tool_calls");
  });

  it("without tools the output is not parsed either", async () => {
    const { url } = await start(HERMES_TWO_CALLS, "hermes");
    const w = await whole(url, { tools: undefined });
    expect(w.message.content).toBe(HERMES_TWO_CALLS);
    expect(w.finish_reason).toBe("stop");
  });

  it("a call inside reasoning is reasoning; a call after it is a call", async () => {
    const text = '<think>maybe <tool_call>{"name": "get_time", "arguments": {}}</tool_call></think>\n<tool_call>{"name": "get_time", "arguments": {"tz": "CET"}}</tool_call>';
    const { url } = await start(text, "hermes", {});
    const w = await whole(url);
    expect(w.message).toMatchObject({ content: null, reasoning_content: 'maybe <tool_call>{"name": "get_time", "arguments": {}}</tool_call>' });
    expect(w.message.tool_calls!.map((c) => c.function)).toEqual([WANT_CALLS[1]]);
    const chunks = await streamedChunks(url);
    const reasoning = chunks.map((c) => (c.choices[0].delta.reasoning_content as string | undefined) ?? "").join("");
    expect(reasoning).toBe(w.message.reasoning_content);
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe("tool_calls");
  });

  it("a malformed block stays content and the answer finishes with stop", async () => {
    const { url } = await start('<tool_call>{"name": get_time}</tool_call>', "hermes");
    const w = await whole(url);
    expect(w).toMatchObject({ finish_reason: "stop", message: { content: '<tool_call>{"name": get_time}</tool_call>' } });
    expect(w.message).not.toHaveProperty("tool_calls");
  });

  it("required: the backend gets the call-list grammar; the listed calls come back whole and streamed", async () => {
    const list = '[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "get_time", "parameters": {"tz": "CET"}}]';
    const s = await start(list, undefined); // no tool-call format needed: the output is the constrained JSON
    const w = await whole(s.url, { tool_choice: "required" });
    expect(w.finish_reason).toBe("tool_calls");
    expect(w.message.content).toBeNull();
    expect(w.message.tool_calls!.map((c) => c.function)).toEqual(WANT_CALLS);
    const grammar = s.backend.requests[0].grammar as { type: string; schema: { type: string; minItems: number; items: { anyOf: unknown[] } }; strict?: boolean };
    expect(grammar).toMatchObject({ type: "json_schema", schema: { type: "array", minItems: 1 } });
    expect(grammar.schema.items.anyOf).toHaveLength(2);
    const chunks = await streamedChunks(s.url, { tool_choice: "required" });
    const calls = chunks.flatMap((c) => (c.choices[0].delta.tool_calls as Array<{ index: number; function: { name?: string; arguments: string } }> | undefined) ?? []);
    expect(calls.filter((c) => c.function.name).map((c) => c.function.name)).toEqual(["get_weather", "get_time"]);
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe("tool_calls");
  });

  it("a named function: the backend gets its parameters schema; the arguments stream as generated; finish_reason stop", async () => {
    const s = await start('{"city": "Paris"}', undefined);
    const named = { tool_choice: { type: "function", function: { name: "get_weather" } } };
    const w = await whole(s.url, named);
    expect(w.finish_reason).toBe("stop");
    expect(w.message.tool_calls!.map((c) => c.function)).toEqual([{ name: "get_weather", arguments: '{"city": "Paris"}' }]);
    expect(s.backend.requests[0].grammar).toEqual({ type: "json_schema", schema: TOOLS[0].function.parameters });
    const chunks = await streamedChunks(s.url, named);
    const calls = chunks.flatMap((c) => (c.choices[0].delta.tool_calls as Array<Record<string, unknown>> | undefined) ?? []);
    expect(calls[0]).toMatchObject({ index: 0, type: "function", function: { name: "get_weather", arguments: "" } });
    // One byte per token: each fragment is what the model wrote, and they join to the arguments.
    expect(calls.length).toBeGreaterThan(5);
    expect(calls.slice(1).map((c) => (c.function as { arguments: string }).arguments).join("")).toBe('{"city": "Paris"}');
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe("stop");
  });

  const bad: Array<[string, Record<string, unknown>, string, string]> = [
    ["a forced tool_choice with response_format (two constraints)", { tool_choice: "required", response_format: { type: "json_object" } }, "invalid_value", "tool_choice"],
    ["a named function whose parameters are not a valid JSON Schema", { tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { a: { type: "strin" } } } } }], tool_choice: { type: "function", function: { name: "f" } } }, "invalid_value", "tools[0].function.parameters"],
    ["a named tool_choice that is not a tool", { tool_choice: { type: "function", function: { name: "nope" } } }, "invalid_value", "tool_choice.function.name"],
    ["tool_choice without tools", { tools: undefined, tool_choice: "auto" }, "invalid_value", "tool_choice"],
    ["tool_choice of another shape", { tool_choice: "always" }, "invalid_value", "tool_choice"],
    ["tools not a list", { tools: { a: 1 } }, "invalid_value", "tools"],
    ["a tool that is not a function", { tools: [{ type: "code_interpreter" }] }, "invalid_value", "tools[0].type"],
    ["a function name with a space", { tools: [{ type: "function", function: { name: "get weather" } }] }, "invalid_value", "tools[0].function.name"],
    ["the same name twice", { tools: [TOOLS[1], TOOLS[1]] }, "invalid_value", "tools[1].function.name"],
    ["parameters not an object", { tools: [{ type: "function", function: { name: "f", parameters: "x" } }] }, "invalid_value", "tools[0].function.parameters"],
    ["an unknown field in a function", { tools: [{ type: "function", function: { name: "f", returns: 1 } }] }, "unknown_field", "tools[0].function.returns"],
    ["parallel_tool_calls not a boolean", { parallel_tool_calls: "yes" }, "invalid_value", "parallel_tool_calls"],
    [
      "an assistant call whose arguments are not a JSON object",
      { messages: [{ role: "user", content: "x" }, { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "[1]" } }] }] },
      "invalid_value",
      "messages[1].tool_calls[0].function.arguments",
    ],
    [
      "an assistant call without an id",
      { messages: [{ role: "user", content: "x" }, { role: "assistant", content: null, tool_calls: [{ type: "function", function: { name: "f", arguments: "{}" } }] }] },
      "invalid_value",
      "messages[1].tool_calls[0].id",
    ],
    ["tool_calls on a user message", { messages: [{ role: "user", content: "x", tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }] }] }, "invalid_value", "messages[0].tool_calls"],
  ];
  for (const [name, extra, code, param] of bad) {
    it(`refuses ${name}: 400 naming ${param}`, async () => {
      const s = await start("x", "hermes");
      const res = await post(s.url, extra);
      expect(res.status).toBe(400);
      const j = (await res.json()) as { error: { code: string; param: string; type: string; message: string } };
      expect(j.error).toMatchObject({ code, param, type: "invalid_request_error" });
      expect(s.backend.requests).toHaveLength(0);
    });
  }

  it("a model without a tool-call format refuses tools (400 naming tools) and still takes tool_choice none", async () => {
    const s = await start("plain", undefined);
    const res = await post(s.url, {});
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string; param: string } }).error).toMatchObject({ code: "unsupported_parameter", param: "tools" });
    expect((await whole(s.url, { tool_choice: "none" })).message.content).toBe("plain");
  });
});

/** A copy of models/tiny (weights linked) whose tokenizer_config.json has a tools-aware template. */
function toolsModelDir(template = HERMES_TOOLS_TEMPLATE): string {
  const dir = mkdtempSync(join(tmpdir(), "trtd-tools-"));
  for (const f of ["config.json", "generation_config.json"]) cpSync(join(modelDir, f), join(dir, f));
  symlinkSync(join(modelDir, "model.safetensors"), join(dir, "model.safetensors"));
  const config = JSON.parse(readFileSync(join(modelDir, "tokenizer_config.json"), "utf8")) as { chat_template: string };
  config.chat_template = template;
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config));
  return dir;
}

describe("tool calls - the real system (decode worker on the reference executor, models/tiny with a tools template)", () => {
  let dir: string;
  let real: RealApi;
  beforeAll(async () => {
    dir = toolsModelDir();
    real = await startRealApi({}, { modelDir: dir });
  }, 60_000);
  afterAll(async () => {
    await real?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("auto: the tools reach the prompt; the random model writes no call, so whole and streamed answers are the same content", async () => {
    expect(real.server.toolCalls).toBe("hermes");
    const client = new OpenAI({ baseURL: `${real.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const messages = [{ role: "user" as const, content: "Weather in Paris?" }];
    const body = { model: MODEL, messages, max_tokens: 12, temperature: 0 };
    const plain = await client.chat.completions.create(body);
    const w = await client.chat.completions.create({ ...body, tools: TOOLS });
    // The template wrote the tools into the prompt.
    expect(w.usage!.prompt_tokens).toBeGreaterThan(plain.usage!.prompt_tokens + 50);
    expect(w.choices[0].message.tool_calls).toBeUndefined();
    expect(["stop", "length"]).toContain(w.choices[0].finish_reason);
    let content = "";
    let finish: string | null = null;
    for await (const chunk of await client.chat.completions.create({ ...body, tools: TOOLS, stream: true })) {
      expect(chunk.choices[0]?.delta.tool_calls).toBeUndefined();
      content += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect({ content, finish }).toEqual({ content: w.choices[0].message.content, finish: w.choices[0].finish_reason });
    expect(real.logs).toEqual([]);
    const s = real.decode.executor.stats();
    expect({ active: s.activeRequests, queued: s.queuedRequests, kv: s.kvBlocksUsed }).toEqual({ active: 0, queued: 0, kv: 0 });
  }, 60_000);
});

describe("tool calls - forced choices constrain decoding on the real executor (models/tiny, random weights)", () => {
  // Bounded parameter schemas (enums), so that every constrained generation ends within max_tokens.
  const BOUNDED = [
    { type: "function" as const, function: { name: "get_weather", description: "Weather now.", parameters: { type: "object", properties: { city: { enum: ["Paris", "Oslo"] }, days: { type: "integer", minimum: 1, maximum: 3 } }, required: ["city", "days"], additionalProperties: false }, strict: true } },
    { type: "function" as const, function: { name: "get_time", description: "Time now.", parameters: { type: "object", properties: { tz: { enum: ["UTC", "CET"] } }, required: ["tz"], additionalProperties: false }, strict: true } },
  ];
  const ajv = new Ajv2020({ strict: false });
  const validators = new Map(BOUNDED.map((t) => [t.function.name, ajv.compile(t.function.parameters)]));
  let real: RealApi;
  let client: OpenAI;
  beforeAll(async () => {
    real = await startRealApi(); // models/tiny's ChatML template has no tool-call format: forced choices need none
    client = new OpenAI({ baseURL: `${real.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
  }, 60_000);
  afterAll(async () => {
    await real?.stop();
  });

  /** Each call names a tool and its arguments validate against that tool's parameters (ajv). */
  function expectValidCalls(calls: Array<{ type: string; function?: { name: string; arguments: string } }> | undefined, names: string[]) {
    expect(calls?.length ?? 0).toBeGreaterThan(0);
    for (const c of calls!) {
      expect(c.type).toBe("function");
      expect(names).toContain(c.function!.name);
      const validate = validators.get(c.function!.name)!;
      expect(validate(JSON.parse(c.function!.arguments)), `${c.function!.arguments} ${ajv.errorsText(validate.errors)}`).toBe(true);
    }
  }

  const messages = [{ role: "user" as const, content: "Weather in Paris?" }];

  it("a named function: one call to it, arguments valid against its schema, whole and streamed, several samplings", async () => {
    for (const sampling of [{ temperature: 0 }, { temperature: 1, seed: 1 }, { temperature: 1, seed: 2 }]) {
      const body = { model: MODEL, messages, tools: BOUNDED, tool_choice: { type: "function" as const, function: { name: "get_weather" } }, max_tokens: 100, ...sampling };
      const w = await client.chat.completions.create(body);
      expect(w.choices[0].finish_reason).toBe("stop");
      expect(w.choices[0].message.tool_calls).toHaveLength(1);
      expectValidCalls(w.choices[0].message.tool_calls, ["get_weather"]);
      // Streamed, through the client's accumulator: the same call (seeded or greedy: the same tokens).
      const final = await client.chat.completions.stream(body).finalChatCompletion();
      const fn = (m: typeof w.choices[0]["message"]) => m.tool_calls!.map((c) => (c.type === "function" ? { name: c.function.name, arguments: c.function.arguments } : null));
      expect(fn(final.choices[0].message)).toEqual(fn(w.choices[0].message));
    }
  }, 120_000);

  it("required: at least one call, each valid; parallel_tool_calls false gives exactly one", async () => {
    for (const seed of [1, 2, 3]) {
      const base = { model: MODEL, messages, tools: BOUNDED, tool_choice: "required" as const, max_tokens: 200, temperature: 1, seed };
      const one = await client.chat.completions.create({ ...base, parallel_tool_calls: false });
      expect(one.choices[0].finish_reason).toBe("tool_calls");
      expect(one.choices[0].message.tool_calls).toHaveLength(1);
      expectValidCalls(one.choices[0].message.tool_calls, ["get_weather", "get_time"]);
      const any = await client.chat.completions.create(base);
      expectValidCalls(any.choices[0].message.tool_calls, ["get_weather", "get_time"]);
    }
  }, 120_000);

  it("two turns on the real executor: a forced call, its result sent back, then an answer; nothing leaks", async () => {
    const first = await client.chat.completions.create({ model: MODEL, messages, tools: BOUNDED, tool_choice: { type: "function", function: { name: "get_time" } }, max_tokens: 50, temperature: 0 });
    const call = first.choices[0].message.tool_calls![0];
    expectValidCalls([call], ["get_time"]);
    const second = await client.chat.completions.create({
      model: MODEL,
      messages: [...messages, first.choices[0].message, { role: "tool", tool_call_id: call.id, content: "12:00" }],
      tools: BOUNDED,
      tool_choice: "none",
      max_tokens: 8,
      temperature: 0,
    });
    expect(typeof second.choices[0].message.content).toBe("string");
    expect(second.choices[0].message.tool_calls).toBeUndefined();
    // The tool result went into the prompt: the second prompt holds the first, the call and the result.
    expect(second.usage!.prompt_tokens).toBeGreaterThan(first.usage!.prompt_tokens);
    await eventually(() => real.decode.executor.stats().activeRequests === 0, 5000, "the decode executor to go idle");
    const s = real.decode.executor.stats();
    expect({ active: s.activeRequests, queued: s.queuedRequests, kv: s.kvBlocksUsed }).toEqual({ active: 0, queued: 0, kv: 0 });
    expect(real.decode.grammars.stats().liveMatchers).toBe(0);
    expect(real.logs).toEqual([]);
  }, 60_000);
});

describe("tool calls - a two-turn tool loop through the real tokenizer and chat template (decode worker test double)", () => {
  const fixture = JSON.parse(readFileSync(new URL("./fixtures/tool-loop-hf.json", import.meta.url), "utf8")) as {
    tools: Array<{ type: "function"; function: { name: string; description: string; parameters: JSONSchema } }>;
    first: { messages: Array<{ role: "system" | "user"; content: string }>; prompt: string };
    call: { name: string; arguments: Record<string, unknown> };
    result: string;
    second: { prompt: string };
  };
  const ANSWER = "It is 18 C and sunny in Paris.";
  let dir: string;
  let plane: RequestPlane;
  let tokenizer: Tokenizer;
  let double: ScriptedDecodeWorkerTestDouble;
  let api: RunningApiServer;

  beforeAll(async () => {
    dir = toolsModelDir();
    tokenizer = Tokenizer.fromModelDir(dir);
    const eos = tokenizer.eosTokenIds[0];
    // The model's side of the loop: a call until a tool result is in the prompt, then the answer.
    const callText = `<tool_call>\n${JSON.stringify({ name: fixture.call.name, arguments: fixture.call.arguments })}\n</tool_call>`;
    plane = createInProcessPlane();
    double = await startScriptedDecodeWorkerTestDouble({
      plane,
      modelDir: dir,
      reply: (prompt) => [...tokenizer.encode(tokenizer.decode(prompt).includes("<tool_response>") ? ANSWER : callText), eos],
    });
    api = await startApiServer({ plane, tokenizerDir: dir, modelName: MODEL, host: "127.0.0.1", port: 0, log: () => {} });
    const router = api.router;
    await eventually(() => router.readiness().ready, 10_000, "the api to see the decode worker test double", { intervalMs: 20 });
  }, 60_000);
  afterAll(async () => {
    await api?.close();
    await double?.stop();
    await plane?.close();
    tokenizer?.free();
    rmSync(dir, { recursive: true, force: true });
  });

  it("auto: the template's <tool_call> picks the hermes parser", () => {
    expect(api.toolCalls).toBe("hermes");
  });

  for (const stream of [false, true]) {
    it(`the official client's loop (${stream ? "streamed" : "whole"}): call, tool result, answer; the prompts are transformers'`, async () => {
      const client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const from = double.prompts.length;
      const seen: unknown[] = [];
      const tools: RunnableToolFunctionWithParse<Record<string, unknown>>[] = fixture.tools.map((t) => ({
        type: "function",
        function: {
          ...t.function,
          parse: (args: string) => JSON.parse(args) as Record<string, unknown>,
          function: (args: Record<string, unknown>) => {
            seen.push(args);
            return fixture.result;
          },
        },
      }));
      const body = { model: MODEL, messages: fixture.first.messages, tools };
      const runner = stream ? client.chat.completions.runTools({ ...body, stream: true }) : client.chat.completions.runTools(body);
      expect(await runner.finalContent()).toBe(ANSWER);
      // The tool ran once, with the arguments the model wrote.
      expect(seen).toEqual([fixture.call.arguments]);
      const calls = runner.messages.flatMap((m) => ("tool_calls" in m && m.tool_calls ? m.tool_calls : []));
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatchObject({ type: "function", function: { name: fixture.call.name, arguments: JSON.stringify(fixture.call.arguments) } });
      // Two requests, whose prompts are what transformers renders for the same conversation.
      const prompts = double.prompts.slice(from).map((p) => tokenizer.decode(p));
      expect(prompts).toEqual([fixture.first.prompt, fixture.second.prompt]);
    });
  }

  it("special-token text in a tool definition is refused like in content (400 naming messages)", async () => {
    const res = await fetch(`${api.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }], tools: [{ type: "function", function: { name: "f", description: "<|im_end|>" } }] }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string } }).error.param).toBe("messages");
  });
});

describe("tool calls - a Llama 3.1 template: auto picks llama3_json (real tokenizer, decode worker test double)", () => {
  let dir: string;
  let plane: RequestPlane;
  let tokenizer: Tokenizer;
  let double: ScriptedDecodeWorkerTestDouble;
  let api: RunningApiServer;
  beforeAll(async () => {
    dir = toolsModelDir(LLAMA31_CHAT_TEMPLATE);
    tokenizer = Tokenizer.fromModelDir(dir);
    const eos = tokenizer.eosTokenIds[0];
    plane = createInProcessPlane();
    double = await startScriptedDecodeWorkerTestDouble({ plane, modelDir: dir, reply: () => [...tokenizer.encode(LLAMA3_TWO_CALLS.replace("<|python_tag|>", "")), eos] });
    api = await startApiServer({ plane, tokenizerDir: dir, modelName: MODEL, host: "127.0.0.1", port: 0, log: () => {} });
    const router = api.router;
    await eventually(() => router.readiness().ready, 10_000, "the api to see the decode worker test double", { intervalMs: 20 });
  }, 60_000);
  afterAll(async () => {
    await api?.close();
    await double?.stop();
    await plane?.close();
    tokenizer?.free();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the calls come back whole and streamed; the tools reached the template (Environment: ipython)", async () => {
    expect(api.toolCalls).toBe("llama3_json");
    const client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const body = { model: MODEL, messages: [{ role: "user" as const, content: "Weather and time in Paris?" }], tools: TOOLS };
    const fns = (m: { tool_calls?: Array<{ type: string; function?: { name: string; arguments: string } }> }) => m.tool_calls!.map((c) => ({ name: c.function!.name, arguments: c.function!.arguments }));
    const w = await client.chat.completions.create(body);
    expect(w.choices[0]).toMatchObject({ finish_reason: "tool_calls", message: { content: null } });
    expect(fns(w.choices[0].message)).toEqual(WANT_CALLS);
    const final = await client.chat.completions.stream(body).finalChatCompletion();
    expect(fns(final.choices[0].message)).toEqual(WANT_CALLS);
    const prompt = tokenizer.decode(double.prompts[0]);
    expect(prompt).toContain("Environment: ipython");
    expect(prompt).toContain('"name": "get_weather"');
  });
});
