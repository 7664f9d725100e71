// The whole system with real processes: nats-server, 1 prefill + 1 decode worker and the api (the launcher),
// plus a second api on the same request plane that never disaggregates, for the equality test. The official
// openai client talks to both.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@trtd/request-plane/testing";
import { API_READY, LAUNCHER_READY, eventually, metricValue, modelDir, startApp, workerGauges, type Started } from "./support/processes.js";

// kv-transfer offers shared memory to a puller on the same host (boot id + hostname) where /dev/shm exists; the
// decode worker then pulls over it, else over TCP.
const LOCAL_KV_PATH = process.platform === "linux" && existsSync("/dev/shm") ? "shm" : "tcp";

let deployment: Started;
let natsPort: number;
const credsDir = mkdtempSync(join(tmpdir(), "e2e-creds-"));
const credsFile = join(credsDir, "nats-api.env");
let aggregatedApi: Started;
let disagg: OpenAI;
let agg: OpenAI;

beforeAll(async () => {
  natsPort = await freePort();
  deployment = await startApp(
    "launcher",
    [
      "--context-worker-count", "1",
      "--generate-worker-count", "1",
      "--worker-name", "e2e",
      "--initialize-request-plane",
      "--request-plane-uri", `127.0.0.1:${natsPort}`,
      "--api-server-port", "0",
      "--model-dir", modelDir,
      "--disagg-min-prompt-tokens", "1",
      "--threads", "1",
      "--request-plane-credentials", credsFile,
    ],
    LAUNCHER_READY,
  );
  // The launcher's nats-server refuses anonymous clients: the second api uses the api account it wrote out.
  const creds = Object.fromEntries(
    readFileSync(credsFile, "utf8").trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  aggregatedApi = await startApp(
    "api",
    ["--tokenizer", modelDir, "--request-plane-uri", `127.0.0.1:${natsPort}`, "--api-server-port", "0", "--worker-name", "e2e", "--no-disaggregation"],
    API_READY,
    120_000,
    creds,
  );
  disagg = new OpenAI({ baseURL: `${deployment.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
  agg = new OpenAI({ baseURL: `${aggregatedApi.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
  // The second api discovers the workers on its own.
  await eventually(async () => (await fetch(`${aggregatedApi.url}/health`)).ok, 20_000, "the aggregated api to see a decode worker");
}, 180_000);

afterAll(async () => {
  await aggregatedApi?.stop();
  await deployment?.stop();
  expect(deployment?.proc.exitCode).toBe(0);
  rmSync(credsDir, { recursive: true, force: true });
}, 60_000);

describe("e2e - the launcher's request plane is not open to the host", () => {
  it("refuses an anonymous NATS client and a wrong password; its accounts reach the owner only (0600 file, no argv)", async () => {
    const { connect } = await import("@trtd/request-plane");
    await expect(connect(`127.0.0.1:${natsPort}`, { connectTimeoutMs: 3_000, maxReconnectAttempts: 0 })).rejects.toThrow(/auth|authorization/i);
    await expect(
      connect(`127.0.0.1:${natsPort}`, { user: "trtd-decode", pass: "wrong", connectTimeoutMs: 3_000, maxReconnectAttempts: 0 }),
    ).rejects.toThrow(/auth|authorization/i);
    expect(statSync(credsFile).mode & 0o777).toBe(0o600);
    const creds = readFileSync(credsFile, "utf8");
    expect(creds).toMatch(/^TRTD_NATS_USER=trtd-api\nTRTD_NATS_PASS=[0-9a-f]{48}\n$/);
    const password = /TRTD_NATS_PASS=(\S+)/.exec(creds)![1]!;
    const plane = await connect(`127.0.0.1:${natsPort}`, { user: "trtd-api", pass: password, connectTimeoutMs: 3_000, maxReconnectAttempts: 0 });
    await plane.close();
    // no process shows a password on its command line
    const { execFileSync } = await import("node:child_process");
    expect(execFileSync("ps", ["-eo", "args"], { encoding: "utf8" })).not.toContain(password);
  });
});

describe("e2e - openai client through the disaggregated deployment", () => {
  it("lists the model", async () => {
    const models = await disagg.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["tiny"]);
  });

  it("chat completion, not streamed", async () => {
    const r = await disagg.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Tell me a story about a cat." }], max_tokens: 12, temperature: 0 });
    expect(r.object).toBe("chat.completion");
    expect(r.choices[0].message.role).toBe("assistant");
    expect(r.choices[0].message.content!.length).toBeGreaterThan(0);
    expect(r.choices[0].finish_reason).toBe("length");
    expect(r.usage!.completion_tokens).toBe(12);
  });

  it("chat completion, streamed with usage", async () => {
    const stream = await disagg.chat.completions.create({
      model: "tiny",
      messages: [{ role: "user", content: "Count to ten." }],
      max_completion_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        text += c.delta.content ?? "";
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    expect(text.length).toBeGreaterThan(0);
    expect(finish).toBe("length");
    expect(usage!.completion_tokens).toBe(10);
    const whole = await disagg.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Count to ten." }], max_tokens: 10, temperature: 0 });
    expect(whole.choices[0].message.content).toBe(text);
  });

  it("completion, streamed and not, with a stop string", async () => {
    const whole = await disagg.completions.create({ model: "tiny", prompt: "The quick brown fox", max_tokens: 16, temperature: 0 });
    expect(whole.object).toBe("text_completion");
    const text = whole.choices[0].text;
    expect(text.length).toBeGreaterThan(0);
    let streamed = "";
    for await (const c of await disagg.completions.create({ model: "tiny", prompt: "The quick brown fox", max_tokens: 16, temperature: 0, stream: true })) {
      streamed += c.choices[0]?.text ?? "";
    }
    expect(streamed).toBe(text);
    // A stop string taken from the middle of the output cuts it right before that point.
    const cut = text.slice(Math.floor(text.length / 2)).trim().slice(0, 3);
    expect(cut.length).toBeGreaterThan(0);
    const stopped = await disagg.completions.create({ model: "tiny", prompt: "The quick brown fox", max_tokens: 16, temperature: 0, stop: [cut] });
    expect(stopped.choices[0].finish_reason).toBe("stop");
    expect(stopped.choices[0].text).toBe(text.slice(0, text.indexOf(cut)));
  });

  it("serves n > 1 through the disaggregated deployment (choice i = a separate request seeded seed + i); n past the maximum is a typed 400", async () => {
    const body = { model: "tiny", messages: [{ role: "user" as const, content: "Tell me a story about a lighthouse" }], max_tokens: 12, temperature: 0.9, seed: 7 };
    const both = await disagg.chat.completions.create({ ...body, n: 2 });
    expect(both.choices.map((c) => c.index)).toEqual([0, 1]);
    let completion = 0;
    for (const i of [0, 1]) {
      const one = await disagg.chat.completions.create({ ...body, seed: body.seed + i });
      expect(both.choices[i].message.content).toBe(one.choices[0].message.content);
      expect(both.choices[i].finish_reason).toBe(one.choices[0].finish_reason);
      completion += one.usage!.completion_tokens;
      expect(both.usage!.prompt_tokens).toBe(one.usage!.prompt_tokens); // the prompt counted once
    }
    expect(both.usage!.completion_tokens).toBe(completion);
    const err = await disagg.chat.completions.create({ ...body, n: 17 }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.status).toBe(400);
    expect(err.param).toBe("n");
  });
});

const PROMPTS = [
  "Hello!", "What is the capital of France?", "Write a haiku about autumn leaves.", "Explain recursion to a child.",
  "List three prime numbers.", "Translate 'good morning' into Spanish.", "def fibonacci(n):", "Once upon a time, in a land far away,",
  "Summarize the plot of Hamlet in one sentence.", "¿Dónde está la biblioteca?", "日本の首都はどこですか？", "Give me a recipe for pancakes.",
  "Why is the sky blue?", "SELECT * FROM users WHERE", "The mitochondria is the powerhouse of", "Describe a sunset over the ocean in vivid detail, mentioning colours, sounds and the feeling of the breeze.",
  "1, 1, 2, 3, 5, 8,", "Emoji test: 🚀🌕 what do these mean?", "Compose a limerick about a programmer who never sleeps.", "What are the three laws of thermodynamics?",
  "x".repeat(300), "Repeat after me: " + "lorem ipsum ".repeat(40),
];

describe("e2e - disaggregated output equals aggregated output", () => {
  // Nucleus sampling is about 10x slower per token in the reference executor (it sorts the vocabulary), so it
  // gets fewer prompts.
  for (const [label, sampling, prompts] of [
    ["greedy (temperature 0)", { temperature: 0 }, PROMPTS],
    ["seeded sampling", { temperature: 0.9, seed: 1234 }, PROMPTS],
    ["seeded nucleus sampling", { temperature: 0.9, top_p: 0.95, seed: 99 }, PROMPTS.slice(0, 4)],
  ] as const) {
    it(`${label}: ${prompts.length} prompts, token for token`, async () => {
      const before = await metricValue(deployment.url, 'trtd_routed_requests_total{mode="disaggregated"}');
      let produced = 0;
      for (const [i, content] of prompts.entries()) {
        const body = { model: "tiny", messages: [{ role: "user" as const, content }], max_tokens: 24, ...sampling };
        const d = await disagg.chat.completions.create(body);
        const a = await agg.chat.completions.create(body);
        expect(d.choices[0].message.content, `prompt ${i}`).toBe(a.choices[0].message.content);
        expect(d.usage, `prompt ${i}`).toEqual(a.usage);
        expect(d.choices[0].finish_reason).toBe(a.choices[0].finish_reason);
        produced += d.choices[0].message.content!.length;
      }
      expect(produced).toBeGreaterThan(0);
      // Every request of the first api really went through remote prefill; the second api never did.
      expect(await metricValue(deployment.url, 'trtd_routed_requests_total{mode="disaggregated"}')).toBe(before + prompts.length);
      expect(await metricValue(aggregatedApi.url, 'trtd_routed_requests_total{mode="disaggregated"}')).toBe(0);
      expect(await metricValue(aggregatedApi.url, 'trtd_routed_requests_total{mode="aggregated"}')).toBeGreaterThanOrEqual(prompts.length);
    }, 240_000);
  }

  it("with logit controls and logprobs: the same tokens and logprobs, whole and streamed (the first token's from prefill)", async () => {
    const before = await metricValue(deployment.url, 'trtd_routed_requests_total{mode="disaggregated"}');
    const body = {
      model: "tiny",
      messages: [{ role: "user" as const, content: PROMPTS[0] }],
      max_tokens: 16,
      temperature: 0.9,
      seed: 5,
      frequency_penalty: -0.5,
      presence_penalty: 0.3,
      min_p: 0.05,
      min_tokens: 4,
      logprobs: true,
      top_logprobs: 3,
    };
    const d = await disagg.chat.completions.create(body);
    const a = await agg.chat.completions.create(body);
    expect(d.choices[0].message.content).toBe(a.choices[0].message.content);
    const entries = a.choices[0].logprobs!.content!;
    expect(entries).toHaveLength(a.usage!.completion_tokens);
    expect(d.choices[0].logprobs!.content).toEqual(entries);
    expect(entries.every((e) => e.top_logprobs.length === 3)).toBe(true);
    const streamed: typeof entries = [];
    for await (const c of await disagg.chat.completions.create({ ...body, stream: true })) streamed.push(...(c.choices[0]?.logprobs?.content ?? []));
    expect(streamed).toEqual(entries);
    expect(await metricValue(deployment.url, 'trtd_routed_requests_total{mode="disaggregated"}')).toBe(before + 2);
  }, 120_000);
});

describe("e2e - load, metrics and cancellation", () => {
  it("runs 32 concurrent streams to completion", async () => {
    const run = async (i: number) => {
      const stream = await disagg.chat.completions.create({
        model: "tiny",
        messages: [{ role: "user", content: `Stream number ${i}: tell me something.` }],
        max_tokens: 16,
        temperature: 0.7,
        seed: i,
        stream: true,
        stream_options: { include_usage: true },
      });
      let finish: string | null = null;
      let tokens = 0;
      for await (const chunk of stream) {
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
      }
      return { finish, tokens };
    };
    const results = await Promise.all(Array.from({ length: 32 }, (_, i) => run(i)));
    for (const r of results) {
      expect(["length", "stop"]).toContain(r.finish);
      expect(r.tokens).toBeGreaterThan(0);
    }
  }, 120_000);

  it("shows disaggregated requests and KV bytes moved in /metrics", async () => {
    const text = await (await fetch(`${deployment.url}/metrics`)).text();
    expect(text).toContain("# TYPE trtd_time_to_first_token_seconds histogram");
    expect(text).toContain("# TYPE trtd_inter_token_latency_seconds histogram");
    expect(await metricValue(deployment.url, 'trtd_routed_requests_total{mode="disaggregated"}')).toBeGreaterThan(40);
    expect(await metricValue(deployment.url, `trtd_kv_transfer_bytes_total{path="${LOCAL_KV_PATH}"}`)).toBeGreaterThan(0);
    expect(await metricValue(deployment.url, "trtd_kv_transfer_seconds_count")).toBeGreaterThan(40);
    const gauges = await workerGauges(deployment.url);
    expect(new Set(gauges.map((g) => g.component))).toEqual(new Set(["prefill", "decode"]));
  });

  it("counts a disaggregated request's KV under the transport path it took (shm on one host), with its seconds", async () => {
    const sample = (name: string, path: string) => metricValue(deployment.url, `${name}{path="${path}"}`);
    const paths = ["cuda-ipc", "shm", "tcp", "nats", "engine"];
    const snapshot = async () => {
      const out: Record<string, { bytes: number; seconds: number; transfers: number; fallbacks: number }> = {};
      for (const p of paths) {
        out[p] = {
          bytes: await sample("trtd_kv_transfer_bytes_total", p),
          seconds: await sample("trtd_kv_transfer_seconds_total", p),
          transfers: await sample("trtd_kv_transfers_total", p),
          fallbacks: await sample("trtd_kv_transfer_fallbacks_total", p),
        };
      }
      return out;
    };
    await eventually(async () => (await workerGauges(deployment.url)).every((g) => g.name !== "trtd_worker_active_requests" || g.value === 0), 10_000, "idle workers");
    const dis0 = await metricValue(deployment.url, 'trtd_routed_requests_total{mode="disaggregated"}');
    const before = await snapshot();
    const r = await disagg.completions.create({ model: "tiny", prompt: "One KV transfer, counted by the path it took. ".repeat(8), max_tokens: 4, temperature: 0 });
    expect(r.usage!.completion_tokens).toBe(4);
    expect(await metricValue(deployment.url, 'trtd_routed_requests_total{mode="disaggregated"}')).toBe(dis0 + 1);
    const after = await snapshot();
    for (const p of paths) {
      const d = { bytes: after[p].bytes - before[p].bytes, transfers: after[p].transfers - before[p].transfers, fallbacks: after[p].fallbacks - before[p].fallbacks };
      if (p === LOCAL_KV_PATH) {
        // tiny model: 2 layers x 2 (K, V) x 2 kv heads x 16 head dim x 4 bytes = 512 bytes per token, whole blocks of 16
        expect(d.bytes, p).toBeGreaterThan(0);
        expect(d.bytes % (512 * 16), p).toBe(0);
        expect(d.transfers, p).toBe(1);
        expect(after[p].seconds, p).toBeGreaterThan(before[p].seconds);
      } else {
        expect(d, p).toEqual({ bytes: 0, transfers: 0, fallbacks: 0 });
      }
    }
  });

  it("a client aborting mid-stream cancels the request in the workers", async () => {
    const MAX = 1500;
    const decodeGenerated = async () => (await workerGauges(deployment.url)).find((g) => g.component === "decode" && g.name === "trtd_worker_generated_tokens")!.value;
    await eventually(async () => (await workerGauges(deployment.url)).every((g) => g.name !== "trtd_worker_active_requests" || g.value === 0), 10_000, "idle workers");
    const generatedBefore = await decodeGenerated();
    const ac = new AbortController();
    const res = await fetch(`${deployment.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "Write a very long essay." }], max_tokens: MAX, temperature: 0.8, seed: 7, stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    const decodeActive = async () =>
      (await workerGauges(deployment.url)).some((g) => g.component === "decode" && g.name === "trtd_worker_active_requests" && g.value > 0);
    // Keep reading until the decode worker's published load shows the request: the figures read after the
    // abort are then fresher than the request itself.
    let events = 0;
    const readUntil = Date.now() + 10_000;
    while (!(events >= 5 && (await decodeActive()))) {
      if (Date.now() > readUntil) throw new Error("the decode worker never showed the request as active");
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended before the abort");
      events += new TextDecoder().decode(value).split("data: ").length - 1;
    }
    ac.abort();
    // Executor stats back to zero on both workers (published with their load about every second).
    await eventually(
      async () => {
        const g = await workerGauges(deployment.url);
        const busy = g.filter((x) => ["trtd_worker_active_requests", "trtd_worker_queued_requests", "trtd_worker_kv_blocks_used", "trtd_worker_pinned_kv_exports"].includes(x.name) && x.value !== 0);
        return busy.length === 0;
      },
      10_000,
      "the workers' executors to be idle after the abort",
    );
    // The request was cancelled, not run to its end.
    expect((await decodeGenerated()) - generatedBefore).toBeLessThan(MAX);
  }, 60_000);
});
