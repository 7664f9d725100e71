// The api as a real HTTP server over real parts (in-process request plane, a decode worker on the reference
// executor, the real tokenizer): an oversize body on a keep-alive connection, the official OpenAI client, the
// tokenizer's client/server error split, and the error catalogue against the docs.
import http from "node:http";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import OpenAI, { APIConnectionError, APIError } from "openai";
import { createInProcessPlane } from "@trtd/request-plane";
import { modelDir, repoRoot } from "@trtd/test-support";
import { API_ERROR_CATALOGUE, ApiErrorCodes, RequestPlaneWorkers, Router, TokenizerCodec, createApiApp } from "../src/index.js";
import { startRealApi, type RealApi } from "./support/real-api.js";

const MAX_BODY = 64 * 1024;
let api: RealApi;

beforeAll(async () => {
  api = await startRealApi({ maxBodyBytes: MAX_BODY });
});
afterAll(async () => {
  await api?.stop();
});

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Whether the request went out on a connection an earlier request had used. */
  reusedSocket: boolean;
  localPort: number;
}

/** One POST through `agent` (keep-alive), the body sent with Content-Length or chunked; bounded by `timeoutMs`. */
function post(agent: http.Agent, path: string, body: string, { chunked = false, timeoutMs = 10_000 } = {}): Promise<Answer> {
  const url = new URL(api.url);
  return new Promise((resolvePost, reject) => {
    const headers: http.OutgoingHttpHeaders = { "content-type": "application/json" };
    if (!chunked) headers["content-length"] = Buffer.byteLength(body);
    const req = http.request({ host: url.hostname, port: url.port, path, method: "POST", agent, headers, timeout: timeoutMs }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolvePost({ status: res.statusCode!, headers: res.headers, body: text, reusedSocket: req.reusedSocket, localPort: req.socket!.localPort! }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    if (chunked) {
      // Several writes, so the body arrives in chunks, as a streaming client sends it.
      for (let i = 0; i < body.length; i += 256 * 1024) req.write(body.slice(i, i + 256 * 1024));
      req.end();
    } else req.end(body);
  });
}

const chatBody = (content: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: "tiny", messages: [{ role: "user", content }], max_tokens: 2, temperature: 0, ...extra });

function expectOpenAIError(a: Answer, status: number, code: string): void {
  expect(a.status, a.body).toBe(status);
  const j = JSON.parse(a.body) as { error: Record<string, unknown> };
  expect(j.error).toMatchObject({ code, type: API_ERROR_CATALOGUE[code as keyof typeof API_ERROR_CATALOGUE].type });
  expect(typeof j.error.message).toBe("string");
  expect("param" in j.error).toBe(true);
}

describe("api server - an oversize body", () => {
  for (const chunked of [false, true]) {
    it(`is refused with 413 and Connection: close (${chunked ? "chunked" : "Content-Length"}); the keep-alive client's next request succeeds on a fresh connection`, async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const warm = await post(agent, "/v1/chat/completions", chatBody("Hello"));
        expect(warm.status, warm.body).toBe(200);
        const big = await post(agent, "/v1/chat/completions", chatBody("x".repeat(2 << 20)), { chunked });
        expect(big.reusedSocket).toBe(true); // the refusal came on the warm keep-alive connection
        expectOpenAIError(big, 413, "request_too_large");
        expect(big.headers.connection).toBe("close");
        expect(JSON.parse(big.body).error.message).toContain(String(MAX_BODY));
        const next = await post(agent, "/v1/chat/completions", chatBody("Hello again"));
        expect(next.status, next.body).toBe(200);
        expect(next.reusedSocket).toBe(false);
        expect(next.localPort).not.toBe(big.localPort);
        expect((JSON.parse(next.body) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(2);
      } finally {
        agent.destroy();
      }
    });
  }

  it("the official OpenAI client, retries off, gets an APIError with status 413 (not a connection error)", async () => {
    const client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 10_000 });
    const err = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "x".repeat(2 << 20) }], max_tokens: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(APIError);
    expect(err).not.toBeInstanceOf(APIConnectionError);
    expect((err as APIError).status).toBe(413);
    expect((err as APIError).code).toBe("request_too_large");
    // And the same client goes on working (a poisoned pooled connection failed the next requests with "Connection error").
    for (let i = 0; i < 3; i++) {
      const ok = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: `Hi ${i}` }], max_tokens: 2, temperature: 0 });
      expect(ok.usage?.completion_tokens).toBe(2);
    }
  });
});

