// The HTTP layer on its own (hono's app.request, no socket): validation, error JSON, SSE framing, auth,
// limits, metrics. Workers are replaced by named test doubles here; see e2e tests for the real system.
import { describe, expect, it } from "vitest";
import { eventually } from "@trtd/test-support";
import { createApiApp } from "../src/index.js";
import { ByteCodecTestDouble, ScriptedBackendTestDouble } from "./support/test-doubles.js";

const MODEL = "tiny";
const enc = (s: string) => [...Buffer.from(s)];

function setup(opts: { script?: (r: unknown) => number[]; ready?: boolean; apiKey?: string; delay?: number; timeoutMs?: number } = {}) {
  const backend = new ScriptedBackendTestDouble(opts.script ?? (() => enc("Hello world!")), opts.ready ?? true, opts.delay ?? 0);
  const { app, metrics } = createApiApp({
    backend,
    codec: new ByteCodecTestDouble(),
    modelName: MODEL,
    apiKey: opts.apiKey,
    limits: { maxBodyBytes: 4096, maxPromptTokens: 200, contextLength: 256, ...(opts.timeoutMs ? { requestTimeoutMs: opts.timeoutMs } : {}) },
    log: () => {},
  });
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    app.request(path, { method: "POST", body: typeof body === "string" ? body : JSON.stringify(body), headers: { "content-type": "application/json", ...headers } });
  return { app, backend, metrics, post };
}

const chat = (extra: Record<string, unknown> = {}) => ({ model: MODEL, messages: [{ role: "user", content: "hi" }], ...extra });

async function sseEvents(res: Response): Promise<string[]> {
  const text = await res.text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("data: "))
    .map((l) => l.slice(6));
}

