// In-flight batching: concurrent requests of different lengths (prompts chunked across iterations, decodes
// batched, draws spread over the compute threads) give the tokens each gives alone, and every KV block comes back.
// The reference executor: exactly. The CUDA executor (bf16, kernels picked by row count): exactly but at measured
// near-ties (test/near-tie.ts), for at most a quarter of the requests.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Executor, GenerateRequest } from "../src/index.js";
import { pseudoTokens } from "@trtd/test-support";
import { expectIdle, openTiny, run, skipSuite } from "./helpers.js";
import { NearTies } from "./near-tie.js";

let ex: Executor;
const ties = new NearTies();
beforeAll(() => {
  // A small iteration budget forces long prompts into several chunks while other requests decode.
  ex = openTiny({ maxBatchSize: 16, maxTokensPerIteration: 32, kvTokensPerBlock: 16 });
});
afterAll(async () => {
  await ex?.close();
  await ties.close();
});

function requests(): GenerateRequest[] {
  return Array.from({ length: 16 }, (_, i) => ({
    prompt: pseudoTokens(3 + ((i * 37) % 90), 100 + i),
    maxNewTokens: 4 + ((i * 13) % 29),
    // Greedy, top-k, top-p alone, large top-k + top-p: a batch's draws run spread over the compute threads,
    // alone each runs on one, so equal tokens also show the parallel draws change nothing.
    sampling: [{}, { temperature: 0.8, topK: 40, seed: 1000 + i }, { temperature: 1, topP: 0.9, seed: 1000 + i },
      { temperature: 1, topK: 50_000, topP: 0.8, seed: 1000 + i }][i % 4],
  }));
}

describe.skipIf(skipSuite("batching"))("in-flight batching", () => {
  it("16 concurrent requests of different lengths give the same tokens as each alone", async () => {
    const reqs = requests();
    const alone = [];
    for (const r of reqs) alone.push(await run(ex, r));
    const itersBefore = ex.stats().iterations;
    const together = await Promise.all(reqs.map((r) => ex.generate(r).collect()));
    const iters = ex.stats().iterations - itersBefore;
    for (let i = 0; i < reqs.length; i++) {
      expect(together[i].tokens).toHaveLength(reqs[i].maxNewTokens);
      ties.expectSame(ex, reqs[i], alone[i].tokens, together[i].tokens, `request ${i} batched vs alone`);
    }
    ties.expectFew(0.25);
    // Batched: far fewer iterations than the requests' tokens run one by one.
    const serialSteps = reqs.reduce((n, r) => n + r.maxNewTokens, 0);
    expect(iters).toBeLessThan(serialSteps / 2);
    expectIdle(ex);
  });

  it("a long prompt does not stall running decodes for its whole prefill", async () => {
    const short = ex.generate({ prompt: pseudoTokens(4, 1), maxNewTokens: 40 });
    // Wait until the short request is decoding, then submit a prompt 20x the iteration budget.
    const it = short[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    const long = ex.generate({ prompt: pseudoTokens(640, 2), maxNewTokens: 2 });
    let shortTokens = first.value!.tokens.length;
    let longDone = false;
    const longP = long.collect().then((r) => {
      longDone = true;
      return r;
    });
    let tokensBeforeLongDone = 0;
    for (;;) {
      const n = await it.next();
      if (n.done) break;
      shortTokens += n.value.tokens.length;
      if (!longDone) tokensBeforeLongDone = shortTokens;
    }
    await longP;
    expect(shortTokens).toBe(40);
    // 640 prompt tokens at <= 32 per iteration take >= 20 iterations; decodes kept going in each of them.
    expect(tokensBeforeLongDone).toBeGreaterThanOrEqual(20);
    expectIdle(ex);
  });
});
