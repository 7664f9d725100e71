// `n` > 1 through the real system: the api and a decode worker on the reference executor with models/tiny, over a
// real nats-server, the real tokenizer and the official openai client. Choice i of a seeded request equals a
// separate request with seed + i (whole and streamed, chat and completions, with stop strings); greedy choices
// are equal; indexes, finish reasons and usage have OpenAI's shapes; a client that leaves mid-stream cancels every
// choice; bad `n` values get OpenAI 400s naming the field; with two decode workers every choice runs where choice 0
// runs; nothing leaks (executor stats back to zero).
import OpenAI, { APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXECUTOR_DEFAULTS } from "@trtd/apps-common";
import { startDecodeWorker } from "@trtd/decode";
import { connect } from "@trtd/request-plane";
import { eventually, modelDir } from "@trtd/test-support";
import { startRealApi, type RealApi } from "./support/real-api.js";
import { leaveOnceEveryChoiceGenerates, streamedChoices } from "./support/chat-choices.js";

let api: RealApi;
let client: OpenAI;

beforeAll(async () => {
  api = await startRealApi({}, { nats: true });
  client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
}, 60_000);
afterAll(async () => {
  await api?.stop();
});

async function expectIdle(): Promise<void> {
  await eventually(() => api.decode.executor.stats().activeRequests === 0, 5000, "the decode executor to go idle");
  const s = api.decode.executor.stats();
  expect({ active: s.activeRequests, queued: s.queuedRequests, used: s.kvBlocksUsed }).toEqual({ active: 0, queued: 0, used: 0 });
}

const messages = [{ role: "user" as const, content: "Tell me a story about a lighthouse." }];
const PROMPT = "Once upon a time, by the sea,";
const N = 3;
const SEED = 1234;

interface Choice {
  text: string;
  finish: string | null;
}

async function chatWhole(extra: Record<string, unknown>) {
  const r = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 12, temperature: 1, ...extra } as never);
  return r as unknown as OpenAI.Chat.ChatCompletion;
}

/** A streamed chat's choices by index, checking that each ends with exactly one finish_reason chunk, its last. */
async function chatStreamed(extra: Record<string, unknown>) {
  const stream = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 12, temperature: 1, stream: true, stream_options: { include_usage: true }, ...extra } as never);
  return streamedChoices(stream as unknown as AsyncIterable<OpenAI.Chat.ChatCompletionChunk>);
}

async function completionStreamed(extra: Record<string, unknown>) {
  const stream = await client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 12, temperature: 1, stream: true, stream_options: { include_usage: true }, ...extra } as never);
  const choices: Choice[] = [];
  let usage: OpenAI.CompletionUsage | undefined | null;
  for await (const chunk of stream as unknown as AsyncIterable<OpenAI.Completions.Completion>) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      const at = (choices[c.index] ??= { text: "", finish: null });
      expect(at.finish, `choice ${c.index} got a chunk after its finish_reason`).toBeNull();
      at.text += c.text;
      at.finish = c.finish_reason;
    }
  }
  return { choices, usage };
}

/** n separate n=1 requests, request i with seed + i. */
async function separately<T>(run: (seed: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < N; i++) out.push(await run(SEED + i));
  return out;
}

