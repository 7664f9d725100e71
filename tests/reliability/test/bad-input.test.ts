// Bad input: 5,000+ malformed or hostile HTTP bodies against a real api (nats-server + one decode worker), each a
// 4xx with the OpenAI error JSON; valid requests interleaved still succeed; the server never crashes; an
// oversized prompt is a 400 naming the limit at once, an oversized body a 413.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsServerHandle } from "@trtd/request-plane";
import { apiArgs, startApp, startNats, stopAll, waitForWorkers, workerArgs, workersIdle, eventually, type AppProcess } from "./support/processes.js";
import { fuzzCases, type FuzzCase } from "./support/fuzz.js";
import { rawPost } from "./support/http.js";

const NS = "rel-fuzz";
const MAX_PROMPT_TOKENS = 512;
let nats: NatsServerHandle;
let api: AppProcess;
let decode: AppProcess;

beforeAll(async () => {
  nats = await startNats();
  [decode, api] = await Promise.all([
    startApp("decode", workerArgs(nats.uri, NS)),
    startApp("api", apiArgs(nats.uri, NS, ["--max-prompt-tokens", String(MAX_PROMPT_TOKENS), "--max-body-bytes", String(256 * 1024)])),
  ]);
  await waitForWorkers(api.url, 1, 0);
});

afterAll(async () => {
  await stopAll();
  await nats?.stop();
});

async function send(c: FuzzCase): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = {};
  if (c.contentType !== null) headers["content-type"] = c.contentType;
  return rawPost(`${api.url}${c.path}`, c.body, headers);
}

function isOpenAIError(text: string): boolean {
  try {
    const j = JSON.parse(text) as { error?: Record<string, unknown> };
    const e = j.error;
    return !!e && typeof e.message === "string" && typeof e.type === "string" && typeof e.code === "string" && "param" in e;
  } catch {
    return false;
  }
}

describe("bad input", () => {
  it("5,000+ malformed or hostile bodies each get a 4xx OpenAI error; valid requests between them succeed", async () => {
    const cases = fuzzCases(5200, 0x5eed);
    expect(cases.length).toBeGreaterThanOrEqual(5000);
    const failures: string[] = [];
    const kinds = new Map<string, number>();
    let valid = 0;
    const started = Date.now();
    // 8 clients at once; every 50th request is a valid one.
    let next = 0;
    const client = async () => {
      while (next < cases.length && Date.now() - started < 60_000) {
        const i = next++;
        const c = cases[i];
        const r = await send(c).catch((err: Error) => ({ status: 0, text: `no answer: ${err.message}` }));
        kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
        if (r.status < 400 || r.status >= 500 || !isOpenAIError(r.text)) {
          failures.push(`${c.kind} ${c.path} (${c.contentType}) ${c.body.subarray(0, 160).toString()} -> ${r.status} ${r.text.slice(0, 200)}`);
        }
        if (i % 50 === 0) {
          const ok = await fetch(`${api.url}/v1/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ model: "tiny", prompt: "Hello there", max_tokens: 2, temperature: 0 }),
          });
          const j = (await ok.json()) as { choices?: Array<{ finish_reason: string }> };
          if (ok.status !== 200 || j.choices?.[0]?.finish_reason !== "length") failures.push(`valid request -> ${ok.status} ${JSON.stringify(j)}`);
          valid++;
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, client));
    expect(failures.slice(0, 10)).toEqual([]);
    expect(next).toBe(cases.length); // all sent within the time bound
    expect(valid).toBeGreaterThanOrEqual(100);
    // Every kind of malformation was exercised.
    expect([...kinds.keys()].sort()).toEqual([...new Set(cases.map((c) => c.kind))].sort());
    expect(kinds.size).toBeGreaterThanOrEqual(10);
    // The server is still the same process and healthy, and nothing was left running in the worker.
    expect(api.proc.exitCode).toBeNull();
    expect((await fetch(`${api.url}/health`)).status).toBe(200);
    await eventually(() => workersIdle(api.url), 5000, "the decode worker to be idle");
  });

  it("an oversized prompt is a 400 naming the limit, answered at once; an oversized body a 413", async () => {
    for (const path of ["/v1/completions", "/v1/chat/completions"]) {
      const long = "lorem ipsum dolor sit amet ".repeat(400); // ≈ 2,000 tokens, under the body limit
      const body =
        path === "/v1/completions"
          ? { model: "tiny", prompt: long, max_tokens: 4 }
          : { model: "tiny", messages: [{ role: "user", content: long }], max_tokens: 4 };
      const t0 = performance.now();
      const r = await fetch(`${api.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      const ms = performance.now() - t0;
      const j = (await r.json()) as { error: { code: string; message: string } };
      expect(r.status).toBe(400);
      expect(j.error.code).toBe("context_length_exceeded");
      expect(j.error.message).toContain(String(MAX_PROMPT_TOKENS));
      expect(ms).toBeLessThan(2000);
    }
    // A body over --max-body-bytes: a 413 naming that limit.
    const big = { model: "tiny", prompt: "x".repeat(300 * 1024), max_tokens: 1 };
    const r = await rawPost(`${api.url}/v1/completions`, Buffer.from(JSON.stringify(big)), { "content-type": "application/json" });
    const j = JSON.parse(r.text) as { error: { code: string; message: string } };
    expect(r.status).toBe(413);
    expect(j.error.code).toBe("request_too_large");
    expect(j.error.message).toContain(String(256 * 1024));
  });
});
