// `n` > 1 with a prefill worker: choice 0 is disaggregated (remote prefill, its KV pulled into the decode worker),
// the later choices are pinned to that decode worker and run there aggregated, on the prompt KV that choice 0's
// import left in its prefix cache (docs/design/serving.md, "n > 1"). The deployment: a real nats-server, a prefill
// and a decode worker on the reference executor with models/tiny, an api that sends every prompt to remote prefill
// (--disagg-min-prompt-tokens 1), and a second api on the same decode worker with disaggregation off: the
// aggregated reference. Through the official openai client: choice i of a seeded n = 3 chat (whole and streamed)
// equals a separate seeded request with seed + i on either api; the api's routing metric and the prefill worker's
// offers show that choice 0 (and only it) went through the prefill worker; logprobs per choice equal the aggregated
// ones; greedy choices are equal; the later choices find the prompt's blocks in the decode worker's prefix cache
// (the prompt is computed once, on the prefill worker); a client that leaves, mid-stream or during choice 0's
// prefill, cancels every choice; after each case both executors and the prefill worker's KV offers are back to zero.
import OpenAI, { APIUserAbortError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type RequestPlane } from "@trtd/request-plane";
import { eventually, metricValue, modelDir } from "@trtd/test-support";
import { startApiServer, type RunningApiServer } from "../src/index.js";
import { startRealApi, type RealApi } from "./support/real-api.js";
import { leaveOnceEveryChoiceGenerates, streamedChoices } from "./support/chat-choices.js";

let api: RealApi;
let aggregatedPlane: RequestPlane | undefined;
let aggregated: RunningApiServer | undefined;
/** The disaggregating api's client and the aggregated reference's. */
let disagg: OpenAI;
let agg: OpenAI;

beforeAll(async () => {
  api = await startRealApi({}, { nats: true, prefill: { minPromptTokens: 1 } });
  aggregatedPlane = await connect(api.natsUri!);
  aggregated = await startApiServer({ plane: aggregatedPlane, tokenizerDir: modelDir, modelName: "tiny", host: "127.0.0.1", port: 0, prefill: { enabled: false }, log: (l) => api.logs.push(l) });
  const router = aggregated.router;
  await eventually(() => router.readiness().ready, 10_000, "the aggregated api to see the decode worker", { intervalMs: 20 });
  const client = (url: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
  disagg = client(api.url);
  agg = client(aggregated.url);
}, 60_000);
afterAll(async () => {
  await aggregated?.close();
  await aggregatedPlane?.close();
  await api?.stop();
});

const prefill = () => api.prefill!;

/** What must be zero on a worker that holds nothing. */
function idleFigures(s: ReturnType<RealApi["decode"]["executor"]["stats"]>) {
  return { active: s.activeRequests, queued: s.queuedRequests, kvBlocksUsed: s.kvBlocksUsed, exports: s.pinnedExports, imports: s.pendingImports };
}
const IDLE = { active: 0, queued: 0, kvBlocksUsed: 0, exports: 0, imports: 0 };

/** Both executors back to zero and every KV offer of the prefill worker released (acks arrive after the response). */
async function expectIdle(): Promise<void> {
  const settled = () =>
    [api.decode.executor.stats(), prefill().executor.stats()].every((s) => s.activeRequests + s.queuedRequests + s.kvBlocksUsed + s.pinnedExports + s.pendingImports === 0) &&
    prefill().offers.stats().active === 0;
  await eventually(settled, 10_000, "both executors idle and the prefill worker's offers released", { intervalMs: 20 });
  expect(idleFigures(api.decode.executor.stats())).toEqual(IDLE);
  expect(idleFigures(prefill().executor.stats())).toEqual(IDLE);
  expect(prefill().offers.stats().active).toBe(0);
  expect(api.logs).toEqual([]); // no unexpected 500 and no prefill fallback was logged
}

type Mode = "disaggregated" | "aggregated" | "recomputed";
/** The api's `trtd_routed_requests_total` per execution mode, with the prefill worker's offers made so far. */
async function routing(url: string) {
  const mode = (m: Mode) => metricValue(url, `trtd_routed_requests_total{mode="${m}"}`);
  return { disaggregated: await mode("disaggregated"), aggregated: await mode("aggregated"), recomputed: await mode("recomputed"), offers: prefill().offers.stats().offered };
}
/** What ran since `before`: requests per mode on the api at `url`, and offers the prefill worker made. */
async function routedSince(url: string, before: Awaited<ReturnType<typeof routing>>) {
  const now = await routing(url);
  return { disaggregated: now.disaggregated - before.disaggregated, aggregated: now.aggregated - before.aggregated, recomputed: now.recomputed - before.recomputed, offers: now.offers - before.offers };
}

// Several whole 16-token KV blocks (69 tokens with the chat template): the prefix cache has something to share.
const messages = [{ role: "user" as const, content: "Tell me a long story about a lighthouse keeper, the sea, a storm and a ship. ".repeat(3) }];
const N = 3;
const SEED = 4321;

interface Choice {
  text: string | null;
  finish: string | null;
}

async function chatWhole(client: OpenAI, extra: Record<string, unknown>) {
  return (await client.chat.completions.create({ model: "tiny", messages, max_tokens: 12, temperature: 1, ...extra } as never)) as unknown as OpenAI.Chat.ChatCompletion;
}
const choicesOf = (r: OpenAI.Chat.ChatCompletion): Choice[] => r.choices.map((c) => ({ text: c.message.content, finish: c.finish_reason }));

/** A streamed chat's choices by index, each ended by exactly one finish_reason chunk, its last. */
async function chatStreamed(client: OpenAI, extra: Record<string, unknown>) {
  const stream = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 12, temperature: 1, stream: true, stream_options: { include_usage: true }, ...extra } as never);
  return streamedChoices(stream as unknown as AsyncIterable<OpenAI.Chat.ChatCompletionChunk>);
}

