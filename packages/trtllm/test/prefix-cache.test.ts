// The prefix cache (ABI 4): full KV blocks reused across requests whose tokens start the same way.
// - Output with a cached prefix equals output without it (an executor opened with prefixCache: false), token for
//   token, greedy and seeded, for prompts sharing a system prompt at several block alignments.
// - Hit and miss counts equal an oracle that knows what each earlier request left complete in the cache.
// - Unreferenced cached blocks are evicted least recently used first, and only when a block is needed.
// - Under a pool that holds half of the concurrent demand no request fails, and each output equals its run alone.
// - Exports and imports still work: an export whose prefix was cached moves to another executor, and the imported
//   prompt's blocks become hits there.
// - KV events name the stored and evicted blocks by the hashes prefixBlockHashes computes from token ids; a
//   snapshot lists the cache and restarts the event stream.
// Nothing leaks: after every test the blocks held return to 0; cached blocks show apart (kvBlocksCached).
// Runs on the executor under test ($TRTD_TEST_EXECUTOR); on the CUDA executor outputs may part at a measured
// near-tie (test/near-tie.ts), as the cached prefix was computed by other kernels than a fresh prefill.
import { loadModel, prefixBlockHashes, referenceForward } from "@trtd/model";
import { afterAll, describe, expect, it } from "vitest";
import { InvalidArgumentError, type Executor, type GenerateRequest, type SamplingOptions } from "../src/index.js";
import { pseudoTokens } from "@trtd/test-support";
import { openTinyPerTest, run, skipSuite, tinyDir } from "./helpers.js";
import { NearTies } from "./near-tie.js";

const skip = skipSuite("prefix-cache");
const ties = new NearTies();
const exec = openTinyPerTest();
afterAll(async () => {
  await ties.close();
});

const greedy: SamplingOptions = {};
const seeded: SamplingOptions = { temperature: 0.9, topK: 50, topP: 0.95, seed: 1234 };

/** Length of the common prefix of two token lists. */
function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/**
 * What the cache should serve to a prompt, given the token sequences whose KV earlier requests completed (prompt +
 * generated tokens but the last, which is never fed back), on a pool too large to evict anything: the longest chain
 * of full blocks shared with one of them, short of the prompt's last token.
 */
function expectedHit(p: readonly number[], earlier: readonly (readonly number[])[], tokensPerBlock: number): number {
  const cap = Math.floor((p.length - 1) / tokensPerBlock);
  let best = 0;
  for (const e of earlier) best = Math.max(best, Math.min(cap, Math.floor(commonPrefix(p, e) / tokensPerBlock)));
  return best * tokensPerBlock;
}

/** A chat-like prompt: a shared system prompt, then a user part of its own. */
function chat(system: number[], user: number, userLen: number): number[] {
  return [...system, ...pseudoTokens(userLen, 1000 + user)];
}

