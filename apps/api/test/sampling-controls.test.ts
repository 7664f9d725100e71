// Logprobs and logit controls through the real api (tokenizer, in-process request plane, a decode worker on the
// reference executor with models/tiny), read with the official openai client: OpenAI's logprobs shapes for chat and
// completions, whole and streamed, their values against a float64 log_softmax of the executor's logits, and each
// control reaching the executor (the api's answer equals the executor's own run of the same request).
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { logSoftmax, modelDir } from "@trtd/test-support";
import { Tokenizer } from "@trtd/tokenizer";
import { Executor, type GenerateRequest } from "@trtd/trtllm";
import { startRealApi, type RealApi } from "./support/real-api.js";

let api: RealApi;
let client: OpenAI;
let ex: Executor;
let tok: Tokenizer;
const PROMPT = [9906, 1917, 11, 1268, 527, 499, 3815, 30];

beforeAll(async () => {
  api = await startRealApi();
  client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 30_000 });
  ex = Executor.open(modelDir, { threads: 1, kvBlockCount: 64 });
  tok = Tokenizer.fromModelDir(modelDir);
}, 60_000);
afterAll(async () => {
  await api?.stop();
  await ex?.close();
  tok?.free();
});

/** The executor's own greedy run of a request (the truth the api must reproduce). */
async function direct(req: Omit<GenerateRequest, "prompt">): Promise<number[]> {
  return (await ex.generate({ prompt: PROMPT, ...req }).collect()).tokens;
}

const text = (ids: number[]) => tok.decode(ids);

describe("api - logprobs in OpenAI's shapes", () => {
  it("completions: tokens, token_logprobs, top_logprobs and text_offset; values are log_softmax of the raw logits", async () => {
    const r = await client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 5, temperature: 0, logprobs: 3 });
    const ids = await direct({ maxNewTokens: 5 });
    const choice = r.choices[0]!;
    expect(choice.text).toBe(text(ids));
    const lp = choice.logprobs!;
    expect(lp.tokens).toEqual(ids.map((id) => text([id])));
    expect(lp.text_offset).toEqual(ids.map((_, i) => text(ids.slice(0, i)).length));
    const v = ex.model.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      const ctx = [...PROMPT, ...ids.slice(0, i)];
      const ref = logSoftmax(ex.computeLogits(ctx).slice((ctx.length - 1) * v, ctx.length * v));
      expect(Math.abs(lp.token_logprobs![i]! - ref[ids[i]!]!)).toBeLessThan(1e-5);
      const best = [...ref.keys()].sort((a, b) => ref[b]! - ref[a]! || a - b).slice(0, 3);
      expect(lp.top_logprobs![i]).toEqual(Object.fromEntries(best.map((id) => [text([id]), expect.closeTo(ref[id]!, 5)])));
    }
    // Streamed: the same entries, spread over the chunks.
    const stream = await client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 5, temperature: 0, logprobs: 3, stream: true });
    const tokens: string[] = [];
    const values: number[] = [];
    const offsets: number[] = [];
    for await (const c of stream) {
      const l = c.choices[0]?.logprobs;
      if (!l) continue;
      tokens.push(...(l.tokens ?? []));
      values.push(...(l.token_logprobs ?? []));
      offsets.push(...(l.text_offset ?? []));
    }
    expect({ tokens, values, offsets }).toEqual({ tokens: lp.tokens, values: lp.token_logprobs, offsets: lp.text_offset });
    // logprobs: 0 gives each token's logprob and no alternatives.
    const zero = await client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 2, temperature: 0, logprobs: 0 });
    expect(zero.choices[0]!.logprobs!.top_logprobs).toEqual([{}, {}]);
    expect(zero.choices[0]!.logprobs!.token_logprobs).toEqual(lp.token_logprobs!.slice(0, 2));
  });

  it("chat: content entries with token, logprob, bytes and top_logprobs; streamed equals whole; none unless asked", async () => {
    const body = { model: "tiny", messages: [{ role: "user" as const, content: "Say something." }], max_tokens: 6, temperature: 0 };
    const whole = await client.chat.completions.create({ ...body, logprobs: true, top_logprobs: 4 });
    const choice = whole.choices[0]!;
    const content = choice.logprobs!.content!;
    expect(content).toHaveLength(whole.usage!.completion_tokens);
    expect(choice.logprobs!.refusal).toBeNull();
    // The token texts put together are the message (no stop string cut it), and each token's bytes are its text.
    expect(content.map((e) => e.token).join("")).toBe(choice.message.content);
    for (const e of content) {
      expect(Buffer.from(e.bytes!).toString("utf8")).toBe(e.token);
      expect(e.top_logprobs).toHaveLength(4);
      expect(e.logprob).toBeLessThanOrEqual(e.top_logprobs[0]!.logprob); // greedy: the drawn token is the best
      expect(e.top_logprobs[0]!.token).toBe(e.token);
      for (let k = 1; k < 4; k++) expect(e.top_logprobs[k]!.logprob).toBeLessThanOrEqual(e.top_logprobs[k - 1]!.logprob);
    }
    const stream = await client.chat.completions.create({ ...body, logprobs: true, top_logprobs: 4, stream: true });
    const streamed: typeof content = [];
    for await (const c of stream) streamed.push(...(c.choices[0]?.logprobs?.content ?? []));
    expect(streamed).toEqual(content);
    const plain = await client.chat.completions.create(body);
    expect(plain.choices[0]!.logprobs).toBeNull();
    expect(plain.choices[0]!.message.content).toBe(choice.message.content);
  });
});