/** N separate n = 1 requests through `client`, request i with seed + i: the expected choices. */
async function separately(client: OpenAI, extra: Record<string, unknown> = {}): Promise<Choice[]> {
  const out: Choice[] = [];
  for (let i = 0; i < N; i++) out.push(...choicesOf(await chatWhole(client, { seed: SEED + i, ...extra })));
  return out;
}

describe("n > 1 with a prefill worker", () => {
  it("whole: choice 0 is prefilled remotely, the others run pinned on its decode worker; choice i equals seed + i alone, disaggregated and aggregated", async () => {
    const before = await routing(api.url);
    const many = await chatWhole(disagg, { n: N, seed: SEED });
    // Choice 0 went through the prefill worker (one offer, pulled: no recompute); the later two were aggregated.
    expect(await routedSince(api.url, before)).toEqual({ disaggregated: 1, aggregated: N - 1, recomputed: 0, offers: 1 });
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2]);

    const beforeOne = await routing(api.url);
    const oneDisaggregated = await separately(disagg);
    expect(await routedSince(api.url, beforeOne)).toEqual({ disaggregated: N, aggregated: 0, recomputed: 0, offers: N });
    const beforeAgg = await routing(aggregated!.url);
    const oneAggregated = await separately(agg);
    const manyAggregated = await chatWhole(agg, { n: N, seed: SEED });
    expect(await routedSince(aggregated!.url, beforeAgg)).toEqual({ disaggregated: 0, aggregated: 2 * N, recomputed: 0, offers: 0 });

    expect(choicesOf(many)).toEqual(oneDisaggregated);
    expect(choicesOf(many)).toEqual(oneAggregated);
    expect(choicesOf(manyAggregated)).toEqual(oneAggregated);
    // Different seeds draw different samples on the random-weight model (otherwise the checks above say little).
    expect(new Set(choicesOf(many).map((c) => c.text)).size).toBeGreaterThan(1);
    expect(many.usage).toEqual(manyAggregated.usage);
    await expectIdle();
  });

  it("streamed: the same choices, each closed by its own finish_reason chunk, one usage chunk with the sums", async () => {
    const expected = await separately(agg);
    const aggregatedUsage = (await chatWhole(agg, { n: N, seed: SEED })).usage;
    const before = await routing(api.url);
    const many = await chatStreamed(disagg, { n: N, seed: SEED });
    expect(await routedSince(api.url, before)).toEqual({ disaggregated: 1, aggregated: N - 1, recomputed: 0, offers: 1 });
    expect(many.choices).toEqual(expected);
    expect(many.choices).toEqual(await separately(disagg));
    expect(many.usage).toEqual(aggregatedUsage);
    await expectIdle();
  });

  it("greedy (temperature 0): three equal choices, equal to the aggregated answer", async () => {
    const reference = choicesOf(await chatWhole(agg, { temperature: 0 }))[0]!;
    expect(reference.text!.length).toBeGreaterThan(0);
    const before = await routing(api.url);
    const many = await chatWhole(disagg, { n: N, temperature: 0 });
    expect(choicesOf(many)).toEqual([reference, reference, reference]);
    const streamed = await chatStreamed(disagg, { n: N, temperature: 0 });
    expect(streamed.choices).toEqual([reference, reference, reference]);
    expect(await routedSince(api.url, before)).toEqual({ disaggregated: 2, aggregated: 2 * (N - 1), recomputed: 0, offers: 2 });
    await expectIdle();
  });

  it("logprobs per choice (choice 0's first token's from the prefill worker) equal those of the aggregated requests", async () => {
    const lp = { logprobs: true, top_logprobs: 2 };
    const expected: unknown[] = [];
    for (let i = 0; i < N; i++) expected.push((await chatWhole(agg, { seed: SEED + i, ...lp })).choices[0]!.logprobs);
    const before = await routing(api.url);
    const many = await chatWhole(disagg, { n: N, seed: SEED, ...lp });
    expect(await routedSince(api.url, before)).toEqual({ disaggregated: 1, aggregated: N - 1, recomputed: 0, offers: 1 });
    expect(many.choices[0]!.logprobs!.content!.length).toBeGreaterThan(1);
    expect(many.choices.map((c) => c.logprobs)).toEqual(expected);
    await expectIdle();
  });

  it("the later choices reuse the prompt KV imported for choice 0: the prompt is computed once, on the prefill worker", async () => {
    // A prompt neither worker has seen, so that no earlier request left it in a prefix cache.
    const fresh = [{ role: "user" as const, content: `A new tale, number ${Date.now()}: the keeper, the storm, the ship and the light at sea. `.repeat(3) }];
    const decodeBefore = api.decode.executor.stats();
    const prefillBefore = prefill().executor.stats();
    const r = await chatWhole(disagg, { messages: fresh, n: N, seed: SEED, max_tokens: 4 });
    const decodeAfter = api.decode.executor.stats();
    const prefillAfter = prefill().executor.stats();
    const prompt = r.usage!.prompt_tokens;
    const block = 16;
    const cachedPart = Math.floor((prompt - 1) / block) * block; // whole blocks before the last prompt token
    expect(cachedPart).toBeGreaterThan(block);
    // The prefill worker computed the whole prompt once (choice 0's context phase).
    expect(prefillAfter.prefixCacheMissTokens - prefillBefore.prefixCacheMissTokens).toBe(prompt);
    // On the decode worker choice 0 was generation-only (it counts neither hits nor misses); each later choice took
    // the prompt's whole blocks from the prefix cache and computed only the rest.
    expect(decodeAfter.prefixCacheHitTokens - decodeBefore.prefixCacheHitTokens).toBe((N - 1) * cachedPart);
    expect(decodeAfter.prefixCacheMissTokens - decodeBefore.prefixCacheMissTokens).toBe((N - 1) * (prompt - cachedPart));
    await expectIdle();
  });

  it("a client that leaves mid-stream cancels every choice, on both workers", async () => {
    const ac = new AbortController();
    const generatedBefore = api.decode.executor.stats().generatedTokens;
    const before = await routing(api.url);
    // Each choice reserves KV for prompt + max_tokens: 3 × (69 + 600) tokens fit the decode worker's 256 blocks of 16.
    const stream = await disagg.chat.completions.create({ model: "tiny", messages, max_tokens: 600, temperature: 1, seed: 99, n: N, stream: true }, { signal: ac.signal });
    const { finished, peakActive } = await leaveOnceEveryChoiceGenerates(stream, ac, N, () => api.decode.executor.stats().activeRequests);
    expect(ac.signal.aborted).toBe(true);
    expect(finished).toBeLessThan(N); // some choice was still generating when the client left
    expect(peakActive).toBe(N);
    expect(await routedSince(api.url, before)).toEqual({ disaggregated: 1, aggregated: N - 1, recomputed: 0, offers: 1 });
    await expectIdle();
    // Left to run, the choices would have generated up to 600 tokens each; cancelled, they stopped within a few
    // steps of the abort (it came once every choice had its first text, a few tokens in).
    expect(api.decode.executor.stats().generatedTokens - generatedBefore).toBeLessThan(600);
  });

  it("a client that leaves while choice 0 is in remote prefill: no choice is left running and its KV offer is released", async () => {
    const ac = new AbortController();
    const offered = prefill().offers.stats().offered;
    const decodeGenerated = api.decode.executor.stats().generatedTokens;
    const outcome = (async () => {
      try {
        const stream = await disagg.chat.completions.create({ model: "tiny", messages, max_tokens: 600, temperature: 1, seed: 98, n: N, stream: true }, { signal: ac.signal });
        for await (const chunk of stream) void chunk; // read until the abort ends it
        return "ended";
      } catch (err) {
        return err;
      }
    })();
    // The prefill worker has made choice 0's offer: its reply is on the way to the api, or the decode worker is
    // pulling it. Leave now, before the first token (the stream's headers come with the first event).
    await eventually(() => prefill().offers.stats().offered > offered, 10_000, "the prefill worker to offer choice 0's KV", { intervalMs: 1 });
    ac.abort();
    const result = await outcome;
    expect(result).toBeInstanceOf(APIUserAbortError); // the abort ended it, not the end of the generation
    expect(prefill().offers.stats().offered).toBe(offered + 1); // only choice 0 was prefilled remotely
    await expectIdle();
    // However far choice 0 got, the choices stopped within a few steps of the abort, far short of 3 × 600 tokens.
    expect(api.decode.executor.stats().generatedTokens - decodeGenerated).toBeLessThan(600);
  });
});
