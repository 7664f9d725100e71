// Constrained decoding (C ABI 4: trtd_request.constrained, trtd_executor_set_token_mask): each sampled token comes
// from the tokens its mask allows; a mask that allows everything changes no token; a request waiting for its mask
// holds up no other request; disaggregated constrained output equals aggregated; every failure path frees its KV.
// The constraints here are test doubles, named as such (AllowSetConstraint, GatedConstraint): plain token sets, so
// that the executor's mask handling is checked apart from any grammar (the grammar engine's own tests are in
// packages/grammar). The CUDA executor and the TensorRT-LLM shim refuse constrained requests (UnsupportedError).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  InvalidArgumentError,
  NativeStatus,
  UnsupportedError,
  type Executor,
  type GenerateRequest,
  type SamplingOptions,
  type TokenConstraint,
} from "../src/index.js";
import { expectIdle, openTiny, prompt, run, skipSuite, testExecutor } from "./helpers.js";

/** Test double: allows a fixed token set at every step (all tokens when `allowed` is undefined); logs each call. */
class AllowSetConstraint implements TokenConstraint {
  readonly accepted: number[] = [];
  masks = 0;
  readonly #mask: Uint32Array;
  readonly #allowed: Set<number> | undefined;
  constructor(vocab: number, allowed?: readonly number[]) {
    this.#mask = new Uint32Array(Math.ceil(vocab / 32));
    if (allowed === undefined) this.#mask.fill(0xffffffff);
    else for (const t of allowed) this.#mask[t >>> 5] |= 1 << (t & 31);
    this.#allowed = allowed && new Set(allowed);
  }
  acceptToken(token: number): boolean {
    this.accepted.push(token);
    return this.#allowed === undefined || this.#allowed.has(token);
  }
  nextTokenMask(): Uint32Array {
    this.masks++;
    return this.#mask;
  }
}

/** Test double: like AllowSetConstraint(all), but each mask waits until release() is called. */
class GatedConstraint implements TokenConstraint {
  readonly #inner: AllowSetConstraint;
  #open: (() => void) | undefined;
  #gate: Promise<void>;
  constructor(vocab: number) {
    this.#inner = new AllowSetConstraint(vocab);
    this.#gate = new Promise((r) => (this.#open = r));
  }
  release(): void {
    this.#open?.();
  }
  acceptToken(token: number): boolean {
    return this.#inner.acceptToken(token);
  }
  async nextTokenMask(): Promise<Uint32Array> {
    await this.#gate;
    return this.#inner.nextTokenMask();
  }
}

const unsupported = testExecutor !== "reference";