describe("api - logit controls reach the executor", () => {
  const complete = (extra: Record<string, unknown>) =>
    client.completions.create({ model: "tiny", prompt: PROMPT, max_tokens: 8, temperature: 0, ...extra } as never) as unknown as Promise<OpenAI.Completion>;

  it("penalties, logit_bias and min_p give the executor's own tokens for the same request", async () => {
    const plain = await direct({ maxNewTokens: 8, stopTokenIds: ex.model.eosTokenIds });
    const bias = { [plain[0]!]: -50, [plain[2]!]: 8 };
    const cases: [Record<string, unknown>, Omit<GenerateRequest, "prompt" | "maxNewTokens">][] = [
      [{ logit_bias: bias }, { logitBias: bias }],
      [{ logit_bias: { [plain[1]!]: 6 }, frequency_penalty: 1.5 }, { logitBias: { [plain[1]!]: 6 }, sampling: { frequencyPenalty: 1.5 } }],
      [{ logit_bias: { [plain[1]!]: 6 }, presence_penalty: 2, repetition_penalty: 1.3 }, { logitBias: { [plain[1]!]: 6 }, sampling: { presencePenalty: 2, repetitionPenalty: 1.3 } }],
      [{ temperature: 1.3, seed: 7, min_p: 0.4 }, { sampling: { temperature: 1.3, seed: 7, minP: 0.4 } }],
    ];
    for (const [body, req] of cases) {
      const want = await direct({ maxNewTokens: 8, stopTokenIds: ex.model.eosTokenIds, ...req });
      const got = await complete(body);
      expect(got.choices[0]!.text, JSON.stringify(body)).toBe(text(want));
      if (!("temperature" in body)) expect(want).not.toEqual(plain); // the control changed the output
    }
  });

  it("stop_token_ids end generation with finish_reason stop; min_tokens holds them back; ignore_eos runs past eos", async () => {
    const plain = await direct({ maxNewTokens: 8, stopTokenIds: ex.model.eosTokenIds });
    const stopAt = await complete({ stop_token_ids: [plain[2]] });
    expect(stopAt.choices[0]).toMatchObject({ text: text(plain.slice(0, 3)), finish_reason: "stop" });
    expect(stopAt.usage!.completion_tokens).toBe(3);
    // A token forced by logit_bias and made a stop token: min_tokens keeps it out of the first 3, then it ends.
    const forced = plain[1]!;
    const held = await complete({ logit_bias: { [forced]: 100 }, stop_token_ids: [forced], min_tokens: 3, logprobs: 0 });
    expect(held.choices[0]!.finish_reason).toBe("stop");
    expect(held.usage!.completion_tokens).toBe(4);
    expect(held.choices[0]!.logprobs!.tokens!.slice(3)).toEqual([text([forced])]);
    expect(held.choices[0]!.logprobs!.tokens!.slice(0, 3)).not.toContain(text([forced]));
    // The model's eos forced: the request ends at once, unless ignore_eos.
    const eos = ex.model.eosTokenIds[0]!;
    const ended = await complete({ logit_bias: { [eos]: 100 } });
    expect(ended.choices[0]!.finish_reason).toBe("stop");
    expect(ended.usage!.completion_tokens).toBe(1);
    const past = await complete({ logit_bias: { [eos]: 100 }, ignore_eos: true, max_tokens: 5 });
    expect(past.choices[0]!.finish_reason).toBe("length");
    expect(past.usage!.completion_tokens).toBe(5);
  });
});
