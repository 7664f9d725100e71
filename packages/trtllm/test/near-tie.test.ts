// The near-tie rule of test/near-tie.ts, checked on the reference executor (every machine): its replica of the
// CUDA sampler draws the reference executor's own tokens (greedy, unfiltered, top-k, top-k + top-p, and top-p alone,
// whose nucleus both walk in (logit desc, id asc) order), and a perturbation bound
// accepts a pair of tokens exactly when a logit move of that size can make the draw give either.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Executor, type SamplingOptions } from "../src/index.js";
import { counterUniform, cudaDraw, drawableWithin, drawParams, NearTies, nearTieMargin, sortedOrder } from "./near-tie.js";
import { pseudoTokens } from "@trtd/test-support";
import { tinyDir } from "./helpers.js";

let ref: Executor;
beforeAll(() => {
  ref = Executor.open(tinyDir, { executor: "reference", threads: 2 });
});
afterAll(async () => {
  await ref?.close();
});

describe("near-tie rule", () => {
  it("counter_uniform: the documented mix of (seed, n), in [0, 1)", () => {
    const us = Array.from({ length: 1000 }, (_, n) => counterUniform(7n, BigInt(n)));
    for (const u of us) expect(u >= 0 && u < 1).toBe(true);
    const mean = us.reduce((a, b) => a + b, 0) / us.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
    expect(counterUniform(7n, 3n)).toBe(us[3]);
    expect(counterUniform(8n, 3n)).not.toBe(us[3]);
  });

  const samplings: [string, SamplingOptions][] = [
    ["greedy", {}],
    ["temperature", { temperature: 1.3 }],
    ["top-k", { temperature: 0.9, topK: 50 }],
    ["top-k + top-p", { temperature: 1.7, topK: 40, topP: 0.95 }],
    ["large top-k + top-p", { temperature: 1, topK: 50_000, topP: 0.8 }],
    // A small nucleus (6 ids at T 0.4 on this row: the draw's selection is one small sort) and a large one (11 840
    // ids: partition rounds before that).
    ["top-p alone, small nucleus", { temperature: 0.5, topP: 0.9 }],
    ["top-p alone, large nucleus", { temperature: 1, topP: 0.8 }],
  ];
  for (const [name, sampling] of samplings) {
    it(`the replica draws the reference executor's tokens: ${name}`, async () => {
      const p = pseudoTokens(9, 31);
      const V = ref.model.vocabSize;
      const logits = ref.computeLogits(p).subarray((p.length - 1) * V);
      const seen = new Set<number>();
      for (const [seed, offset] of [[1, 0], [2, 0], [3, 5], [2 ** 40 + 7, 11], [99, 1000]]) {
        const s = { ...sampling, seed };
        const { tokens } = await ref.generate({ prompt: p, maxNewTokens: 1, sampling: s, generatedOffset: offset }).collect();
        expect(cudaDraw(logits, drawParams(s, offset)), `seed ${seed} offset ${offset}`).toBe(tokens[0]);
        seen.add(tokens[0]);
      }
      if (sampling.temperature) expect(seen.size).toBeGreaterThan(1); // the draws depend on (seed, n)
    });
  }

  it("greedy: a gap g between the two best needs a move of g / 2; other tokens are not near-ties", () => {
    const logits = new Float32Array(1000).map((_, i) => Math.sin(i) * 2);
    logits[10] = 5;
    logits[20] = 5.01;
    const p = drawParams({}, 0);
    expect(cudaDraw(logits, p)).toBe(20);
    expect(drawableWithin(logits, p, 10, 0.004)).toBe(false);
    expect(drawableWithin(logits, p, 10, 0.006)).toBe(true);
    const m = nearTieMargin(logits, p, 10, 20, 0.1)!;
    expect(m).toBeGreaterThanOrEqual(0.005);
    expect(m).toBeLessThan(0.005 + 0.1 / 32);
    expect(nearTieMargin(logits, p, 10, 3, 0.1)).toBeUndefined(); // 3 is far below the top
  });

  for (const [name, sampling] of samplings.slice(1)) {
    it(`sampled (${name}): only the drawn token at move 0, at most a neighbour at 1e-4, any token at a move beyond the spread`, () => {
      const V = ref.model.vocabSize;
      const p0 = pseudoTokens(14, 32);
      const logits = ref.computeLogits(p0).subarray((p0.length - 1) * V);
      const p = drawParams({ ...sampling, seed: 5 }, 3);
      const t = cudaDraw(logits, p);
      expect(drawableWithin(logits, p, t, 0)).toBe(true);
      const others = [0, 1, 2, 100, 5000, 77_777].filter((x) => x !== t);
      for (const x of others) expect(drawableWithin(logits, p, x, 0)).toBe(false);
      // A move of 1e-4 in a logit spread of ~3 reaches at most the immediate neighbours of the draw.
      const reachable = others.filter((x) => drawableWithin(logits, p, x, 1e-4));
      expect(reachable.length).toBeLessThanOrEqual(1);
      // A move far beyond the logits' spread makes any token the draw.
      for (const x of [7, 77_777]) expect(drawableWithin(logits, p, x, 20)).toBe(true);
    });
  }

  it("sampled from a flat distribution: the draw's neighbours in the walk order are near-ties at a small move, tokens far away are not", () => {
    // The search must find the tiny interval of a neighbour (regression: corner moves overshot it, so true near-ties
    // of the CUDA executor were refused). tiny at temperature 3 / 1.3 is nearly uniform over 100k tokens.
    const V = ref.model.vocabSize;
    const p0 = pseudoTokens(12, 9);
    const logits = ref.computeLogits(p0).subarray((p0.length - 1) * V);
    for (const sampling of [{ temperature: 3, topP: 0.9 }, { temperature: 1.3 }, { temperature: 1, topK: 50_000, topP: 0.9 }]) {
      const p = drawParams({ ...sampling, seed: 2 ** 40 + 7 }, 5);
      const t = cudaDraw(logits, p);
      const walk = p.topK > 0 || p.topP < 1 ? Array.from(sortedOrder(logits)) : Array.from({ length: V }, (_, i) => i);
      const at = walk.indexOf(t);
      for (const d of [-1, 1, 2]) {
        const m = nearTieMargin(logits, p, t, walk[at + d], 0.08);
        expect(m, `${JSON.stringify(sampling)}: neighbour ${d}`).toBeDefined();
        expect(m!).toBeLessThan(0.02); // against a bound of ~6e-2 for this model's bf16 error
      }
      expect(nearTieMargin(logits, p, t, walk[(at + V / 2) % V], 0.005), `${JSON.stringify(sampling)}: half the vocabulary away`).toBeUndefined();
    }
  });

  it("filtered: two close tokens that swap places in the walk are a near-tie at half their gap (the H100 partings of run 13)", () => {
    // resume.test.ts on the CUDA executor parted here: the whole run's decode step ranked the two tokens the other
    // way round (bf16 error), and a swap moves a token's draw interval by the other's mass (~0.12 at top-k 8, T 2).
    // A family of moves that only ever raised the token could not reach that walk and refused a true near-tie.
    const V = ref.model.vocabSize;
    const prefix = [36506, 44096, 77639, 17665, 1034, 7542, 87870, 79414, 22356, 10773];
    const partings: [number[], SamplingOptions, number, number][] = [
      [[4991, 32292, 98418, 50363, 1378, 50169, 69537, 10617, 14642, 96010, 82896, 87245, 83040, 32549, 92984, 91738, 91738, 58362], { temperature: 2, topK: 8, seed: 12345 }, 79069, 47942],
      [[73358, 85207, 24411], { temperature: 1.7, topK: 40, topP: 0.95, seed: 3 }, 20651, 59287],
    ];
    for (const [generated, sampling, whole, resumed] of partings) {
      const seq = [...prefix, ...generated];
      const logits = ref.computeLogits(seq).subarray((seq.length - 1) * V);
      const p = drawParams(sampling, generated.length);
      const order = sortedOrder(logits);
      expect(cudaDraw(logits, p, order)).toBe(resumed);
      // The swapped walk draws the other token: what the CUDA executor's decode step did.
      const swapped = Int32Array.from(order);
      [swapped[order.indexOf(whole)], swapped[order.indexOf(resumed)]] = [resumed, whole];
      expect(cudaDraw(logits, p, swapped)).toBe(whole);
      // `whole` sits above `resumed` (and whatever lies between): lowering it below them needs half the gap.
      const halfGap = (logits[whole] - logits[resumed]) / 2;
      expect(halfGap).toBeGreaterThan(0);
      expect(drawableWithin(logits, p, whole, halfGap * 0.95)).toBe(false);
      const m = nearTieMargin(logits, p, whole, resumed, 0.1)!;
      expect(m, JSON.stringify(sampling)).toBeDefined();
      expect(m).toBeGreaterThanOrEqual(halfGap * 0.95);
      expect(m).toBeLessThan(halfGap + 0.1 / 32);
      // A token far down the walk stays out of reach at the same bound.
      expect(nearTieMargin(logits, p, order[order.length >> 1], resumed, 0.1)).toBeUndefined();
    }
  });

  it("NearTies: exact executors compare exactly; a tolerant comparison refuses a difference the logits do not explain", async () => {
    const exact = new NearTies({ tolerant: false });
    exact.expectSame(ref, { prompt: [1, 2, 3] }, [4, 5], [4, 5], "same");
    expect(() => exact.expectSame(ref, { prompt: [1, 2, 3] }, [4, 5], [4, 6], "differs")).toThrow();
    const tolerant = new NearTies({ tolerant: true });
    const p = pseudoTokens(6, 33);
    const { tokens } = await ref.generate({ prompt: p, maxNewTokens: 3 }).collect();
    tolerant.expectSame(ref, { prompt: p }, tokens, [...tokens], "same");
    // The reference executor's computeLogits is the truth itself: measured error 0, so no difference is a near-tie.
    expect(() => tolerant.expectSame(ref, { prompt: p }, tokens, [tokens[0], (tokens[1] + 1) % 100_000, tokens[2]], "differs")).toThrow(/not a near-tie/);
    expect(() => tolerant.expectSame(ref, { prompt: p }, tokens, tokens.slice(0, 2), "shorter")).toThrow();
    expect(tolerant.accepted).toEqual([]);
    tolerant.expectFew(0);
    await tolerant.close();
    await exact.close();
  });
});