describe.skipIf(skipSuite("constrained") || unsupported)("constrained decoding", () => {
  let ex: Executor;
  let vocab: number;
  beforeAll(() => {
    ex = openTiny({ maxBatchSize: 8, kvTokensPerBlock: 8 });
    vocab = ex.model.vocabSize;
  });
  afterAll(async () => {
    await ex?.close();
  });

  const samplings: SamplingOptions[] = [
    {},
    { temperature: 0.9, seed: 7 },
    { temperature: 1, topK: 40, seed: 8 },
    { temperature: 1, topP: 0.8, seed: 9 },
  ];

  it("a mask that allows every token gives the unconstrained tokens (greedy, seeded, top-k, top-p)", async () => {
    for (const [i, sampling] of samplings.entries()) {
      const req: GenerateRequest = { prompt: prompt(9, 40 + i), maxNewTokens: 12, sampling };
      const plain = await run(ex, req);
      const c = new AllowSetConstraint(vocab);
      const constrained = await run(ex, { ...req, constraint: c });
      expect(constrained.tokens, `sampling ${JSON.stringify(sampling)}`).toEqual(plain.tokens);
      expect(constrained.finishReason).toBe("length");
      expect(c.accepted.slice(0, constrained.tokens.length - 1)).toEqual(constrained.tokens.slice(0, -1));
      expect(c.masks).toBe(12); // one mask per sampled token
    }
    expectIdle(ex);
  });

  it("every sampled token is one the mask allows; greedy picks the best allowed logit", async () => {
    const allowed = prompt(64, 5, vocab);
    const p = prompt(7, 6);
    for (const sampling of samplings) {
      const c = new AllowSetConstraint(vocab, allowed);
      const out = await run(ex, { prompt: p, maxNewTokens: 10, sampling, constraint: c });
      expect(out.finishReason).toBe("length");
      for (const t of out.tokens) expect(allowed).toContain(t);
    }
    // Greedy: the first token is the argmax of the prompt's last logits over the allowed tokens.
    const logits = ex.computeLogits(p);
    const last = logits.subarray((p.length - 1) * vocab, p.length * vocab);
    const best = [...new Set(allowed)].reduce((a, b) => (last[b] > last[a] || (last[b] === last[a] && b < a) ? b : a));
    const greedy = await run(ex, { prompt: p, maxNewTokens: 1, constraint: new AllowSetConstraint(vocab, allowed) });
    expect(greedy.tokens).toEqual([best]);
    expectIdle(ex);
  });

  // The merge of constrained decoding with the logit controls (executor.cpp's sample_one): the mask is applied first,
  // then the controls; logprobs stay those of the raw model row (before mask and controls).
  const controlled: Array<Pick<GenerateRequest, "sampling" | "logitBias" | "minNewTokens">> = [
    { sampling: { repetitionPenalty: 1.3, frequencyPenalty: 0.5, presencePenalty: 0.4 }, logitBias: { 7: 4, 11: -2 } },
    { sampling: { temperature: 0.9, seed: 21, minP: 0.05, repetitionPenalty: 1.2 }, logitBias: { 3: 2 }, minNewTokens: 5 },
    { sampling: { temperature: 1, topK: 30, seed: 22, frequencyPenalty: -0.5 } },
  ];

  it("with logit controls and logprobs, a mask that allows every token gives the unconstrained tokens and logprobs", async () => {
    for (const [i, controls] of controlled.entries()) {
      const req: GenerateRequest = { prompt: prompt(9, 60 + i), maxNewTokens: 10, logprobs: true, topLogprobs: 3, ...controls };
      const plain = await run(ex, req);
      const c = new AllowSetConstraint(vocab);
      const constrained = await run(ex, { ...req, constraint: c });
      expect(constrained.tokens, JSON.stringify(controls)).toEqual(plain.tokens);
      expect(constrained.logprobs, JSON.stringify(controls)).toEqual(plain.logprobs);
      expect(c.masks).toBe(10);
    }
    expectIdle(ex);
  });

  it("the mask stays a hard constraint under logit controls; logprobs are of the raw, unmasked row", async () => {
    const allowed = prompt(48, 15, vocab);
    const outside = [...Array(vocab).keys()].find((t) => !allowed.includes(t))!;
    const p = prompt(8, 16);
    for (const controls of controlled) {
      // A large bias on a disallowed token, which would win every draw without the mask.
      const req: GenerateRequest = {
        prompt: p,
        maxNewTokens: 8,
        ...controls,
        logitBias: { ...controls.logitBias, [outside]: 100 },
        logprobs: true,
        topLogprobs: 2,
        constraint: new AllowSetConstraint(vocab, allowed),
      };
      const out = await run(ex, req);
      expect(out.finishReason).toBe("length");
      for (const t of out.tokens) expect(allowed).toContain(t);
      // The first token's logprob: a float64 log_softmax of the prompt's raw next-token logits, mask and bias aside.
      const logits = ex.computeLogits(p);
      const row = logits.subarray((p.length - 1) * vocab, p.length * vocab);
      let mx = -Infinity;
      for (const v of row) mx = Math.max(mx, v);
      let sum = 0;
      for (const v of row) sum += Math.exp(v - mx);
      const lse = mx + Math.log(sum);
      expect(Math.abs(out.logprobs![0]!.logprob - (row[out.tokens[0]] - lse))).toBeLessThan(1e-5);
      const best = [...row.keys()].sort((a, b) => row[b] - row[a] || a - b).slice(0, 2);
      expect(out.logprobs![0]!.top.map((t) => t.id)).toEqual(best);
    }
    // Without the mask, the bias wins: the check above could fail.
    const free = await run(ex, { prompt: p, maxNewTokens: 3, logitBias: { [outside]: 100 } });
    expect(free.tokens).toEqual([outside, outside, outside]);
    expectIdle(ex);
  });

  it("min_new_tokens yields to a mask that allows only stop ids: the mask wins, the request stops", async () => {
    const stop = 4242;
    for (const sampling of samplings) {
      const c = new AllowSetConstraint(vocab, [stop]);
      const out = await run(ex, { prompt: prompt(6, 18), maxNewTokens: 8, stopTokenIds: [stop], minNewTokens: 5, sampling, constraint: c });
      expect(out.tokens, JSON.stringify(sampling)).toEqual([stop]);
      expect(out.finishReason).toBe("stop_token");
    }
    // With a mask that leaves other ids, min_new_tokens still holds the stop id back.
    const c = new AllowSetConstraint(vocab, [stop, 17, 18]);
    const out = await run(ex, { prompt: prompt(6, 18), maxNewTokens: 8, stopTokenIds: [stop], minNewTokens: 5, logitBias: { [stop]: 100 }, constraint: c });
    expect(out.tokens.slice(0, 5).every((t) => t === 17 || t === 18)).toBe(true);
    expect(out.tokens[5]).toBe(stop);
    expectIdle(ex);
  });

  it("a held draw (mask late) applies the controls and records logprobs as an immediate one", async () => {
    const req: GenerateRequest = { prompt: prompt(6, 17), maxNewTokens: 6, logprobs: true, topLogprobs: 2, ...controlled[1] };
    const plain = await run(ex, req);
    const gated = new GatedConstraint(vocab);
    const s = ex.generate({ ...req, constraint: gated });
    await new Promise((r) => setTimeout(r, 50)); // the first token's logits are held: its mask has not come
    gated.release();
    const out = await s.collect();
    expect(out.tokens).toEqual(plain.tokens);
    expect(out.logprobs).toEqual(plain.logprobs);
    expectIdle(ex);
  });

  it("a request waiting for its mask holds up no other request of its batch", async () => {
    const gated = new GatedConstraint(vocab);
    const waiting = ex.generate({ prompt: prompt(5, 1), maxNewTokens: 6, constraint: gated });
    const got: number[] = [];
    const collecting = (async () => {
      for await (const c of waiting) got.push(...c.tokens);
    })();
    const free = await run(ex, { prompt: prompt(5, 2), maxNewTokens: 20 });
    expect(free.tokens).toHaveLength(20);
    expect(got).toEqual([]); // still no first token: its mask has not come
    expect(ex.stats().activeRequests).toBe(1); // it holds its KV while it waits
    gated.release();
    await collecting;
    expect(got).toEqual((await run(ex, { prompt: prompt(5, 1), maxNewTokens: 6 })).tokens);
    expectIdle(ex);
  });

  it("a request cancelled while it waits for its mask ends cancelled and frees its KV", async () => {
    const gated = new GatedConstraint(vocab);
    const s = ex.generate({ prompt: prompt(5, 3), maxNewTokens: 6, constraint: gated });
    await new Promise((r) => setTimeout(r, 50));
    expect(ex.cancel(s.requestId)).toBe(true);
    const out = await s.collect();
    expect(out.finishReason).toBe("cancelled");
    gated.release(); // the late mask finds the request gone: ignored
    await new Promise((r) => setTimeout(r, 20));
    expectIdle(ex);
  });

  it("a token the constraint rejects fails the request with an error naming it", async () => {
    // Allows 1..63 through the mask but rejects every token it is told of: the first sample fails the request.
    const c = new AllowSetConstraint(vocab, Array.from({ length: 63 }, (_, i) => i + 1));
    c.acceptToken = (token) => (c.accepted.push(token), false);
    const out = await run(ex, { prompt: prompt(4, 9), maxNewTokens: 8, constraint: c });
    expect(out.finishReason).toBe("error");
    expect(out.error?.message).toMatch(/rejected token \d+/);
    expectIdle(ex);
  });

  it("a mask of the wrong size fails the request; bad masks at the ABI are refused by name", async () => {
    const wrong: TokenConstraint = { acceptToken: () => true, nextTokenMask: () => new Uint32Array(3) };
    const out = await run(ex, { prompt: prompt(4, 10), maxNewTokens: 4, constraint: wrong });
    expect(out.finishReason).toBe("error");
    expect(out.error?.message).toMatch(/token mask has 3 words; the vocabulary needs/);
    expect(() => ex.generate({ prompt: [1, 2], maxNewTokens: 2, constraint: {} as TokenConstraint })).toThrow(InvalidArgumentError);

    // The C ABI itself: unconstrained request, empty mask, wrong word count, a second waiting mask, unknown id.
    // One batch slot, taken by a long request: the constrained one stays queued, so its first mask stays waiting.
    const one = openTiny({ maxBatchSize: 1, kvTokensPerBlock: 8 });
    try {
      const words = Math.ceil(vocab / 32);
      const all = new Uint32Array(words).fill(0xffffffff);
      const h = one.handle();
      const plain = one.generate({ prompt: [1, 2, 3], maxNewTokens: 500 });
      expect(one.native.setTokenMask(h, plain.requestId, all, words)).toBe(NativeStatus.INVALID_STATE);
      expect(one.native.lastError()).toMatch(/not constrained/);
      const gated = new GatedConstraint(vocab); // its own mask never comes: the ones below are given by hand
      const c = one.generate({ prompt: [1, 2, 3], maxNewTokens: 4, constraint: gated });
      expect(one.native.setTokenMask(h, c.requestId, new Uint32Array(words), words)).toBe(NativeStatus.INVALID_ARGUMENT);
      expect(one.native.lastError()).toMatch(/allows no token/);
      expect(one.native.setTokenMask(h, c.requestId, all, words - 1)).toBe(NativeStatus.INVALID_ARGUMENT);
      expect(one.native.lastError()).toMatch(/num_words is \d+; a vocabulary of \d+ tokens needs \d+/);
      expect(one.native.setTokenMask(h, c.requestId, all, words)).toBe(0);
      expect(one.native.setTokenMask(h, c.requestId, all, words)).toBe(NativeStatus.INVALID_STATE);
      expect(one.native.lastError()).toMatch(/already has a token mask waiting/);
      expect(one.native.setTokenMask(h, 999_999, all, words)).toBe(NativeStatus.NOT_FOUND);
      one.cancel(plain.requestId);
      one.cancel(c.requestId);
      expect((await plain.collect()).finishReason).toBe("cancelled");
      expect((await c.collect()).finishReason).toBe("cancelled");
      gated.release(); // after the final chunk the driver no longer touches the request or its constraint
      expectIdle(one);
    } finally {
      await one.close();
    }
    expectIdle(ex);
  });

  it("16 constrained and unconstrained requests together give each one's tokens alone", async () => {
    const allowed = prompt(200, 77, vocab);
    const reqs = Array.from({ length: 16 }, (_, i) => ({
      prompt: prompt(3 + ((i * 31) % 40), 300 + i),
      maxNewTokens: 3 + ((i * 7) % 15),
      sampling: samplings[i % 4],
      constrained: i % 2 === 0,
    }));
    const make = (r: (typeof reqs)[number]): GenerateRequest => ({
      prompt: r.prompt,
      maxNewTokens: r.maxNewTokens,
      sampling: r.sampling,
      ...(r.constrained ? { constraint: new AllowSetConstraint(vocab, allowed) } : {}),
    });
    const alone: number[][] = [];
    for (const r of reqs) alone.push((await run(ex, make(r))).tokens);
    const together = await Promise.all(reqs.map((r) => ex.generate(make(r)).collect()));
    together.forEach((t, i) => expect(t.tokens, `request ${i}`).toEqual(alone[i]));
    expectIdle(ex);
  });
});