describe("api - validation", () => {
  const bad: Array<[string, Record<string, unknown>, number, string, string | null]> = [
    ["n above the maximum", chat({ n: 17 }), 400, "invalid_value", "n"],
    ["n = 0", chat({ n: 0 }), 400, "invalid_value", "n"],
    ["top_logprobs without logprobs (as OpenAI)", chat({ top_logprobs: 2 }), 400, "invalid_value", "top_logprobs"],
    ["top_logprobs over 20", chat({ logprobs: true, top_logprobs: 21 }), 400, "invalid_value", "top_logprobs"],
    ["logprobs not a boolean", chat({ logprobs: 3 }), 400, "invalid_value", "logprobs"],
    ["presence_penalty out of range", chat({ presence_penalty: 2.5 }), 400, "invalid_value", "presence_penalty"],
    ["frequency_penalty not a number", chat({ frequency_penalty: "x" }), 400, "invalid_value", "frequency_penalty"],
    ["repetition_penalty zero", chat({ repetition_penalty: 0 }), 400, "invalid_value", "repetition_penalty"],
    ["min_p over 1", chat({ min_p: 1.5 }), 400, "invalid_value", "min_p"],
    ["min_tokens negative", chat({ min_tokens: -1 }), 400, "invalid_value", "min_tokens"],
    ["min_tokens over max_tokens", chat({ min_tokens: 5, max_tokens: 4 }), 400, "invalid_value", "min_tokens"],
    ["ignore_eos not a boolean", chat({ ignore_eos: "yes" }), 400, "invalid_value", "ignore_eos"],
    ["stop_token_ids not ids", chat({ stop_token_ids: [-1] }), 400, "invalid_value", "stop_token_ids"],
    ["stop_token_ids outside the vocabulary", chat({ stop_token_ids: [5000] }), 400, "invalid_value", "stop_token_ids"],
    ["logit_bias key not an id", chat({ logit_bias: { abc: 1 } }), 400, "invalid_value", "logit_bias"],
    ["logit_bias value out of range", chat({ logit_bias: { "5": 101 } }), 400, "invalid_value", "logit_bias"],
    ["logit_bias id outside the vocabulary", chat({ logit_bias: { "5000": 1 } }), 400, "invalid_value", "logit_bias"],
    ["temperature out of range", chat({ temperature: 2.5 }), 400, "invalid_value", "temperature"],
    ["top_p zero", chat({ top_p: 0 }), 400, "invalid_value", "top_p"],
    ["seed not an integer", chat({ seed: 1.5 }), 400, "invalid_value", "seed"],
    ["unknown field", chat({ banana: 1 }), 400, "unknown_field", "banana"],
    ["non-neutral unsupported field", chat({ store: true }), 400, "unsupported_parameter", "store"],
    ["too many stops", chat({ stop: ["a", "b", "c", "d", "e"] }), 400, "invalid_value", "stop"],
    ["empty messages", chat({ messages: [] }), 400, "invalid_value", "messages"],
    ["bad role", chat({ messages: [{ role: "robot", content: "x" }] }), 400, "invalid_value", "messages[0].role"],
    ["wrong model", chat({ model: "gpt-9" }), 404, "model_not_found", "model"],
    ["max_tokens over the context (named as sent)", chat({ max_tokens: 1000 }), 400, "context_length_exceeded", "max_tokens"],
    ["max_completion_tokens over the context", chat({ max_completion_tokens: 1000 }), 400, "context_length_exceeded", "max_completion_tokens"],
    ["a message without content", chat({ messages: [{ role: "user" }] }), 400, "invalid_request", "messages[0].content"],
    ["a message with null content", chat({ messages: [{ role: "system", content: "be brief" }, { role: "user", content: null }] }), 400, "invalid_request", "messages[1].content"],
    ["tools on a model without a tool-call format", chat({ tools: [{ type: "function", function: { name: "f" } }] }), 400, "unsupported_parameter", "tools"],
    ["an assistant tool call whose arguments are not JSON", chat({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{" } }] }, { role: "user", content: "and?" }] }), 400, "invalid_value", "messages[1].tool_calls[0].function.arguments"],
    ["an unknown message field", chat({ messages: [{ role: "user", content: "hi", mood: "happy" }] }), 400, "unknown_field", "messages[0].mood"],
    ["a message name that is not a string", chat({ messages: [{ role: "user", content: "hi", name: 7 }] }), 400, "invalid_value", "messages[0].name"],
    ["stream_options without stream", chat({ stream_options: { include_usage: true } }), 400, "invalid_value", "stream_options"],
    ["prompt too long", chat({ messages: [{ role: "user", content: "x".repeat(300) }] }), 400, "context_length_exceeded", "messages"],
  ];
  const badCompletions: Array<[string, Record<string, unknown>, number, string, string | null]> = [
    ["prompt too long", { model: MODEL, prompt: "x".repeat(300) }, 400, "context_length_exceeded", "prompt"],
    ["max_tokens over the context", { model: MODEL, prompt: "x", max_tokens: 1000 }, 400, "context_length_exceeded", "max_tokens"],
    ["empty prompt", { model: MODEL, prompt: "" }, 400, "invalid_value", "prompt"],
    ["no prompt", { model: MODEL }, 400, "invalid_request", "prompt"],
    ["n not an integer", { model: MODEL, prompt: "x", n: 1.5 }, 400, "invalid_value", "n"],
    ["best_of > 1", { model: MODEL, prompt: "x", best_of: 2 }, 400, "unsupported_parameter", "best_of"],
    ["logprobs over 20", { model: MODEL, prompt: "x", logprobs: 21 }, 400, "invalid_value", "logprobs"],
    ["logprobs as a boolean (completions take a count)", { model: MODEL, prompt: "x", logprobs: true }, 400, "invalid_value", "logprobs"],
    ["logit_bias id outside the vocabulary", { model: MODEL, prompt: "x", logit_bias: { "300": -1 } }, 400, "invalid_value", "logit_bias"],
  ];
  for (const [name, body, status, code, param] of badCompletions) {
    it(`completions: refuses ${name} with OpenAI error JSON naming ${param}`, async () => {
      const { post, backend } = setup();
      const res = await post("/v1/completions", body);
      expect(res.status).toBe(status);
      const j = (await res.json()) as { error: { code: string; param: string | null } };
      expect(j.error).toMatchObject({ code, param });
      expect(backend.requests).toHaveLength(0);
    });
  }
  for (const [name, body, status, code, param] of bad) {
    it(`refuses ${name} with OpenAI error JSON`, async () => {
      const { post, backend } = setup();
      const res = await post("/v1/chat/completions", body);
      expect(res.status).toBe(status);
      const j = (await res.json()) as { error: { code: string; param: string | null; type: string; message: string } };
      expect(j.error.code).toBe(code);
      expect(j.error.param).toBe(param);
      expect(j.error.message.length).toBeGreaterThan(0);
      expect(backend.requests).toHaveLength(0);
    });
  }

  it("accepts neutral values of unsupported fields", async () => {
    const { post } = setup();
    const res = await post("/v1/chat/completions", chat({ presence_penalty: 0, frequency_penalty: 0, logit_bias: {}, user: "u1" }));
    expect(res.status).toBe(200);
    // In messages too: empty tool_calls, null refusal, a name, and an empty string as content.
    const msgs = [{ role: "user", content: "", name: "ann" }, { role: "assistant", content: "ok", tool_calls: [], refusal: null }, { role: "user", content: [{ type: "text", text: "hi" }] }];
    expect((await post("/v1/chat/completions", chat({ messages: msgs }))).status).toBe(200);
  });

  it("refuses invalid JSON and oversized bodies", async () => {
    const { post } = setup();
    const r1 = await post("/v1/chat/completions", "{not json");
    expect(r1.status).toBe(400);
    expect(((await r1.json()) as any).error.code).toBe("invalid_json");
    const r2 = await post("/v1/chat/completions", chat({ messages: [{ role: "user", content: "x".repeat(5000) }] }));
    expect(r2.status).toBe(413);
    expect(r2.headers.get("connection")).toBe("close");
    expect(((await r2.json()) as any).error).toMatchObject({ code: "request_too_large", type: "invalid_request_error", param: null });
  });

  it("maps max_tokens, temperature, top_p, seed and eos into the internal request", async () => {
    const { post, backend } = setup();
    const res = await post("/v1/chat/completions", chat({ max_tokens: 5, temperature: 0.5, top_p: 0.9, seed: 7 }));
    expect(res.status).toBe(200);
    const req = backend.requests[0];
    expect(req.maxTokens).toBe(5);
    expect(req.sampling).toEqual({ temperature: 0.5, topP: 0.9, topK: 0, seed: 7 });
    expect(req.stopTokenIds).toEqual([256]);
    expect(req.deadline).toBeGreaterThan(Date.now());
    const j = (await res.json()) as any;
    expect(j.choices[0].message.content).toBe("Hello");
    expect(j.choices[0].finish_reason).toBe("length");
    expect(j.usage).toEqual({ prompt_tokens: req.tokens.length, completion_tokens: 5, total_tokens: req.tokens.length + 5 });
  });
});

describe("api - responses", () => {
  it("stops at a stop string, excluding it, and cancels the backend stream", async () => {
    const { post, backend } = setup();
    const res = await post("/v1/completions", { model: MODEL, prompt: "x", max_tokens: 50, stop: ["wor"] });
    const j = (await res.json()) as any;
    expect(j.object).toBe("text_completion");
    expect(j.choices[0].text).toBe("Hello ");
    expect(j.choices[0].finish_reason).toBe("stop");
    expect(backend.open).toBe(0);
  });

  it("finishes with stop at eos", async () => {
    const { post } = setup({ script: () => [...enc("Hi"), 256, ...enc("never")] });
    const j = (await (await post("/v1/completions", { model: MODEL, prompt: "x", max_tokens: 50 })).json()) as any;
    expect(j.choices[0].text).toBe("Hi");
    expect(j.choices[0].finish_reason).toBe("stop");
  });

  it("streams chat as SSE ending in [DONE], with a usage chunk when asked", async () => {
    const { post } = setup();
    const res = await post("/v1/chat/completions", chat({ stream: true, stream_options: { include_usage: true }, max_tokens: 5 }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = await sseEvents(res);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("")).toBe("Hello");
    const last = chunks.at(-2);
    expect(last.choices[0].finish_reason).toBe("length");
    const usage = chunks.at(-1);
    expect(usage.choices).toEqual([]);
    expect(usage.usage.completion_tokens).toBe(5);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it("streams completions without usage unless asked", async () => {
    const { post } = setup();
    const events = await sseEvents(await post("/v1/completions", { model: MODEL, prompt: "x", max_tokens: 3, stream: true }));
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks.map((c) => c.choices[0].text).join("")).toBe("Hel");
    expect(chunks.every((c) => !("usage" in c))).toBe(true);
  });

  it("lists the model, and reports health from the backend", async () => {
    const { app } = setup();
    const models = (await (await app.request("/v1/models")).json()) as any;
    expect(models.data.map((m: any) => m.id)).toEqual([MODEL]);
    expect((await app.request("/health")).status).toBe(200);
    const down = setup({ ready: false });
    const h = await down.app.request("/health");
    expect(h.status).toBe(503);
    expect(((await h.json()) as any).status).toBe("not_ready");
  });

  it("requires the bearer key when one is set", async () => {
    const { post } = setup({ apiKey: "sekrit" });
    const r1 = await post("/v1/chat/completions", chat());
    expect(r1.status).toBe(401);
    expect(((await r1.json()) as any).error.type).toBe("authentication_error");
    expect((await post("/v1/chat/completions", chat(), { authorization: "Bearer wrong!" })).status).toBe(401);
    expect((await post("/v1/chat/completions", chat(), { authorization: "Bearer sekrit" })).status).toBe(200);
  });

  it("ends a request past its deadline with 504 deadline_exceeded and cancels the backend", async () => {
    const { post, backend } = setup({ delay: 20, timeoutMs: 100, script: () => enc("x".repeat(100)) });
    const res = await post("/v1/completions", { model: MODEL, prompt: "x", max_tokens: 100 });
    expect(res.status).toBe(504);
    expect(((await res.json()) as any).error.code).toBe("deadline_exceeded");
    await new Promise((r) => setTimeout(r, 50));
    expect(backend.cancelled).toBe(1);
    expect(backend.open).toBe(0);
  });

  it("a client that stops reading a stream cancels the backend", async () => {
    const { post, backend } = setup({ delay: 20, script: () => enc("y".repeat(100)) });
    const res = await post("/v1/completions", { model: MODEL, prompt: "x", max_tokens: 100, stream: true });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    // 100 tokens take 2 s; the backend must see the cancellation well before that.
    await eventually(() => backend.open === 0, 500, "the backend stream to be cancelled", { intervalMs: 10, retryOnError: false });
    expect(backend.yielded).toBeLessThan(20);
  });

  it("answers unknown routes with OpenAI error JSON", async () => {
    const { app } = setup();
    const res = await app.request("/v1/embeddings", { method: "POST" });
    expect(res.status).toBe(404);
    expect(((await res.json()) as any).error.type).toBe("not_found_error");
  });

  it("exposes Prometheus metrics for requests and tokens", async () => {
    const { post, app } = setup();
    await post("/v1/completions", { model: MODEL, prompt: "x", max_tokens: 4 });
    await post("/v1/completions", { model: MODEL, prompt: "x", n: 17 });
    const text = await (await app.request("/metrics")).text();
    expect(text).toMatch(/trtd_requests_total\{endpoint="\/v1\/completions",status="200"\} 1/);
    expect(text).toMatch(/trtd_requests_total\{endpoint="\/v1\/completions",status="400"\} 1/);
    expect(text).toMatch(/trtd_generated_tokens_total 4/);
    expect(text).toMatch(/trtd_routed_requests_total\{mode="aggregated"\} 1/);
    expect(text).toMatch(/trtd_time_to_first_token_seconds_count 1/);
    expect(text).toMatch(/trtd_inter_token_latency_seconds_count 3/);
  });
});