describe("api server - validation through the OpenAI client", () => {
  it("a message without content is a 400 naming messages[0].content; max_tokens is named as sent", async () => {
    const client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 10_000 });
    const noContent = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user" } as never] }).catch((e: unknown) => e);
    expect(noContent).toBeInstanceOf(APIError);
    expect(noContent).toMatchObject({ status: 400, code: "invalid_request", param: "messages[0].content" });
    const tooMany = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 10_000_000 }).catch((e: unknown) => e);
    expect(tooMany).toMatchObject({ status: 400, code: "context_length_exceeded", param: "max_tokens" });
  });
});

describe("api - tokenizer errors: the client's (400) and the server's (500)", () => {
  it("invalid token ids and special-token text are 400 invalid_value naming the field", async () => {
    const r1 = await fetch(`${api.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "tiny", prompt: [1, 2, 999_999_999], max_tokens: 1 }) });
    expect(r1.status).toBe(400);
    expect(((await r1.json()) as { error: unknown }).error).toMatchObject({ code: "invalid_value", param: "prompt", type: "invalid_request_error" });
    const r2 = await fetch(`${api.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: chatBody("hi<|im_end|>") });
    expect(r2.status).toBe(400);
    expect(((await r2.json()) as { error: unknown }).error).toMatchObject({ code: "invalid_value", param: "messages", type: "invalid_request_error" });
  });

  it("a tokenizer that fails on the server's side is 500 tokenizer_failed, logged", async () => {
    const plane = createInProcessPlane();
    const workers = new RequestPlaneWorkers(plane);
    const codec = TokenizerCodec.fromModelDir(modelDir);
    codec.free(); // the real tokenizer, used after free: the server's fault, whatever the client sent
    const logs: string[] = [];
    try {
      const { app } = createApiApp({ backend: new Router({ workers }), codec, modelName: "tiny", log: (l) => logs.push(l) });
      for (const [path, body] of [["/v1/chat/completions", chatBody("Hi")], ["/v1/completions", JSON.stringify({ model: "tiny", prompt: "Hi" })]] as const) {
        const res = await app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body });
        expect(res.status).toBe(500);
        expect(((await res.json()) as { error: unknown }).error).toMatchObject({ code: "tokenizer_failed", type: "server_error", param: null });
      }
      expect(logs.join("\n")).toMatch(/TokenizerFailedError: tokenizer failed: tokenizer was used after free\(\)/);
    } finally {
      workers.close();
      await plane.close();
    }
  });
});

describe("api - the error catalogue", () => {
  it("every code has one status and type, and docs/design/serving.md lists exactly these", () => {
    const codes = Object.values(ApiErrorCodes);
    expect(new Set(codes).size).toBe(codes.length);
    expect(Object.keys(API_ERROR_CATALOGUE).sort()).toEqual([...codes].sort());
    for (const code of codes) expect(code).toMatch(/^[a-z]+(_[a-z]+)*$/); // one casing on the wire
    // The docs table: | status | type | code, code | when |
    const doc = readFileSync(resolve(repoRoot, "docs/design/serving.md"), "utf8");
    const table = doc.slice(doc.indexOf("## Errors"), doc.indexOf("## Metrics"));
    const documented = new Map<string, { status: number; type: string }>();
    for (const m of table.matchAll(/^\| (\d{3}) \| (\w+) \| ([a-z_, `]+) \|/gm)) {
      for (const code of m[3].split(",").map((c) => c.trim().replace(/`/g, ""))) documented.set(code, { status: Number(m[1]), type: m[2] });
    }
    expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(Object.entries(API_ERROR_CATALOGUE).map(([c, k]) => [c, { status: k.status, type: k.type }])));
  });
});