describe.skipIf(skipSuite("constrained disaggregation") || unsupported)("constrained decoding, disaggregated", () => {
  let a: Executor;
  let b: Executor;
  beforeAll(() => {
    a = openTiny({ kvTokensPerBlock: 8 });
    b = openTiny({ kvTokensPerBlock: 8 });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it("context-only then generation-only, each constrained, equals the aggregated constrained request", async () => {
    const vocab = a.model.vocabSize;
    const allowed = prompt(128, 21, vocab);
    for (const sampling of [{}, { temperature: 1, seed: 3 }, { temperature: 1, topK: 20, seed: 4 }]) {
      const p = prompt(11, 12);
      const agg = await run(a, { prompt: p, maxNewTokens: 9, sampling, constraint: new AllowSetConstraint(vocab, allowed) });
      const ctxStream = a.generate({ prompt: p, maxNewTokens: 9, sampling, type: "context_only", constraint: new AllowSetConstraint(vocab, allowed) });
      const first = await ctxStream.collect();
      expect(first.tokens).toHaveLength(1);
      expect(first.tokens[0]).toBe(agg.tokens[0]);
      const exported = a.exportKv(ctxStream.requestId);
      const imp = b.reserveKvImport(exported.numTokens);
      const src = exported.segments();
      imp.segments().forEach((d, i) => d.set(src[i]));
      exported.release();
      const genConstraint = new AllowSetConstraint(vocab, allowed);
      const gen = await run(b, {
        prompt: p,
        maxNewTokens: 9,
        sampling,
        type: "generation_only",
        contextPhase: { firstToken: first.tokens[0], kvImport: imp },
        constraint: genConstraint,
      });
      expect(gen.tokens).toEqual(agg.tokens);
      expect(genConstraint.accepted[0]).toBe(first.tokens[0]); // the context phase's token, accepted once
      expect(genConstraint.masks).toBe(8); // masks for tokens 2..9 only
    }
    expectIdle(a);
    expectIdle(b);
  });
});

describe.skipIf(skipSuite("constrained refusal") || !unsupported)("constrained decoding where it is not offered", () => {
  it("is refused with UnsupportedError naming the field", async () => {
    const ex = openTiny();
    try {
      expect(() => ex.generate({ prompt: [1, 2, 3], maxNewTokens: 2, constraint: new AllowSetConstraint(ex.model.vocabSize) }))
        .toThrow(UnsupportedError);
      expect(() => ex.generate({ prompt: [1, 2, 3], maxNewTokens: 2, constraint: new AllowSetConstraint(ex.model.vocabSize) }))
        .toThrow(/constrained/);
      expectIdle(ex);
    } finally {
      await ex.close();
    }
  });
});
