// Constrained decoding (C ABI 4: trtd_request.constrained, trtd_executor_set_token_mask): each sampled token comes
// from the tokens its mask allows; a mask that allows everything changes no token; a request waiting for its mask
// holds up no other request; disaggregated constrained output equals aggregated; every failure path frees its KV.
// The constraints here are test doubles, named as such (AllowSetConstraint, GatedConstraint): plain token sets, so
// that the executor's mask handling is checked apart from any grammar (the grammar engine's own tests are in
// packages/grammar). Both executors run it (TRTD_TEST_EXECUTOR=cuda: the CUDA executor draws constrained rows on the
// host with the reference executor's code, or with TRTD_CUDA_DEVICE_MASK=1 masks and draws them on the device: the
// last suite opens its executors with it, and tools/gpu/run_conformance.sh runs this whole file a second time with it
// set); token-for-token comparisons there go through NearTies (near-tie.ts): bf16 runs of different batch shapes may
// part at a measured near-tie.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  InvalidArgumentError,
  NativeStatus,
  type Executor,
  type ExecutorOptions,
  type GenerateRequest,
  type SamplingOptions,
  type TokenConstraint,
} from "../src/index.js";
import { expectIdle, openTiny, run, skipSuite, testExecutor } from "./helpers.js";
import { NearTies, type NearTieRequest } from "./near-tie.js";
import { eventually, pseudoTokens } from "@trtd/test-support";

const ties = new NearTies();
afterAll(async () => {
  await ties.close();
});
const onCuda = testExecutor === "cuda";
/** bf16 logits of two computations of one row (a step, computeLogits) differ by ~2e-2 rms on the CUDA executor. */
const logitTolerance = onCuda ? 0.1 : 1e-5;

/** Token lists equal (near-ties accepted on CUDA), and logprobs equal over the tokens before any parting. */
function expectSameOutput(
  ex: Executor,
  request: NearTieRequest,
  expected: { tokens: number[]; logprobs?: unknown[] },
  got: { tokens: number[]; logprobs?: unknown[] },
  label: string,
): void {
  ties.expectSame(ex, request, expected.tokens, got.tokens, label);
  if (expected.logprobs === undefined && got.logprobs === undefined) return;
  const k = expected.tokens.findIndex((t, i) => got.tokens[i] !== t);
  const n = k < 0 ? expected.tokens.length : k;
  expect(got.logprobs?.slice(0, n), `${label}: logprobs`).toEqual(expected.logprobs?.slice(0, n));
}

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

