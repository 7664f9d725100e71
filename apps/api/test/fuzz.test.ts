// Seeded fuzz of request bodies against the real api (real HTTP, tokenizer, request plane and decode worker):
// valid bodies with 0 to 3 random mutations, each answered either 200 with a completion or a 4xx with the OpenAI
// error shape; never a 5xx, a hang or a dropped connection. Bounded: CASES bodies, 4 at a time, each within 20 s.
import { mulberry32 } from "@trtd/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRealApi, type RealApi } from "./support/real-api.js";

const CASES = 300;
const SEED = 0x20f022;
let api: RealApi;

beforeAll(async () => {
  api = await startRealApi({ maxBodyBytes: 32 * 1024 });
});
afterAll(async () => {
  await api?.stop();
});

type Json = Record<string, unknown>;
interface Case {
  path: "/v1/chat/completions" | "/v1/completions";
  body: string;
  mutations: string[];
  /** Set when the only mutation removed a message's content: the answer must be a 400 naming this field. */
  missingContent?: string;
}

function cases(count: number, seed: number): Case[] {
  const r = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const values: unknown[] = [null, true, false, 0, -1, 1, 1.5, 2, 1e308, "", "x", "tiny", [], [1], ["a"], {}, { a: 1 }, "x".repeat(300)];
  const fields = ["model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n", "stream", "stream_options", "user", "logprobs", "presence_penalty", "tools", "banana"];
  const messageMutations: Array<(m: Json) => void> = [
    (m) => delete m.content, // {"role":"user"}: the case the issue found accepted
    (m) => (m.content = pick(values)),
    (m) => (m.role = pick(["user", "assistant", "system", "tool", "robot", 7, null])),
    (m) => delete m.role,
    (m) => (m[pick(["name", "tool_calls", "refusal", "extra", "tool_call_id"])] = pick(values)),
    (m) => (m.content = [{ type: pick(["text", "image_url"]), text: pick(["hi", 7]) }]),
  ];
  const out: Case[] = [];
  for (let i = 0; i < count; i++) {
    const chat = r() < 0.6;
    const body: Json = chat
      ? { model: "tiny", messages: [{ role: "user", content: "Hello there" }], max_tokens: 1 + Math.floor(r() * 3), temperature: pick([0, 0.7]) }
      : { model: "tiny", prompt: pick(["Once upon a time", [100, 200, 300]]), max_tokens: 1 + Math.floor(r() * 3), temperature: pick([0, 0.7]) };
    const mutations: string[] = [];
    let missingContent: string | undefined;
    const n = Math.floor(r() * 4);
    for (let k = 0; k < n; k++) {
      const what = r();
      if (chat && what < 0.4 && Array.isArray(body.messages)) {
        const msgs = body.messages as Json[];
        if (r() < 0.3) msgs.push({ role: "assistant", content: "ok" });
        const m = pick(msgs);
        const f = pick(messageMutations);
        f(m);
        mutations.push(`message: ${JSON.stringify(m).slice(0, 80)}`);
        if (f === messageMutations[0] && n === 1) missingContent = `messages[${msgs.indexOf(m)}].content`;
      } else if (what < 0.75) {
        const f = pick(fields);
        body[f] = pick(values);
        mutations.push(`${f}=${JSON.stringify(body[f]).slice(0, 40)}`);
      } else if (what < 0.9) {
        const f = pick(Object.keys(body));
        delete body[f];
        mutations.push(`-${f}`);
      } else {
        body.prompt = chat ? undefined : pick(["", [], [-1], [1e9], ["a", "b"], 7]);
        mutations.push(`prompt=${JSON.stringify(body.prompt)}`);
      }
    }
    out.push({ path: chat ? "/v1/chat/completions" : "/v1/completions", body: JSON.stringify(body), mutations, missingContent });
  }
  return out;
}

function isOpenAIError(text: string): boolean {
  try {
    const e = (JSON.parse(text) as { error?: Record<string, unknown> }).error;
    return !!e && typeof e.message === "string" && typeof e.type === "string" && typeof e.code === "string" && (e.param === null || typeof e.param === "string");
  } catch {
    return false;
  }
}

function isSuccess(path: Case["path"], contentType: string, text: string): boolean {
  if (contentType.includes("text/event-stream")) return text.trimEnd().endsWith("data: [DONE]") && !text.includes('data: {"error"');
  try {
    const j = JSON.parse(text) as { object?: string; choices?: Array<{ finish_reason?: string }>; usage?: { completion_tokens?: number } };
    const object = path === "/v1/completions" ? "text_completion" : "chat.completion";
    return j.object === object && typeof j.choices?.[0]?.finish_reason === "string" && (j.usage?.completion_tokens ?? 0) >= 1;
  } catch {
    return false;
  }
}

describe("api - fuzzed bodies", () => {
  it(`${CASES} seeded bodies: each answered 200 with a completion or a 4xx with OpenAI error JSON`, async () => {
    const all = cases(CASES, SEED);
    const failures: string[] = [];
    const statuses = new Map<number, number>();
    let missingContentCases = 0;
    const started = Date.now();
    let next = 0;
    const client = async () => {
      while (next < all.length && Date.now() - started < 90_000) {
        const c = all[next++];
        let status = 0;
        let text = "";
        let type = "";
        try {
          const res = await fetch(`${api.url}${c.path}`, { method: "POST", headers: { "content-type": "application/json" }, body: c.body, signal: AbortSignal.timeout(20_000) });
          status = res.status;
          type = res.headers.get("content-type") ?? "";
          text = await res.text();
        } catch (err) {
          text = `no answer: ${(err as Error).message}`;
        }
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        let ok = status === 200 ? isSuccess(c.path, type, text) : status >= 400 && status < 500 && isOpenAIError(text);
        if (c.missingContent) {
          missingContentCases++;
          ok &&= status === 400 && (JSON.parse(text) as { error: { param: string } }).error.param === c.missingContent;
        }
        if (!ok) failures.push(`${c.path} [${c.mutations.join("; ")}] ${c.body.slice(0, 200)} -> ${status} ${text.slice(0, 200)}`);
      }
    };
    await Promise.all(Array.from({ length: 4 }, client));
    expect(failures.slice(0, 5)).toEqual([]);
    expect(next).toBe(all.length); // every case sent within the bound
    expect(missingContentCases).toBeGreaterThanOrEqual(3); // {"role":"user"} and the like were tried
    // The mix exercised both outcomes (a fuzz that only ever succeeds or only ever fails checks little).
    expect(statuses.get(200) ?? 0).toBeGreaterThanOrEqual(CASES / 10);
    expect([...statuses].filter(([s]) => s >= 400).reduce((n, [, k]) => n + k, 0)).toBeGreaterThanOrEqual(CASES / 10);
    expect(api.logs).toEqual([]); // no unexpected server error was logged
    // Nothing left running in the worker.
    const s = api.decode.executor.stats();
    expect({ active: s.activeRequests, queued: s.queuedRequests, kv: s.kvBlocksUsed }).toEqual({ active: 0, queued: 0, kv: 0 });
  }, 120_000);
});
