// Resuming a seeded sequence elsewhere (request migration): a request that continues after k tokens, with the
// prompt extended by those tokens and generatedOffset k, draws exactly what the uninterrupted request drew.
// The continuation prefills the k tokens that the whole run decoded: on the reference executor that is the same
// arithmetic, on the CUDA executor (bf16) other kernels, so there the two may part at a measured near-tie
// (test/near-tie.ts); loose ones of index-order walks in at most a quarter of the comparisons.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError, type Executor, type SamplingOptions } from "../src/index.js";
import { pseudoTokens } from "@trtd/test-support";
import { expectIdle, openTiny, run, skipSuite } from "./helpers.js";
import { NearTies } from "./near-tie.js";

let ex: Executor;
const ties = new NearTies();
beforeAll(() => {
  ex = openTiny();
});
afterAll(async () => {
  await ex?.close();
  await ties.close();
});

const N = 24;
const samplings: [string, SamplingOptions][] = [
  ["temperature", { temperature: 1.3, seed: 11 }],
  ["top-k", { temperature: 2, topK: 8, seed: 12345 }],
  ["top-p", { temperature: 3, topP: 0.9, seed: 2 ** 40 + 7 }],
  ["top-k + top-p", { temperature: 1.7, topK: 40, topP: 0.95, seed: 3 }],
];

describe.skipIf(skipSuite("resume"))("generatedOffset", () => {
  const p = pseudoTokens(10, 5);

  for (const [name, sampling] of samplings) {
    it(`${name}: first k tokens + a continuation with generatedOffset k equal one request of N tokens`, async () => {
      const whole = await run(ex, { prompt: p, maxNewTokens: N, sampling });
      expect(whole.finishReason).toBe("length");
      expect(whole.tokens).toHaveLength(N);
      // A sampled run, not a greedy one in disguise: at least one token differs from the argmax sequence.
      const greedy = await run(ex, { prompt: p, maxNewTokens: N });
      expect(whole.tokens).not.toEqual(greedy.tokens);
      let inexactWithoutOffset = 0;
      for (const k of [1, 2, 7, 16, N - 1]) {
        const head = await run(ex, { prompt: p, maxNewTokens: k, sampling });
        expect(head.tokens).toEqual(whole.tokens.slice(0, k));
        const resumed = { prompt: [...p, ...head.tokens], maxNewTokens: N - k, sampling };
        const tail = await run(ex, { ...resumed, generatedOffset: k });
        expect(tail.finishReason).toBe("length");
        ties.expectSame(ex, { prompt: p, sampling }, whole.tokens, [...head.tokens, ...tail.tokens], `${name}, resumed at k = ${k}`);
        // The control: restarting the draw count at 0 (the old migration) gives another sequence.
        const restarted = await run(ex, resumed);
        if (restarted.tokens.join() !== tail.tokens.join()) inexactWithoutOffset++;
      }
      expect(inexactWithoutOffset).toBeGreaterThan(0);
      ties.expectFew(0.25);
      expectIdle(ex);
    });
  }

  it("greedy ignores the offset", async () => {
    const whole = await run(ex, { prompt: p, maxNewTokens: 8 });
    const tail = await run(ex, { prompt: [...p, ...whole.tokens.slice(0, 3)], maxNewTokens: 5, generatedOffset: 3 });
    ties.expectSame(ex, { prompt: p }, whole.tokens, [...whole.tokens.slice(0, 3), ...tail.tokens], "greedy, resumed at 3");
  });

  it("applies to a disaggregated continuation too (context-only, then generation-only)", async () => {
    const sampling = { temperature: 2, topK: 16, seed: 99 };
    const whole = await run(ex, { prompt: p, maxNewTokens: 12, sampling });
    const k = 4;
    const resumedPrompt = [...p, ...whole.tokens.slice(0, k)];
    const ctxStream = ex.generate({ prompt: resumedPrompt, maxNewTokens: 12 - k, sampling, type: "context_only", generatedOffset: k });
    const ctx = await ctxStream.collect();
    expect(ctx.tokens).toHaveLength(1);
    const kv = ex.exportKv(ctxStream.requestId);
    const imp = ex.reserveKvImport(kv.numTokens);
    const src = kv.segments();
    imp.segments().forEach((dst, i) => dst.set(src[i]));
    kv.release();
    const gen = await run(ex, {
      type: "generation_only",
      prompt: resumedPrompt,
      maxNewTokens: 12 - k,
      sampling,
      generatedOffset: k,
      contextPhase: { firstToken: ctx.tokens[0], kvImport: imp },
    });
    // gen starts with the context phase's token (whole[k] but at a near-tie)
    expect(gen.tokens[0]).toBe(ctx.tokens[0]);
    ties.expectSame(ex, { prompt: p, sampling }, whole.tokens, [...whole.tokens.slice(0, k), ...gen.tokens], "disaggregated, resumed at 4");
    expectIdle(ex);
  });

  it("refuses a negative or non-integer offset, and the executor is undisturbed", async () => {
    for (const bad of [-1, -(2 ** 31)]) {
      const err = (() => {
        try {
          ex.generate({ prompt: p, maxNewTokens: 4, generatedOffset: bad });
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).status).toBe(-1); // refused by the library, not the binding
      expect((err as Error).message).toMatch(/generated_offset must be >= 0/);
    }
    expect(() => ex.generate({ prompt: p, maxNewTokens: 4, generatedOffset: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => ex.generate({ prompt: p, maxNewTokens: 4, generatedOffset: 2 ** 31 })).toThrow(/32-bit/);
    expectIdle(ex);
    expect((await run(ex, { prompt: p, maxNewTokens: 3 })).tokens).toHaveLength(3);
  });
});
