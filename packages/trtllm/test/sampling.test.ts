// Sampling semantics against the executor's own logits: greedy is the argmax, top-k and top-p draws stay inside
// the set computed here by brute force (sort, softmax with temperature, cumulative mass), and seeds cover it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Executor, SamplingOptions } from "../src/index.js";
import { pseudoTokens } from "@trtd/test-support";
import { expectIdle, openTiny, run, skipSuite } from "./helpers.js";

let ex: Executor;
beforeAll(() => {
  ex = openTiny();
});
afterAll(async () => {
  await ex?.close();
});

/** Ids ordered by logit descending (lower id first on ties) and their tempered probabilities. */
function ranked(logits: Float32Array, temperature: number): { id: number; p: number }[] {
  const ids = [...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b);
  const mx = logits[ids[0]];
  const w = ids.map((id) => Math.exp((logits[id] - mx) / temperature));
  const z = w.reduce((s, x) => s + x, 0);
  return ids.map((id, i) => ({ id, p: w[i] / z }));
}

async function firstTokens(p: number[], sampling: SamplingOptions, seeds: number): Promise<number[]> {
  const out: number[] = [];
  for (let seed = 0; seed < seeds; seed++) out.push((await run(ex, { prompt: p, maxNewTokens: 1, sampling: { ...sampling, seed } })).tokens[0]);
  return out;
}

describe.skipIf(skipSuite("sampling"))("sampling", () => {
  const p = pseudoTokens(12, 77);
  let logits: Float32Array;
  beforeAll(() => {
    const all = ex.computeLogits(p);
    logits = all.subarray((p.length - 1) * ex.model.vocabSize);
  });

  it("greedy picks the argmax", async () => {
    const best = ranked(logits, 1)[0].id;
    expect((await run(ex, { prompt: p, maxNewTokens: 1 })).tokens).toEqual([best]);
  });

  it("top-k draws stay in the k best and cover them", async () => {
    const allowed = new Set(ranked(logits, 1).slice(0, 5).map((r) => r.id));
    const got = await firstTokens(p, { temperature: 5, topK: 5 }, 120);
    for (const t of got) expect(allowed.has(t)).toBe(true);
    expect(new Set(got).size).toBe(5);
  });

  it("top-p draws stay in the nucleus (smallest prefix reaching p) and cover it", async () => {
    // The temperature that gives a nucleus of a few tokens for this prompt (the tiny model's logits are flat).
    const nucleusAt = (temperature: number) => {
      let acc = 0;
      const ids = new Set<number>();
      for (const { id, p: pr } of ranked(logits, temperature)) {
        ids.add(id);
        acc += pr;
        if (acc >= 0.8) break;
      }
      return ids;
    };
    const temperature = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1].find((t) => nucleusAt(t).size >= 3) ?? 1;
    const nucleus = nucleusAt(temperature);
    expect(nucleus.size).toBeGreaterThanOrEqual(3);
    expect(nucleus.size).toBeLessThan(60);
    const got = await firstTokens(p, { temperature, topP: 0.8 }, 200);
    for (const t of got) expect(nucleus.has(t), `token ${t} outside the nucleus of ${nucleus.size}`).toBe(true);
    expect(new Set(got).size).toBeGreaterThan(1);
    expectIdle(ex);
  });

  it("top-p 1 and top-k 0 sample the whole distribution (a near-uniform temperature spreads draws)", async () => {
    const got = await firstTokens(p, { temperature: 50 }, 50);
    expect(new Set(got).size).toBeGreaterThan(40);
  });
});