describe("n > 1, chat completions", () => {
  it("whole: choice i equals a separate request with seed + i; usage counts the prompt once and sums the completions", async () => {
    const many = await chatWhole({ n: N, seed: SEED });
    const one = await separately((seed) => chatWhole({ seed }));
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(many.choices.map((c) => ({ text: c.message.content, finish: c.finish_reason }))).toEqual(one.map((r) => ({ text: r.choices[0]!.message.content, finish: r.choices[0]!.finish_reason })));
    // The random-weight model draws different samples for different seeds (otherwise the check above says little).
    expect(new Set(many.choices.map((c) => c.message.content)).size).toBeGreaterThan(1);
    expect(many.usage!.prompt_tokens).toBe(one[0]!.usage!.prompt_tokens);
    expect(many.usage!.completion_tokens).toBe(one.reduce((s, r) => s + r.usage!.completion_tokens, 0));
    expect(many.usage!.total_tokens).toBe(many.usage!.prompt_tokens + many.usage!.completion_tokens);
    await expectIdle();
  });

  it("streamed: the same choices, each closed by its own finish_reason chunk, one usage chunk with the sums", async () => {
    const many = await chatStreamed({ n: N, seed: SEED });
    const one = await separately((seed) => chatWhole({ seed }));
    expect(many.choices).toEqual(one.map((r) => ({ text: r.choices[0]!.message.content, finish: r.choices[0]!.finish_reason })));
    expect(many.usage).toEqual({
      prompt_tokens: one[0]!.usage!.prompt_tokens,
      completion_tokens: one.reduce((s, r) => s + r.usage!.completion_tokens, 0),
      total_tokens: one[0]!.usage!.prompt_tokens + one.reduce((s, r) => s + r.usage!.completion_tokens, 0),
    });
    await expectIdle();
  });

  it("greedy (temperature 0): every choice is the same", async () => {
    const many = await chatWhole({ n: 4, temperature: 0 });
    expect(many.choices).toHaveLength(4);
    const first = many.choices[0]!.message.content;
    expect(first!.length).toBeGreaterThan(0);
    for (const c of many.choices) expect(c.message.content).toBe(first);
    const streamed = await chatStreamed({ n: 4, temperature: 0 });
    expect(streamed.choices.map((c) => c.text)).toEqual([first, first, first, first]);
    await expectIdle();
  });

  it("stop strings apply per choice, as in separate requests", async () => {
    // A stop string from choice 1's own text: it cuts choice 1 (finish_reason "stop") and perhaps not the others.
    const free = await chatWhole({ n: N, seed: SEED });
    const text1 = free.choices[1]!.message.content!;
    const stop = [...text1].slice(2, 4).join("");
    expect(stop.length).toBeGreaterThan(0);
    const many = await chatWhole({ n: N, seed: SEED, stop });
    const one = await separately((seed) => chatWhole({ seed, stop }));
    expect(many.choices[1]!.finish_reason).toBe("stop");
    expect(many.choices[1]!.message.content!.length).toBeLessThan(text1.length);
    expect(many.choices.map((c) => [c.message.content, c.finish_reason])).toEqual(one.map((r) => [r.choices[0]!.message.content, r.choices[0]!.finish_reason]));
    const streamed = await chatStreamed({ n: N, seed: SEED, stop });
    expect(streamed.choices.map((c) => [c.text, c.finish])).toEqual(one.map((r) => [r.choices[0]!.message.content, r.choices[0]!.finish_reason]));
    await expectIdle();
  });
});

describe("n > 1, with the prefix cache and logprobs", () => {
  it("the later choices find the prompt's KV in the decode worker's prefix cache: the prompt is computed once", async () => {
    const long = [{ role: "user" as const, content: "Tell me a long story about a lighthouse keeper, the sea, a storm and a ship. ".repeat(3) }];
    const before = api.decode.executor.stats();
    const r = await chatWhole({ messages: long, n: 4, seed: SEED, max_tokens: 4 });
    const after = api.decode.executor.stats();
    const prompt = r.usage!.prompt_tokens;
    const hit = after.prefixCacheHitTokens - before.prefixCacheHitTokens;
    const miss = after.prefixCacheMissTokens - before.prefixCacheMissTokens;
    const block = 16;
    const cachedPart = Math.floor((prompt - 1) / block) * block; // whole blocks before the last prompt token
    expect(cachedPart).toBeGreaterThan(block);
    expect(hit).toBeGreaterThanOrEqual(3 * cachedPart);
    expect(miss).toBeLessThanOrEqual(prompt + 3 * block);
    await expectIdle();
  });

  it("logprobs per choice equal those of the separate seeded requests", async () => {
    const many = await chatWhole({ n: N, seed: SEED, logprobs: true, top_logprobs: 2 });
    const one = await separately((seed) => chatWhole({ seed, logprobs: true, top_logprobs: 2 }));
    expect(many.choices.map((c) => c.logprobs)).toEqual(one.map((r) => r.choices[0]!.logprobs));
    expect(many.choices[0]!.logprobs!.content!.length).toBeGreaterThan(0);
    const streamed = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 12, temperature: 1, n: N, seed: SEED, logprobs: true, stream: true });
    const perChoice: unknown[][] = [[], [], []];
    for await (const chunk of streamed) for (const c of chunk.choices) perChoice[c.index]!.push(...(c.logprobs?.content ?? []));
    expect(perChoice.map((x) => x.map((e) => (e as { token: string }).token))).toEqual(one.map((r) => r.choices[0]!.logprobs!.content!.map((e) => e.token)));
    await expectIdle();
  });
});

