// Reasoning content through the api's real HTTP server. Part one serves createApiApp with named test doubles (a
// backend that replays scripted text one byte per token, so the tags arrive split at every position) and reads it
// with fetch and the official OpenAI client. Part two runs the real system (tokenizer, decode worker on
// models/tiny) to check that the chat template decides.
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve, type ServerType } from "@hono/node-server";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { modelDir } from "@trtd/test-support";
import { createApiApp } from "../src/index.js";
import type { ReasoningOptions } from "../src/openai/reasoning.js";
import { startRealApi, type RealApi } from "./support/real-api.js";
import { ByteCodecTestDouble, ScriptedBackendTestDouble } from "./support/test-doubles.js";

const MODEL = "tiny";
const EOS = 256;
const THOUGHT = "<think>\nFirst, 2+2. That is 4 </thin not a tag.\n</think>\n\nThe answer is 4.";

interface Served {
  url: string;
  close(): Promise<void>;
}

/** createApiApp over the test doubles, on a real socket (so streams take the Node fast path). */
async function serveTestDoubles(text: string, reasoning: ReasoningOptions | undefined): Promise<Served> {
  const backend = new ScriptedBackendTestDouble(() => [...Buffer.from(text), EOS]);
  const { app } = createApiApp({ backend, codec: new ByteCodecTestDouble(), modelName: MODEL, reasoning, limits: { contextLength: 4096 }, log: () => {} });
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(s));
    s.once("error", reject);
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

interface Message {
  content: string | null;
  reasoning_content?: string | null;
}

async function chat(url: string, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "2+2?" }], ...extra }),
  });
  expect(res.status).toBe(200);
  return res;
}

async function whole(url: string, extra: Record<string, unknown> = {}) {
  const j = (await (await chat(url, extra)).json()) as { choices: Array<{ message: Message; finish_reason: string }> };
  return j.choices[0];
}

/** The stream's deltas, joined per field, and every delta as sent. */
async function streamed(url: string, extra: Record<string, unknown> = {}) {
  const text = await (await chat(url, { stream: true, ...extra })).text();
  const events = text.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6));
  expect(events.at(-1)).toBe("[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: Array<{ delta: Record<string, string>; finish_reason: string | null }> });
  const deltas = chunks.map((c) => c.choices[0].delta);
  const join = (k: string) => deltas.map((d) => d[k] ?? "").join("");
  return { reasoning: join("reasoning_content"), content: join("content"), deltas, finish: chunks.at(-1)!.choices[0].finish_reason };
}