describe.skipIf(skip)("prefix cache", () => {
  it("is on by default; prefixCache must be a boolean", () => {
    expect(() => exec({ prefixCache: "yes" as unknown as boolean })).toThrow(InvalidArgumentError);
    const ex = exec();
    expect(ex.stats()).toMatchObject({ kvBlocksCached: 0, prefixCacheHitTokens: 0, prefixCacheMissTokens: 0, prefixCacheEvictedBlocks: 0 });
  });

  // Block sizes and system-prompt lengths: a system prompt that ends on a block boundary, one token past it, one
  // short of it; and user parts that end the prompt on a boundary (the last full block is then not reused).
  for (const [tokensPerBlock, systemLen] of [
    [16, 48],
    [16, 49],
    [16, 47],
    [8, 37],
    [5, 64],
  ] as const) {
    for (const [name, sampling] of [
      ["greedy", greedy],
      ["seeded", seeded],
    ] as const) {
      it(`${name}, ${tokensPerBlock} tokens per block, a ${systemLen}-token system prompt: outputs equal the uncached run; hits match the oracle`, async () => {
        const cached = exec({ kvTokensPerBlock: tokensPerBlock });
        const fresh = exec({ kvTokensPerBlock: tokensPerBlock, prefixCache: false });
        const system = pseudoTokens(systemLen, 7 + systemLen);
        const userLens = [5, 2 * tokensPerBlock - (systemLen % tokensPerBlock), 23, 1];
        const requests: GenerateRequest[] = userLens.map((n, i) => ({ prompt: chat(system, i, n), maxNewTokens: 12, sampling }));
        // The same prompts again: everything but the block of the last prompt token is a hit. requests[1] ends on a
        // block boundary, so its last full block is computed again, not shared.
        requests.push({ ...requests[0]! }, { ...requests[1]! });
        expect(requests[1]!.prompt.length % tokensPerBlock).toBe(0);
        const earlier: number[][] = [];
        let hits = 0;
        let misses = 0;
        for (const [i, req] of requests.entries()) {
          const want = await run(fresh, req);
          const got = await run(cached, req);
          ties.expectSame(cached, req, want.tokens, got.tokens, `request ${i} with the cache vs without`);
          const p = [...req.prompt];
          const hit = expectedHit(p, earlier, tokensPerBlock);
          hits += hit;
          misses += p.length - hit;
          expect(cached.stats(), `request ${i}`).toMatchObject({ prefixCacheHitTokens: hits, prefixCacheMissTokens: misses, prefixCacheEvictedBlocks: 0 });
          earlier.push([...p, ...got.tokens.slice(0, -1)]);
        }
        expect(hits).toBeGreaterThanOrEqual(4 * Math.floor(systemLen / tokensPerBlock) * tokensPerBlock); // the system prompt, for requests 1 to 4
        // Without the cache every prompt token is a miss and nothing stays cached.
        const total = requests.reduce((n, r) => n + r.prompt.length, 0);
        expect(fresh.stats()).toMatchObject({ prefixCacheHitTokens: 0, prefixCacheMissTokens: total, kvBlocksCached: 0 });
        // With it, what the runs completed stays cached, unheld, and counts as free.
        const s = cached.stats();
        expect(s.kvBlocksCached).toBeGreaterThan(0);
        expect(s.kvBlocksFree).toBe(s.kvBlocksTotal);
        expect(s.promptTokens).toBe(misses);
      });
    }
  }

  // Issue 22's logit controls and logprobs on a cached prefix: the repetition penalty reads the whole prompt (cached
  // part included) and logprobs come from the logits computed on the cached KV, so both equal the uncached run.
  it("with logit controls and logprobs, outputs and logprobs on a cached prefix equal the uncached run", async () => {
    const cached = exec({ kvTokensPerBlock: 8 });
    const fresh = exec({ kvTokensPerBlock: 8, prefixCache: false });
    const system = pseudoTokens(40, 77);
    const controls: Array<Omit<GenerateRequest, "prompt" | "maxNewTokens">> = [
      { sampling: { repetitionPenalty: 1.4, presencePenalty: 0.5 }, logitBias: { 9: 3 }, logprobs: true, topLogprobs: 3 },
      { sampling: { ...seeded, frequencyPenalty: 0.8, minP: 0.05 }, minNewTokens: 4, logprobs: true, topLogprobs: 2 },
    ];
    for (const [i, c] of controls.entries()) {
      for (const user of [0, 1]) {
        const req: GenerateRequest = { prompt: chat(system, 10 * i + user, 6), maxNewTokens: 10, ...c };
        const want = await run(fresh, req);
        const got = await run(cached, req);
        ties.expectSame(cached, req, want.tokens, got.tokens, `controls ${i}, user ${user}: cache vs none`);
        if (got.tokens.join() !== want.tokens.join()) continue; // a measured near-tie (CUDA only): logprobs then part too
        expect(got.logprobs).toHaveLength(want.logprobs!.length);
        got.logprobs!.forEach((e, k) => {
          expect(Math.abs(e!.logprob - want.logprobs![k]!.logprob)).toBeLessThan(1e-4);
          expect(e!.top.map((t) => t.id)).toEqual(want.logprobs![k]!.top.map((t) => t.id));
        });
      }
    }
    // The second prompt of each pair started from the cached system prompt.
    expect(cached.stats().prefixCacheHitTokens).toBeGreaterThanOrEqual(3 * 40 - 8);
  });

  it("greedy tokens on a cached prefix follow the float64 reference's argmax where it is unambiguous", async () => {
    // Against @trtd/model's referenceForward (float64, itself checked against transformers' values), not only
    // against this executor with the cache off.
    const ex = exec({ kvTokensPerBlock: 4, maxTokensPerIteration: 8 });
    const system = pseudoTokens(18, 41);
    await run(ex, { prompt: chat(system, 1, 3), maxNewTokens: 2 });
    const p = chat(system, 2, 3);
    const { tokens } = await run(ex, { prompt: p, maxNewTokens: 6 });
    expect(ex.stats().prefixCacheHitTokens).toBe(16);
    const ref = loadModel(tinyDir);
    const margin = ties.tolerant ? 0.3 : 1e-3; // a gap below it is a near-tie: either answer is right (bf16: ~0.1-0.2 errors)
    let checked = 0;
    for (let i = 0; i < tokens.length; i++) {
      const logits = referenceForward(ref, [...p, ...tokens.slice(0, i)]).logits;
      const order = [...logits.keys()].sort((x, y) => logits[y]! - logits[x]!);
      if (logits[order[0]!]! - logits[order[1]!]! < margin) continue;
      expect(tokens[i], `token ${i}`).toBe(order[0]);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(ties.tolerant ? 1 : 4);
  });

  it("requests running at the same time share the blocks of their common prefix", async () => {
    const T = 16;
    const cached = exec({ kvTokensPerBlock: T });
    const fresh = exec({ kvTokensPerBlock: T, prefixCache: false });
    const system = pseudoTokens(64, 99); // 4 full blocks
    const first: GenerateRequest = { prompt: chat(system, 1, 10), maxNewTokens: 300, sampling: seeded }; // still running when the second starts
    const second: GenerateRequest = { prompt: chat(system, 2, 10), maxNewTokens: 40, sampling: seeded };
    const blocksOf = (r: GenerateRequest) => Math.ceil((r.prompt.length + r.maxNewTokens - 1) / T);
    const wantFirst = await run(fresh, first);
    const wantSecond = await run(fresh, second);
    // The first request's prompt is computed (its first token out) before the second is enqueued.
    const s1 = cached.generate(first);
    const it1 = s1[Symbol.asyncIterator]();
    const head = await it1.next();
    expect(head.done).toBe(false);
    const s2 = cached.generate(second);
    const it2 = s2[Symbol.asyncIterator]();
    const head2 = await it2.next();
    expect(head2.done).toBe(false);
    // Both hold their blocks now; the 4 system-prompt blocks are held once.
    const during = cached.stats();
    expect(during.prefixCacheHitTokens).toBe(64);
    if (!ties.tolerant) expect(during.kvBlocksUsed).toBe(blocksOf(first) + blocksOf(second) - 4); // the reference reserves a lifetime
    const rest = async (iter: AsyncIterator<{ tokens: number[]; final: boolean }>, firstChunk: { tokens: number[] }) => {
      const tokens = [...firstChunk.tokens];
      for (let c = await iter.next(); !c.done; c = await iter.next()) tokens.push(...c.value.tokens);
      return tokens;
    };
    const [got1, got2] = await Promise.all([rest(it1, head.value), rest(it2, head2.value)]);
    ties.expectSame(cached, first, wantFirst.tokens, got1, "first, alongside the second");
    ties.expectSame(cached, second, wantSecond.tokens, got2, "second, on the first's cached system prompt");
  });

  it("evicts unheld cached blocks least recently used first, and only when a block is needed", async () => {
    // 10 blocks of 16. Each prompt is 49 tokens (3 full blocks and one token) with one new token: 4 blocks held
    // while it runs, 3 left cached after. A, B, C fill 9 of the 10 blocks with cache; D needs 4: the one empty
    // block and A's 3, the least recently used. B run again is a full hit and becomes the most recently used; A
    // again then evicts C, the least recently used now, and D again is still a hit.
    const T = 16;
    const ex = exec({ kvTokensPerBlock: T, kvBlockCount: 10 });
    const fresh = exec({ kvTokensPerBlock: T, prefixCache: false });
    const req = (salt: number): GenerateRequest => ({ prompt: pseudoTokens(49, 500 + salt), maxNewTokens: 1 });
    const [A, B, C, D] = [1, 2, 3, 4].map(req);
    const step = async (r: GenerateRequest, hitTokens: number, evicted: number, label: string) => {
      const before = ex.stats().prefixCacheHitTokens;
      const got = await run(ex, r);
      ties.expectSame(ex, r, (await run(fresh, r)).tokens, got.tokens, label);
      const s = ex.stats();
      expect({ hit: s.prefixCacheHitTokens - before, evicted: s.prefixCacheEvictedBlocks }, label).toEqual({ hit: hitTokens, evicted });
      return s;
    };
    await step(A, 0, 0, "A");
    await step(B, 0, 0, "B");
    const afterC = await step(C, 0, 0, "C");
    expect(afterC.kvBlocksCached).toBe(9); // nothing evicted while an empty block was left
    await step(D, 0, 3, "D (evicts A)");
    await step(B, 48, 3, "B again (a hit; now the most recently used)");
    await step(A, 0, 6, "A again (evicted before; evicts C)");
    await step(D, 48, 6, "D again (still cached)");
    await step(C, 0, 9, "C again (evicted)");
  });

  it("evicts a chain from its tail: a partly evicted prefix still hits its head", async () => {
    // 8 blocks of 16. A and B (49 tokens, one new) leave 3 cached blocks each and 2 empty; E (33 tokens: 3 blocks
    // held) takes the 2 empty ones and evicts one: A's last block. A again still finds its first two.
    const T = 16;
    const ex = exec({ kvTokensPerBlock: T, kvBlockCount: 8 });
    const A: GenerateRequest = { prompt: pseudoTokens(49, 601), maxNewTokens: 1 };
    const B: GenerateRequest = { prompt: pseudoTokens(49, 602), maxNewTokens: 1 };
    const E: GenerateRequest = { prompt: pseudoTokens(33, 603), maxNewTokens: 1 };
    await run(ex, A);
    await run(ex, B);
    const aloneA = await run(exec({ kvTokensPerBlock: T, prefixCache: false }), A);
    await run(ex, E);
    expect(ex.stats()).toMatchObject({ prefixCacheEvictedBlocks: 1, prefixCacheHitTokens: 0 });
    const again = await run(ex, A);
    expect(ex.stats().prefixCacheHitTokens).toBe(32);
    ties.expectSame(ex, A, aloneA.tokens, again.tokens, "A on its partly evicted prefix");
  });

  it("KV events name stored and evicted blocks by the hashes computed from token ids; a snapshot restarts them", async () => {
    const T = 16;
    const ex = exec({ kvTokensPerBlock: T, kvBlockCount: 8 });
    const fp = ex.model.fingerprint;
    expect(ex.kvEvents()).toEqual({ events: [], lost: false });
    const A: GenerateRequest = { prompt: pseudoTokens(49, 701), maxNewTokens: 20 }; // 49 + 19 = 68 tokens with KV: 4 full blocks
    const a = await run(ex, A);
    const aHashes = prefixBlockHashes([...A.prompt, ...a.tokens], T, fp).slice(0, 4);
    expect(ex.kvEvents()).toEqual({ events: aHashes.map((hash) => ({ type: "stored", hash })), lost: false });
    expect(new Set(ex.kvCacheSnapshot())).toEqual(new Set(aHashes));
    // A held 5 blocks and left 4 cached: 4 are empty. B (90 tokens: 6 blocks held, 5 cached after) takes them and
    // evicts A's two tail blocks, its last first.
    const B: GenerateRequest = { prompt: pseudoTokens(90, 702), maxNewTokens: 1 };
    await run(ex, B);
    const bHashes = prefixBlockHashes(B.prompt, T, fp);
    const got = ex.kvEvents();
    expect(got.lost).toBe(false);
    expect(got.events.filter((e) => e.type === "removed")).toEqual([aHashes[3], aHashes[2]].map((hash) => ({ type: "removed", hash })));
    expect(got.events.filter((e) => e.type === "stored")).toEqual(bHashes.map((hash) => ({ type: "stored", hash })));
    expect(new Set(ex.kvCacheSnapshot())).toEqual(new Set([aHashes[0], aHashes[1], ...bHashes]));
    // Another model's fingerprint, another block size or other tokens give other keys.
    expect(prefixBlockHashes(A.prompt, T, "0".repeat(16))[0]).not.toBe(aHashes[0]);
    expect(prefixBlockHashes(A.prompt, 8, fp)[0]).not.toBe(aHashes[0]);
    expect(prefixBlockHashes([A.prompt[0]! + 1, ...A.prompt.slice(1)], T, fp)[0]).not.toBe(aHashes[0]);
    // A snapshot supersedes the queued events.
    await run(ex, { prompt: pseudoTokens(33, 703), maxNewTokens: 1 });
    const snap = ex.kvCacheSnapshot();
    expect(ex.kvEvents()).toEqual({ events: [], lost: false });
    expect(snap.length).toBe(ex.stats().kvBlocksCached);
  });

  it("with the cache off there are no events and the snapshot is empty", async () => {
    const ex = exec({ prefixCache: false });
    await run(ex, { prompt: pseudoTokens(70, 704), maxNewTokens: 3 });
    expect(ex.kvEvents()).toEqual({ events: [], lost: false });
    expect(ex.kvCacheSnapshot()).toEqual([]);
  });

  it("a pool that holds half of the concurrent demand: every request finishes with its output alone, nothing leaks", async () => {
    // 8 requests, each needing 5 blocks of 16 over its life (prompt 40 + 40 new - 1 = 79 tokens), against a pool
    // of 20 blocks: twice oversubscribed. They share a 32-token system prompt (2 blocks), seeded and greedy mixed.
    const T = 16;
    const ex = exec({ kvTokensPerBlock: T, kvBlockCount: 20 });
    const fresh = exec({ kvTokensPerBlock: T, prefixCache: false });
    const system = pseudoTokens(32, 77);
    const requests: GenerateRequest[] = Array.from({ length: 8 }, (_, i) => ({
      prompt: chat(system, 40 + i, 8),
      maxNewTokens: 40,
      sampling: i % 2 ? { ...seeded, seed: 100 + i } : greedy,
    }));
    const demand = requests.reduce((n, r) => n + Math.ceil((r.prompt.length + r.maxNewTokens - 1) / T), 0);
    expect(demand).toBe(2 * ex.stats().kvBlocksTotal);
    const alone: { tokens: number[] }[] = [];
    for (const r of requests) alone.push(await run(fresh, r));
    const results = await Promise.all(requests.map((r) => run(ex, r)));
    results.forEach((r, i) => {
      expect(r.finishReason, `request ${i}`).toBe("length");
      ties.expectSame(ex, requests[i]!, alone[i]!.tokens, r.tokens, `request ${i} in a short pool vs alone`);
    });
    expect(ex.stats().prefixCacheHitTokens).toBeGreaterThan(0);
  });

  it("a context-only export whose prefix was cached moves to another executor, whose imported prompt then hits", async () => {
    const T = 8;
    const a = exec({ kvTokensPerBlock: T });
    const b = exec({ kvTokensPerBlock: T });
    const fresh = exec({ kvTokensPerBlock: T, prefixCache: false });
    const system = pseudoTokens(40, 3);
    const warm: GenerateRequest = { prompt: chat(system, 1, 6), maxNewTokens: 4 };
    const req: GenerateRequest = { prompt: chat(system, 2, 13), maxNewTokens: 20, sampling: seeded };
    await run(a, warm);
    const want = await run(fresh, req);
    const ctx = a.generate({ ...req, type: "context_only" });
    const first = await ctx.collect();
    expect(a.stats().prefixCacheHitTokens).toBe(40); // the system prompt's 5 blocks came from warm's run
    const exported = a.exportKv(ctx.requestId);
    const imp = b.reserveKvImport(exported.numTokens);
    const src = exported.segments();
    imp.segments().forEach((dst, i) => dst.set(src[i]!));
    exported.release();
    const gen = await run(b, { ...req, type: "generation_only", contextPhase: { firstToken: first.tokens[0]!, kvImport: imp } });
    ties.expectSame(b, req, want.tokens, gen.tokens, "context-only on A (cached prefix), generation-only on B");
    // B now holds the imported prompt's full blocks in its cache: the same request aggregated on B hits them.
    const again = await run(b, req);
    ties.expectSame(b, req, want.tokens, again.tokens, "the same request aggregated on B");
    expect(b.stats().prefixCacheHitTokens).toBe(Math.floor((req.prompt.length - 1) / T) * T);
  });
});