describe("n > 1, completions", () => {
  const whole = (extra: Record<string, unknown>) => client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 12, temperature: 1, ...extra } as never) as unknown as Promise<OpenAI.Completions.Completion>;

  it("whole and streamed: choice i equals a separate request with seed + i; usage sums", async () => {
    const one = await separately((seed) => whole({ seed }));
    const expected = one.map((r) => ({ text: r.choices[0]!.text, finish: r.choices[0]!.finish_reason }));
    const many = await whole({ n: N, seed: SEED });
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(many.choices.map((c) => ({ text: c.text, finish: c.finish_reason }))).toEqual(expected);
    expect(new Set(expected.map((c) => c.text)).size).toBeGreaterThan(1);
    const completion = one.reduce((s, r) => s + r.usage!.completion_tokens, 0);
    expect(many.usage).toEqual({ prompt_tokens: one[0]!.usage!.prompt_tokens, completion_tokens: completion, total_tokens: one[0]!.usage!.prompt_tokens + completion });
    const streamed = await completionStreamed({ n: N, seed: SEED });
    expect(streamed.choices).toEqual(expected);
    expect(streamed.usage).toEqual(many.usage);
    await expectIdle();
  });

  it("greedy: every choice is the same", async () => {
    const many = await whole({ n: 3, temperature: 0 });
    expect(new Set(many.choices.map((c) => c.text))).toEqual(new Set([many.choices[0]!.text]));
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    await expectIdle();
  });
});

describe("n > 1, two decode workers", () => {
  it("every choice runs on the decode worker of choice 0 (where the prompt's KV is)", async () => {
    const plane = await connect(api.natsUri!);
    const second = await startDecodeWorker({ plane, executor: { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: 256 } });
    try {
      await eventually(() => api.server.router.readiness().decodeWorkers === 2, 10_000, "the api to see both decode workers", { intervalMs: 20 });
      const executors = [api.decode.executor, second.executor];
      // The others follow choice 0 to its worker, where the least loaded worker would be the other one (choice 0
      // is outstanding on its own).
      for (let k = 0; k < 4; k++) {
        const before = executors.map((e) => e.stats().generatedTokens);
        const r = await chatWhole({ n: 4, seed: 7 + k, max_tokens: 6 });
        const grew = executors.map((e, i) => e.stats().generatedTokens - before[i]!);
        const at = grew.findIndex((g) => g > 0);
        expect(at).toBeGreaterThanOrEqual(0);
        expect(grew[1 - at]).toBe(0);
        expect(grew[at]).toBe(r.usage!.completion_tokens);
      }
      await expectIdle();
      const s = second.executor.stats();
      expect({ active: s.activeRequests, queued: s.queuedRequests, used: s.kvBlocksUsed }).toEqual({ active: 0, queued: 0, used: 0 });
    } finally {
      await second.stop(1000);
      await plane.close();
    }
    await eventually(() => api.server.router.readiness().decodeWorkers === 1, 10_000, "the api to see the second worker gone", { intervalMs: 20 });
  });
});

describe("n > 1, cancel and bad values", () => {
  it("a client that leaves mid-stream cancels every choice (executor back to zero)", async () => {
    const ac = new AbortController();
    const generatedBefore = api.decode.executor.stats().generatedTokens;
    // Each choice reserves KV for prompt + max_tokens: 3 × 600 tokens fit the test worker's 256 blocks of 16.
    const stream = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 600, temperature: 1, seed: 99, n: N, stream: true }, { signal: ac.signal });
    const { finished, peakActive } = await leaveOnceEveryChoiceGenerates(stream, ac, N, () => api.decode.executor.stats().activeRequests);
    expect(ac.signal.aborted).toBe(true);
    expect(finished).toBeLessThan(N); // some choice was still generating when the client left
    expect(peakActive).toBe(N);
    await expectIdle();
    // Left to run, the choices still going would have generated up to 600 tokens each; cancelled, they stopped
    // within a few steps of the abort (it came once every choice had its first text, a few tokens in).
    expect(api.decode.executor.stats().generatedTokens - generatedBefore).toBeLessThan(600);
  });

  const bad: Array<[string, Record<string, unknown>, string]> = [
    ["n = 0", { n: 0 }, "n"],
    ["n above 16", { n: 17 }, "n"],
    ["n not an integer", { n: 2.5 }, "n"],
    ["n a string", { n: "2" }, "n"],
    ["seed + n - 1 past the seed range", { n: 3, seed: 0xffff_fffe }, "seed"],
    ["best_of", { n: 2, best_of: 3 }, "best_of"],
  ];
  for (const [name, extra, param] of bad) {
    it(`refuses ${name} with an OpenAI 400 naming '${param}'`, async () => {
      for (const create of [
        () => client.chat.completions.create({ model: "tiny", messages, max_tokens: 2, ...extra } as never),
        () => client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 2, ...extra } as never),
      ]) {
        const err = await create().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(APIError);
        const e = err as APIError;
        expect(e.status).toBe(400);
        expect(e.param).toBe(param);
        expect(e.type).toBe("invalid_request_error");
      }
    });
  }
});