describe("reasoning content - HTTP, test-double backend", () => {
  const servers: Served[] = [];
  const start = async (text: string, reasoning: ReasoningOptions | undefined) => {
    const s = await serveTestDoubles(text, reasoning);
    servers.push(s);
    return s.url;
  };
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it("splits the block into reasoning_content, whole and streamed alike, never sending tag text", async () => {
    const url = await start(THOUGHT, {});
    const want = { reasoning: "First, 2+2. That is 4 </thin not a tag.", content: "The answer is 4." };
    const w = await whole(url);
    expect(w.message).toMatchObject({ role: "assistant", reasoning_content: want.reasoning, content: want.content });
    expect(w.finish_reason).toBe("stop");
    const s = await streamed(url);
    expect({ reasoning: s.reasoning, content: s.content }).toEqual(want);
    expect(s.finish).toBe("stop");
    // Reasoning deltas come first, then content ones; no delta holds both, none holds tag text.
    const kinds = s.deltas.filter((d) => d.reasoning_content || d.content).map((d) => (d.reasoning_content ? "r" : "c"));
    expect(kinds.join("")).toMatch(/^r+c+$/);
    for (const d of s.deltas) expect(JSON.stringify(d)).not.toMatch(/<think>|<\/think>/);
  });

  it("a block cut off by max_tokens: everything is reasoning_content, content is null", async () => {
    const url = await start(THOUGHT, {});
    const w = await whole(url, { max_tokens: 20 });
    expect(w.finish_reason).toBe("length");
    expect(w.message).toMatchObject({ content: null, reasoning_content: "First, 2+2. " });
    const s = await streamed(url, { max_tokens: 20 });
    expect({ reasoning: s.reasoning, content: s.content, finish: s.finish }).toEqual({ reasoning: "First, 2+2. ", content: "", finish: "length" });
  });

  it("a template that opens the block in the prompt: only </think> comes, and still splits", async () => {
    const url = await start("plan it\n</think>\nDone.", { startsInReasoning: true });
    expect((await whole(url)).message).toMatchObject({ reasoning_content: "plan it", content: "Done." });
    const s = await streamed(url);
    expect({ reasoning: s.reasoning, content: s.content }).toEqual({ reasoning: "plan it", content: "Done." });
  });

  it("output without a block: reasoning_content is null, content untouched", async () => {
    const url = await start(" Just 4. <think>", {});
    expect((await whole(url)).message).toMatchObject({ reasoning_content: null, content: " Just 4. <think>" });
    const s = await streamed(url);
    expect({ reasoning: s.reasoning, content: s.content }).toEqual({ reasoning: "", content: " Just 4. <think>" });
  });

  it("without a parser the text is left as it came, with no reasoning_content field", async () => {
    const url = await start(THOUGHT, undefined);
    const w = await whole(url);
    expect(w.message.content).toBe(THOUGHT);
    expect(w.message).not.toHaveProperty("reasoning_content");
    const s = await streamed(url);
    expect(s.content).toBe(THOUGHT);
    expect(s.deltas.some((d) => "reasoning_content" in d)).toBe(false);
  });

  it("/v1/completions is not split", async () => {
    const url = await start(THOUGHT, {});
    const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: MODEL, prompt: "2+2?", max_tokens: 200 }) });
    const j = (await res.json()) as { choices: Array<{ text: string }> };
    expect(j.choices[0].text).toBe(THOUGHT);
  });

  it("the official OpenAI client reads message.reasoning_content and delta.reasoning_content", async () => {
    const url = await start(THOUGHT, {});
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
    const messages = [{ role: "user" as const, content: "2+2?" }];
    const r = await client.chat.completions.create({ model: MODEL, messages });
    const message = r.choices[0].message as typeof r.choices[0]["message"] & { reasoning_content?: string | null };
    expect(message.reasoning_content).toBe("First, 2+2. That is 4 </thin not a tag.");
    expect(message.content).toBe("The answer is 4.");
    let reasoning = "";
    let content = "";
    for await (const chunk of await client.chat.completions.create({ model: MODEL, messages, stream: true })) {
      const delta = chunk.choices[0]?.delta as { content?: string | null; reasoning_content?: string } | undefined;
      reasoning += delta?.reasoning_content ?? "";
      content += delta?.content ?? "";
    }
    expect({ reasoning, content }).toEqual({ reasoning: message.reasoning_content, content: message.content });
  });

  it("an answer sent back with its reasoning_content is accepted (the next turn of a conversation)", async () => {
    const url = await start(THOUGHT, {});
    const first = (await whole(url)).message;
    const cut = (await whole(url, { max_tokens: 20 })).message;
    expect(cut.content).toBeNull();
    for (const m of [first, cut]) {
      const w = await whole(url, { messages: [{ role: "user", content: "2+2?" }, { role: "assistant", ...m }, { role: "user", content: "and 3+3?" }] });
      expect(w.message.content).toBe("The answer is 4.");
    }
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "assistant", content: "x", reasoning_content: 7 }] }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string } }).error.param).toBe("messages[0].reasoning_content");
  });
});

describe("reasoning content - the real system decides from the chat template", () => {
  // models/tiny with a DeepSeek-R1-style template: the generation prompt ends with "<think>\n", so the random
  // model's whole output (which never writes "</think>") is reasoning.
  let dir: string;
  let r1: RealApi;
  let plain: RealApi;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "trtd-reasoning-"));
    for (const f of ["config.json", "generation_config.json"]) cpSync(join(modelDir, f), join(dir, f));
    symlinkSync(join(modelDir, "model.safetensors"), join(dir, "model.safetensors"));
    const config = JSON.parse(readFileSync(join(modelDir, "tokenizer_config.json"), "utf8")) as { chat_template: string };
    config.chat_template = config.chat_template.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'");
    expect(config.chat_template).toContain("<think>");
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config));
    r1 = await startRealApi({}, { modelDir: dir });
    plain = await startRealApi();
  }, 60_000);
  afterAll(async () => {
    await r1?.stop();
    await plain?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("auto: a template that opens <think> gets the parser; models/tiny's does not", async () => {
    expect(r1.server.reasoning).toEqual({ startsInReasoning: true });
    expect(plain.server.reasoning).toBeUndefined();
    const w = await whole(r1.url, { max_tokens: 8, temperature: 0 });
    expect(w.message.content).toBeNull();
    expect(typeof w.message.reasoning_content).toBe("string");
    const s = await streamed(r1.url, { max_tokens: 8, temperature: 0 });
    expect({ reasoning: s.reasoning, content: s.content }).toEqual({ reasoning: w.message.reasoning_content, content: "" });
    const p = await whole(plain.url, { max_tokens: 8, temperature: 0 });
    expect(typeof p.message.content).toBe("string");
    expect(p.message).not.toHaveProperty("reasoning_content");
  }, 60_000);
});