/** Test double: like AllowSetConstraint (all tokens, or `allowed`), but every mask comes `ms` milliseconds late. */
class LateConstraint implements TokenConstraint {
  readonly #inner: AllowSetConstraint;
  readonly #ms: number;
  constructor(vocab: number, ms: number, allowed?: readonly number[]) {
    this.#inner = new AllowSetConstraint(vocab, allowed);
    this.#ms = ms;
  }
  get masks(): number {
    return this.#inner.masks;
  }
  acceptToken(token: number): boolean {
    return this.#inner.acceptToken(token);
  }
  async nextTokenMask(): Promise<Uint32Array> {
    await new Promise((r) => setTimeout(r, this.#ms));
    return this.#inner.nextTokenMask();
  }
}

/**
 * Test double: like AllowSetConstraint (all tokens, or `allowed`), but each mask from the `from`-th on waits until
 * release() is called.
 */
class GatedConstraint implements TokenConstraint {
  readonly #inner: AllowSetConstraint;
  readonly #from: number;
  #asked = 0;
  #open: (() => void) | undefined;
  #gate: Promise<void>;
  constructor(vocab: number, from = 1, allowed?: readonly number[]) {
    this.#inner = new AllowSetConstraint(vocab, allowed);
    this.#from = from;
    this.#gate = new Promise((r) => (this.#open = r));
  }
  /** Masks asked for so far (the one waiting included). */
  get asked(): number {
    return this.#asked;
  }
  release(): void {
    this.#open?.();
  }
  acceptToken(token: number): boolean {
    return this.#inner.acceptToken(token);
  }
  async nextTokenMask(): Promise<Uint32Array> {
    if (++this.#asked >= this.#from) await this.#gate;
    return this.#inner.nextTokenMask();
  }
}

/** Greedy, seeded, top-k and top-p: the samplings the cases compare under. */
const SAMPLINGS: SamplingOptions[] = [
  {},
  { temperature: 0.9, seed: 7 },
  { temperature: 1, topK: 40, seed: 8 },
  { temperature: 1, topP: 0.8, seed: 9 },
];

describe.skipIf(skipSuite("constrained"))("constrained decoding", () => {
  let ex: Executor;
  // For "a mask that allows every token changes nothing": without the prefix cache, the constrained run computes
  // its rows as the plain run did. With it, the second run of a prompt starts from the first run's cached blocks, so
  // its first row comes from a 1-token decode instead of a prefill: bit for bit the same on the reference executor,
  // but other bf16 kernels on the CUDA executor (GPU run 28: logprobs ~1e-2 apart, a top-p draw parted). The prefix
  // cache's own equality is prefix-cache.test.ts's.
  let uncached: Executor;
  let vocab: number;
  beforeAll(() => {
    ex = openTiny({ maxBatchSize: 8, kvTokensPerBlock: 8 });
    uncached = openTiny({ maxBatchSize: 8, kvTokensPerBlock: 8, prefixCache: false });
    vocab = ex.model.vocabSize;
  });
  afterAll(async () => {
    await ex?.close();
    await uncached?.close();
  });

  it("a mask that allows every token gives the unconstrained tokens (greedy, seeded, top-k, top-p)", async () => {
    for (const [i, sampling] of SAMPLINGS.entries()) {
      const req: GenerateRequest = { prompt: pseudoTokens(9, 40 + i), maxNewTokens: 12, sampling };
      // The CUDA executor draws a constrained row on the host (the reference executor's sampler, host_draws.cpp) and
      // the plain one on the device (kernels.cu sample_k): both walk the same order for every kind of row (top-p
      // alone included: the nucleus in (logit desc, id asc) order), so this also compares the two samplers.
      const plain = await run(uncached, req);
      const c = new AllowSetConstraint(vocab);
      const constrained = await run(uncached, { ...req, constraint: c });
      ties.expectSame(uncached, req, plain.tokens, constrained.tokens, `sampling ${JSON.stringify(sampling)}`);
      expect(constrained.finishReason).toBe("length");
      expect(c.accepted.slice(0, constrained.tokens.length - 1)).toEqual(constrained.tokens.slice(0, -1));
      expect(c.masks).toBe(12); // one mask per sampled token
    }
    expectIdle(uncached);
  });

  it("every sampled token is one the mask allows; greedy picks the best allowed logit", async () => {
    const allowed = pseudoTokens(64, 5, vocab);
    const p = pseudoTokens(7, 6);
    for (const sampling of SAMPLINGS) {
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
    if (onCuda) {
      // The step's bf16 row and computeLogits' may order a near-tie differently: the token is allowed and within the
      // bf16 error of the best allowed logit.
      expect(allowed).toContain(greedy.tokens[0]);
      expect(last[best] - last[greedy.tokens[0]]).toBeLessThanOrEqual(logitTolerance);
    } else {
      expect(greedy.tokens).toEqual([best]);
    }
    expectIdle(ex);
  });

  // The merge of constrained decoding with the logit controls (host_draws.cpp's draw_token, both executors): the mask
  // is applied first, then the controls; logprobs stay those of the raw model row (before mask and controls).
  const controlled: Array<Pick<GenerateRequest, "sampling" | "logitBias" | "minNewTokens">> = [
    { sampling: { repetitionPenalty: 1.3, frequencyPenalty: 0.5, presencePenalty: 0.4 }, logitBias: { 7: 4, 11: -2 } },
    { sampling: { temperature: 0.9, seed: 21, minP: 0.05, repetitionPenalty: 1.2 }, logitBias: { 3: 2 }, minNewTokens: 5 },
    { sampling: { temperature: 1, topK: 30, seed: 22, frequencyPenalty: -0.5 } },
  ];

  it("with logit controls and logprobs, a mask that allows every token gives the unconstrained tokens and logprobs", async () => {
    for (const [i, controls] of controlled.entries()) {
      const req: GenerateRequest = { prompt: pseudoTokens(9, 60 + i), maxNewTokens: 10, logprobs: true, topLogprobs: 3, ...controls };
      const plain = await run(uncached, req);
      const c = new AllowSetConstraint(vocab);
      const constrained = await run(uncached, { ...req, constraint: c });
      expectSameOutput(uncached, req, plain, constrained, JSON.stringify(controls));
      expect(c.masks).toBe(10);
    }
    expectIdle(uncached);
  });

  it("the mask stays a hard constraint under logit controls; logprobs are of the raw, unmasked row", async () => {
    const allowed = pseudoTokens(48, 15, vocab);
    const outside = [...Array(vocab).keys()].find((t) => !allowed.includes(t))!;
    const p = pseudoTokens(8, 16);
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
      expect(Math.abs(out.logprobs![0]!.logprob - (row[out.tokens[0]] - lse))).toBeLessThan(logitTolerance);
      const best = [...row.keys()].sort((a, b) => row[b] - row[a] || a - b).slice(0, 2);
      if (onCuda) {
        // bf16: the step's row and computeLogits' may swap a near-tie; the listed best is within the error of the best.
        expect(row[best[0]] - row[out.logprobs![0]!.top[0].id]).toBeLessThanOrEqual(logitTolerance);
      } else {
        expect(out.logprobs![0]!.top.map((t) => t.id)).toEqual(best);
      }
    }
    // Without the mask, the bias wins: the check above could fail.
    const free = await run(ex, { prompt: p, maxNewTokens: 3, logitBias: { [outside]: 100 } });
    expect(free.tokens).toEqual([outside, outside, outside]);
    expectIdle(ex);
  });

  it("min_new_tokens yields to a mask that allows only stop ids: the mask wins, the request stops", async () => {
    const stop = 4242;
    for (const sampling of SAMPLINGS) {
      const c = new AllowSetConstraint(vocab, [stop]);
      const out = await run(ex, { prompt: pseudoTokens(6, 18), maxNewTokens: 8, stopTokenIds: [stop], minNewTokens: 5, sampling, constraint: c });
      expect(out.tokens, JSON.stringify(sampling)).toEqual([stop]);
      expect(out.finishReason).toBe("stop_token");
    }
    // With a mask that leaves other ids, min_new_tokens still holds the stop id back.
    const c = new AllowSetConstraint(vocab, [stop, 17, 18]);
    const out = await run(ex, { prompt: pseudoTokens(6, 18), maxNewTokens: 8, stopTokenIds: [stop], minNewTokens: 5, logitBias: { [stop]: 100 }, constraint: c });
    expect(out.tokens.slice(0, 5).every((t) => t === 17 || t === 18)).toBe(true);
    expect(out.tokens[5]).toBe(stop);
    expectIdle(ex);
  });

  it("a held draw (mask late) applies the controls and records logprobs as an immediate one", async () => {
    const req: GenerateRequest = { prompt: pseudoTokens(6, 17), maxNewTokens: 6, logprobs: true, topLogprobs: 2, ...controlled[1] };
    const plain = await run(ex, req);
    const gated = new GatedConstraint(vocab);
    const s = ex.generate({ ...req, constraint: gated });
    await new Promise((r) => setTimeout(r, 50)); // the first token's logits are held: its mask has not come
    gated.release();
    const out = await s.collect();
    expectSameOutput(ex, req, plain, out, "held draw");
    expectIdle(ex);
  });

  it("a mask given while the step's forward pass runs is drawn in that step (forward pass held by the stall hook)", async () => {
    // TRTD_TEST_STALL_EXECUTOR_FILE: while the file exists, each step is built and counted, then waits before its
    // forward pass. The first step is built with the request's row deferred (its mask is gated), the mask is given
    // during the stall, and the forward pass then finds it: the row must draw in that step, with that mask (a row
    // left deferred with its mask taken would never draw: the request would hang). Later masks come as they come.
    const dir = mkdtempSync(join(tmpdir(), "trtd-stall-"));
    const stallFile = join(dir, "stall");
    writeFileSync(stallFile, "");
    process.env.TRTD_TEST_STALL_EXECUTOR_FILE = stallFile;
    let stalled: Executor | undefined;
    try {
      stalled = openTiny({ maxBatchSize: 8, kvTokensPerBlock: 8 });
      delete process.env.TRTD_TEST_STALL_EXECUTOR_FILE;
      const allowed = pseudoTokens(64, 91, vocab);
      const req: GenerateRequest = { prompt: pseudoTokens(7, 23), maxNewTokens: 5, logprobs: true, sampling: { temperature: 1, seed: 5 } };
      const gated = new GatedConstraint(vocab, 1, allowed);
      const s = stalled.generate({ ...req, constraint: gated });
      const ex1 = stalled;
      await eventually(() => ex1.stats().iterations === 1, 10_000, "the first step built and stalled");
      expect(gated.asked).toBe(1); // its mask is asked for and held back: the step was built without it
      gated.release();
      await new Promise((r) => setTimeout(r, 20)); // the binding sets the mask on the microtasks after release()
      rmSync(stallFile);
      const out = await s.collect();
      expect(out.tokens).toHaveLength(5);
      for (const t of out.tokens) expect(allowed).toContain(t);
      const inTime = await run(ex, { ...req, constraint: new AllowSetConstraint(vocab, allowed) });
      expectSameOutput(ex, { ...req, allowed }, inTime, out, "mask given during the forward pass vs masks in time");
      expectIdle(stalled);
    } finally {
      delete process.env.TRTD_TEST_STALL_EXECUTOR_FILE;
      await stalled?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a request waiting for its mask holds up no other request of its batch", async () => {
    const gated = new GatedConstraint(vocab);
    const waiting = ex.generate({ prompt: pseudoTokens(5, 1), maxNewTokens: 6, constraint: gated });
    const got: number[] = [];
    const collecting = (async () => {
      for await (const c of waiting) got.push(...c.tokens);
    })();
    const free = await run(ex, { prompt: pseudoTokens(5, 2), maxNewTokens: 20 });
    expect(free.tokens).toHaveLength(20);
    expect(got).toEqual([]); // still no first token: its mask has not come
    expect(ex.stats().activeRequests).toBe(1); // it holds its KV while it waits
    gated.release();
    await collecting;
    const alone = { prompt: pseudoTokens(5, 1), maxNewTokens: 6 };
    ties.expectSame(ex, alone, (await run(ex, alone)).tokens, got, "held request vs alone");
    expectIdle(ex);
  });

  it("a request holding its logits gives way under KV pressure (CUDA: preempted, recomputed) and draws the same tokens", async () => {
    // 8 blocks of 16. A (prompt 40, 80 new) and B (prompt 40, held at its first mask). CUDA admits both on 3 blocks
    // each; A's decode at position 80 needs a sixth block, none is free, so the youngest, B, is preempted while it
    // holds its logits, and waits in the queue (it needs 3 blocks, 2 are free). The reference executor reserves A's
    // whole lifetime (8 blocks), so B waits in the queue from the start. A stops at its 45th mask (position 84),
    // past that point: one request runs, one is queued, on both executors.
    const small = openTiny({ kvBlockCount: 8, kvTokensPerBlock: 16 });
    try {
      const reqA: GenerateRequest = { prompt: pseudoTokens(40, 501), maxNewTokens: 80 };
      const reqB: GenerateRequest = { prompt: pseudoTokens(40, 502), maxNewTokens: 6, sampling: { temperature: 1, topK: 40, seed: 5 } };
      const aloneA = (await run(small, reqA)).tokens;
      const aloneB = (await run(small, reqB)).tokens;
      const gateA = new GatedConstraint(vocab, 45);
      const gateB = new GatedConstraint(vocab);
      const a = small.generate({ ...reqA, constraint: gateA });
      const b = small.generate({ ...reqB, constraint: gateB });
      const gotB: number[] = [];
      const collectingB = (async () => {
        for await (const c of b) gotB.push(...c.tokens);
      })();
      await eventually(
        () => gateA.asked >= 45 && small.stats().activeRequests === 1 && small.stats().queuedRequests === 1,
        10_000,
        "A waiting for its 45th mask, B queued",
        { intervalMs: 5 },
      );
      expect(gotB).toEqual([]);
      gateA.release();
      const outA = await a.collect();
      ties.expectSame(small, reqA, aloneA, outA.tokens, "A vs alone");
      expect(gotB).toEqual([]); // B, readmitted once A ended, holds its recomputed logits for its mask
      gateB.release();
      await collectingB;
      ties.expectSame(small, reqB, aloneB, gotB, "B (held, preempted, recomputed) vs alone");
      expectIdle(small);
    } finally {
      await small.close();
    }
  });

  it("a request cancelled while it waits for its mask ends cancelled and frees its KV", async () => {
    const gated = new GatedConstraint(vocab);
    const s = ex.generate({ prompt: pseudoTokens(5, 3), maxNewTokens: 6, constraint: gated });
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
    const out = await run(ex, { prompt: pseudoTokens(4, 9), maxNewTokens: 8, constraint: c });
    expect(out.finishReason).toBe("error");
    expect(out.error?.message).toMatch(/rejected token \d+/);
    expectIdle(ex);
  });

  it("a mask of the wrong size fails the request; bad masks at the ABI are refused by name", async () => {
    const wrong: TokenConstraint = { acceptToken: () => true, nextTokenMask: () => new Uint32Array(3) };
    const out = await run(ex, { prompt: pseudoTokens(4, 10), maxNewTokens: 4, constraint: wrong });
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
    const allowed = pseudoTokens(200, 77, vocab);
    const reqs = Array.from({ length: 16 }, (_, i) => ({
      prompt: pseudoTokens(3 + ((i * 31) % 40), 300 + i),
      maxNewTokens: 3 + ((i * 7) % 15),
      sampling: SAMPLINGS[i % 4],
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
    // A constrained request's draws are over the allowed ids only: NearTies replays them so (GPU run 28 refused a
    // parting of request 2, top-k 40, whose two tokens sit 0.035 apart among the allowed ids, as unmasked draws).
    together.forEach((t, i) =>
      ties.expectSame(ex, { ...reqs[i], allowed: reqs[i].constrained ? allowed : undefined }, alone[i], t.tokens, `request ${i}`),
    );
    ties.expectFew(0.25);
    expectIdle(ex);
  });
});

describe.skipIf(skipSuite("constrained disaggregation"))("constrained decoding, disaggregated", () => {
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
    const allowed = pseudoTokens(128, 21, vocab);
    for (const sampling of [{}, { temperature: 1, seed: 3 }, { temperature: 1, topK: 20, seed: 4 }]) {
      const p = pseudoTokens(11, 12);
      const agg = await run(a, { prompt: p, maxNewTokens: 9, sampling, constraint: new AllowSetConstraint(vocab, allowed) });
      const ctxStream = a.generate({ prompt: p, maxNewTokens: 9, sampling, type: "context_only", constraint: new AllowSetConstraint(vocab, allowed) });
      const first = await ctxStream.collect();
      expect(first.tokens).toHaveLength(1);
      ties.expectSame(a, { prompt: p, sampling, allowed }, agg.tokens.slice(0, 1), first.tokens, "context phase vs aggregated");
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
      ties.expectSame(a, { prompt: p, sampling, allowed }, agg.tokens, gen.tokens, "disaggregated vs aggregated");
      expect(genConstraint.accepted[0]).toBe(first.tokens[0]); // the context phase's token, accepted once
      expect(genConstraint.masks).toBe(8); // masks for tokens 2..9 only
    }
    expectIdle(a);
    expectIdle(b);
  });
});

/**
 * A tiny executor with the CUDA executor's device token masks on or off: TRTD_CUDA_DEVICE_MASK, read once when the
 * executor is opened, set to "1" or explicitly "0" (so that a run with the variable set for the whole process still
 * opens a host-path executor here), then restored.
 */
function openMaskPath(device: boolean, options: ExecutorOptions = {}): Executor {
  const saved = process.env.TRTD_CUDA_DEVICE_MASK;
  process.env.TRTD_CUDA_DEVICE_MASK = device ? "1" : "0";
  try {
    return openTiny(options);
  } finally {
    if (saved === undefined) delete process.env.TRTD_CUDA_DEVICE_MASK;
    else process.env.TRTD_CUDA_DEVICE_MASK = saved;
  }
}

/** For describe.skipIf: device token masks are the CUDA executor's (the reference executor has one draw path). */
function notCuda(suite: string): boolean {
  if (onCuda) return false;
  console.warn(`[trtllm ${suite}] SKIPPED: TRTD_CUDA_DEVICE_MASK is the CUDA executor's, and TRTD_TEST_EXECUTOR=${testExecutor}`);
  return true;
}

// The CUDA executor's device path (TRTD_CUDA_DEVICE_MASK=1): a constrained row without logit controls, logprobs or
// min_p has its disallowed logits set to -inf on the device and is drawn by the device sampler with the other rows; a
// row whose mask is late keeps its logits in a device held slot and is drawn there when the mask comes. Rows with
// logprobs (or logit controls, min_p) stay on the host path in the same executor, which gives a same-executor
// comparison of the two paths: the same logits rows, so greedy tokens are equal exactly, and seeded ones up to the
// rounding of the two samplers' sums (the device sampler's own sequence; NearTies replays it over the allowed ids).
// Comparisons inside one path on one executor with the prefix cache off are exact: both runs compute the same rows and
// the same sampler draws from them.
const deviceSuite = "constrained decoding, device masks";
describe.skipIf(notCuda(deviceSuite) || skipSuite(deviceSuite))(`${deviceSuite} (CUDA, TRTD_CUDA_DEVICE_MASK=1)`, () => {
  let dev: Executor; // device masks on
  let host: Executor; // off: every constrained row drawn on the host
  let vocab: number;
  beforeAll(() => {
    dev = openMaskPath(true, { maxBatchSize: 8, kvTokensPerBlock: 8, prefixCache: false });
    host = openMaskPath(false, { maxBatchSize: 8, kvTokensPerBlock: 8, prefixCache: false });
    vocab = dev.model.vocabSize;
  });
  afterAll(async () => {
    await dev?.close();
    await host?.close();
  });

  it("a mask that allows every token gives the unconstrained tokens exactly (greedy, seeded, top-k, top-p)", async () => {
    for (const [i, sampling] of SAMPLINGS.entries()) {
      const req: GenerateRequest = { prompt: pseudoTokens(9, 140 + i), maxNewTokens: 12, sampling };
      const plain = await run(dev, req);
      const c = new AllowSetConstraint(vocab);
      const constrained = await run(dev, { ...req, constraint: c });
      // An all-ones mask writes nothing (token_mask_k skips full words in place): the same rows, the same sampler.
      expect(constrained.tokens, JSON.stringify(sampling)).toEqual(plain.tokens);
      expect(constrained.finishReason).toBe("length");
      expect(c.masks).toBe(12);
    }
    expectIdle(dev);
  });

  it("a single allowed id is always drawn, whatever the sampling", async () => {
    for (const only of [4242, vocab - 1, 0]) {
      for (const sampling of SAMPLINGS) {
        const out = await run(dev, { prompt: pseudoTokens(6, 19), maxNewTokens: 6, sampling, constraint: new AllowSetConstraint(vocab, [only]) });
        expect(out.tokens, `${only} ${JSON.stringify(sampling)}`).toEqual(Array(6).fill(only));
      }
    }
    expectIdle(dev);
  });

  it("over a partial mask, the device path draws the host path's tokens (greedy exactly)", async () => {
    const allowed = pseudoTokens(64, 205, vocab);
    for (const [i, sampling] of SAMPLINGS.entries()) {
      const req: GenerateRequest = { prompt: pseudoTokens(8, 210 + i), maxNewTokens: 10, sampling };
      const onDevice = await run(dev, { ...req, constraint: new AllowSetConstraint(vocab, allowed) });
      // logprobs keep the row on the host path of the same executor: the same logits rows, the reference's sampler.
      const onHost = await run(dev, { ...req, logprobs: true, constraint: new AllowSetConstraint(vocab, allowed) });
      for (const t of onDevice.tokens) expect(allowed).toContain(t);
      if (!sampling.temperature) expect(onDevice.tokens, "greedy").toEqual(onHost.tokens);
      else ties.expectSame(dev, { ...req, allowed }, onHost.tokens, onDevice.tokens, `device vs host path ${JSON.stringify(sampling)}`);
      // And the executor with device masks off (its GEMM kernels timed apart, so bf16 near-ties may part).
      const other = await run(host, { ...req, constraint: new AllowSetConstraint(vocab, allowed) });
      ties.expectSame(host, { ...req, allowed }, other.tokens, onDevice.tokens, `device masks on vs off ${JSON.stringify(sampling)}`);
    }
    expectIdle(dev);
    expectIdle(host);
  });

  it("late masks (every row held on the device) give the tokens of masks in time", async () => {
    const allowed = pseudoTokens(64, 305, vocab);
    for (const [i, sampling] of SAMPLINGS.entries()) {
      const req: GenerateRequest = { prompt: pseudoTokens(7, 310 + i), maxNewTokens: 8, sampling };
      const inTime = await run(dev, { ...req, constraint: new AllowSetConstraint(vocab, allowed) });
      const late = new LateConstraint(vocab, 5, allowed); // a tiny step takes well under 5 ms: each row waits
      const out = await run(dev, { ...req, constraint: late });
      expect(out.tokens, JSON.stringify(sampling)).toEqual(inTime.tokens);
      expect(late.masks).toBe(8);
    }
    expectIdle(dev);
  });

  it("a mask given while the forward pass runs is drawn on the device in that step (stall hook)", async () => {
    // As the host-path test above, without logprobs (which would keep the row on the host): the first step is built
    // with the row deferred, its raw logits go to the held slot, the mask comes during the stall, and the row is drawn
    // from the slot right after the forward pass (draw_held), not left waiting.
    const dir = mkdtempSync(join(tmpdir(), "trtd-stall-"));
    const stallFile = join(dir, "stall");
    writeFileSync(stallFile, "");
    process.env.TRTD_TEST_STALL_EXECUTOR_FILE = stallFile;
    let stalled: Executor | undefined;
    try {
      stalled = openMaskPath(true, { maxBatchSize: 8, kvTokensPerBlock: 8, prefixCache: false });
      delete process.env.TRTD_TEST_STALL_EXECUTOR_FILE;
      const allowed = pseudoTokens(64, 391, vocab);
      const req: GenerateRequest = { prompt: pseudoTokens(7, 323), maxNewTokens: 5, sampling: { temperature: 1, seed: 5 } };
      const gated = new GatedConstraint(vocab, 1, allowed);
      const s = stalled.generate({ ...req, constraint: gated });
      const ex1 = stalled;
      await eventually(() => ex1.stats().iterations === 1, 10_000, "the first step built and stalled");
      expect(gated.asked).toBe(1);
      gated.release();
      await new Promise((r) => setTimeout(r, 20));
      rmSync(stallFile);
      const out = await s.collect();
      expect(out.tokens).toHaveLength(5);
      for (const t of out.tokens) expect(allowed).toContain(t);
      const inTime = await run(dev, { ...req, constraint: new AllowSetConstraint(vocab, allowed) });
      ties.expectSame(dev, { ...req, allowed }, inTime.tokens, out.tokens, "device: mask given during the forward pass vs in time");
      expectIdle(stalled);
    } finally {
      delete process.env.TRTD_TEST_STALL_EXECUTOR_FILE;
      await stalled?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a row held on the device holds up no other request, and draws its tokens when the mask comes", async () => {
    const allowed = pseudoTokens(64, 405, vocab);
    const req: GenerateRequest = { prompt: pseudoTokens(5, 406), maxNewTokens: 6, sampling: { temperature: 1, topK: 40, seed: 11 } };
    const inTime = await run(dev, { ...req, constraint: new AllowSetConstraint(vocab, allowed) });
    const gated = new GatedConstraint(vocab, 1, allowed);
    const waiting = dev.generate({ ...req, constraint: gated });
    const got: number[] = [];
    const collecting = (async () => {
      for await (const c of waiting) got.push(...c.tokens);
    })();
    const free = await run(dev, { prompt: pseudoTokens(5, 407), maxNewTokens: 20 });
    expect(free.tokens).toHaveLength(20);
    expect(got).toEqual([]); // its first row is held: no mask yet
    expect(dev.stats().activeRequests).toBe(1);
    gated.release();
    await collecting;
    ties.expectSame(dev, { ...req, allowed }, inTime.tokens, got, "held on the device vs masks in time");
    expectIdle(dev);
  });

  it("constrained (device and host path) and unconstrained requests together give each one's tokens alone", async () => {
    const allowed = pseudoTokens(200, 477, vocab);
    const reqs = Array.from({ length: 16 }, (_, i) => ({
      prompt: pseudoTokens(3 + ((i * 31) % 40), 500 + i),
      maxNewTokens: 3 + ((i * 7) % 15),
      sampling: SAMPLINGS[i % 4],
      constrained: i % 3 !== 2,
      logprobs: i % 6 === 1, // a constrained row on the host path in the same batch
      late: i % 6 === 3, // a constrained row whose masks come late (held on the device)
    }));
    const make = (r: (typeof reqs)[number]): GenerateRequest => ({
      prompt: r.prompt,
      maxNewTokens: r.maxNewTokens,
      sampling: r.sampling,
      ...(r.logprobs ? { logprobs: true } : {}),
      ...(r.constrained ? { constraint: r.late ? new LateConstraint(vocab, 3, allowed) : new AllowSetConstraint(vocab, allowed) } : {}),
    });
    const alone: number[][] = [];
    for (const r of reqs) alone.push((await run(dev, make(r))).tokens);
    const together = await Promise.all(reqs.map((r) => dev.generate(make(r)).collect()));
    together.forEach((t, i) => {
      if (reqs[i].constrained) for (const tok of t.tokens) expect(allowed).toContain(tok);
      ties.expectSame(dev, { ...reqs[i], allowed: reqs[i].constrained ? allowed : undefined }, alone[i], t.tokens, `request ${i}`);
    });
    ties.expectFew(0.25);
    expectIdle(dev);
  });

  it("a request cancelled while its row is held on the device ends cancelled; the executors end idle", async () => {
    const gated = new GatedConstraint(vocab);
    const s = dev.generate({ prompt: pseudoTokens(5, 603), maxNewTokens: 6, constraint: gated });
    await eventually(() => gated.asked >= 1 && dev.stats().iterations > 0, 10_000, "its first row built without a mask");
    await new Promise((r) => setTimeout(r, 20));
    expect(dev.cancel(s.requestId)).toBe(true);
    expect((await s.collect()).finishReason).toBe("cancelled");
    gated.release();
    await new Promise((r) => setTimeout(r, 20));
    // Nothing held, queued, running or pinned, every KV block back (the device held slots are the batch slots': no
    // per-request allocation to leak).
    expectIdle(dev);
    expectIdle(host);
    expect(dev.stats().kvBlocksUsed).toBe(0);
  });
});
