// The host KV tier (ABI 5, kvHostCacheBytes): cached blocks evicted from the pool are copied to host slots and come
// back on a prefix hit.
// - A working set larger than the pool, run twice: the second round takes its prefixes from the tier, its output
//   equals an executor without any cache token for token (greedy and seeded), and the stats count host hits; the
//   same trace without the tier has no hits at all.
// - Greedy output whose prefix came back from the tier equals transformers' generate() on models/tiny
//   (fixtures/host-tier-hf.json, tools/reference/host_tier_fixture.py): checked against code nobody here wrote.
// - A tier smaller than the working set drops its least recently used block; KV events name blocks the worker holds
//   in either level ("removed" only when the tier drops them), and a snapshot lists both levels.
// - Under a three times oversubscribed pool with the tier on, every request finishes with its output alone.
// - The tier off (0 or unset) changes nothing; bad sizes fail with InvalidArgumentError naming the field.
// - Nothing leaks: after each test no block is held (openTinyPerTest), and the tier's memory goes with close().
// Runs on the executor under test ($TRTD_TEST_EXECUTOR=cuda for the CUDA executor, on a GPU; there the copies go
// through pinned memory on the engine's stream, and outputs may part at a measured near-tie, test/near-tie.ts).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { prefixBlockHashes } from "@trtd/model";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError, type Executor, type ExecutorOptions, type GenerateRequest, type SamplingOptions } from "../src/index.js";
import { pseudoTokens } from "@trtd/test-support";
import { expectIdle, openTiny, openTinyPerTest, run, skipFor, skipSuite, tinyDir } from "./helpers.js";
import { NearTies } from "./near-tie.js";

const skip = skipSuite("host-kv-tier");
const ties = new NearTies();
const exec = openTinyPerTest();
afterAll(async () => {
  await ties.close();
});

const T = 16;
/** Bytes of one KV block of models/tiny at T tokens per block, on the executor under test (set in beforeAll). */
let blockBytes = 0;
function bytesPerBlock(): number {
  expect(blockBytes).toBeGreaterThan(0);
  return blockBytes;
}

interface HfFixture {
  transformers: string;
  model_sha256: string;
  max_new_tokens: number;
  cases: { prompt: number[]; tokens: number[] }[];
}
const hf = JSON.parse(readFileSync(join(import.meta.dirname, "fixtures/host-tier-hf.json"), "utf8")) as HfFixture;
const BF16 = "the CUDA executor's bf16 logits part from transformers' fp32 ones at near-ties (the other tests compare it with itself uncached)";

const seeded: SamplingOptions = { temperature: 0.9, topK: 50, topP: 0.95, seed: 4321 };

/** 49-token prompts (3 full blocks and one token), one new token: 4 blocks held while running, 3 left cached. */
function req(salt: number, sampling?: SamplingOptions): GenerateRequest {
  return { prompt: pseudoTokens(49, 900 + salt), maxNewTokens: 1, ...(sampling ? { sampling } : {}) };
}

function hostStats(ex: Executor) {
  const s = ex.stats();
  return {
    total: s.kvHostBlocksTotal,
    held: s.kvHostBlocksHeld,
    stored: s.kvHostStoredBlocks,
    hit: s.kvHostHitBlocks,
    evicted: s.kvHostEvictedBlocks,
  };
}

describe.skipIf(skip)("host KV tier", () => {
  beforeAll(async () => {
    const ex = openTiny({ kvTokensPerBlock: T, kvBlockCount: 1 });
    blockBytes = ex.kvLayout().bytesPerBlock;
    await ex.close();
  });

  it("kvHostCacheBytes: off by default; bad values fail naming the field", () => {
    const bpb = bytesPerBlock();
    expect(hostStats(exec({ kvTokensPerBlock: T }))).toEqual({ total: 0, held: 0, stored: 0, hit: 0, evicted: 0 });
    expect(hostStats(exec({ kvTokensPerBlock: T, kvHostCacheBytes: 5 * bpb + 1 }))).toMatchObject({ total: 5, held: 0 });
    expect(() => exec({ kvHostCacheBytes: -1 })).toThrow(/kv_host_cache_bytes must be >= 0/);
    expect(() => exec({ kvHostCacheBytes: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => exec({ kvHostCacheBytes: 1.5 })).toThrow(/kvHostCacheBytes/);
    expect(() => exec({ kvTokensPerBlock: T, kvHostCacheBytes: bpb - 1 })).toThrow(/kv_host_cache_bytes holds no block/);
    expect(() => exec({ kvHostCacheBytes: 4 * bpb, prefixCache: false })).toThrow(/needs enable_prefix_cache/);
  });

  for (const [name, sampling] of [
    ["greedy", undefined],
    ["seeded", seeded],
  ] as const) {
    it(`${name}: a working set twice the pool comes back from the tier; output equals a run without any cache`, async () => {
      // 10 blocks; 6 prompts of 3 cached blocks each (18 blocks: about twice the pool). Round 1 computes them all
      // and evicts the older ones to the tier (12 slots: room for all). In round 2 each prompt's 3 blocks are in
      // the tier when its turn comes (run in the same order, each was evicted before it is asked for again).
      const bpb = bytesPerBlock();
      const tiered = exec({ kvTokensPerBlock: T, kvBlockCount: 10, kvHostCacheBytes: 12 * bpb });
      const plain = exec({ kvTokensPerBlock: T, kvBlockCount: 10 });
      const fresh = exec({ kvTokensPerBlock: T, prefixCache: false });
      const requests = [0, 1, 2, 3, 4, 5].map((i) => req(i, sampling && { ...sampling, seed: 4321 + i }));
      const want = [];
      for (const r of requests) want.push((await run(fresh, r)).tokens);
      for (const round of [1, 2]) {
        for (const [i, r] of requests.entries()) {
          const before = tiered.stats();
          const got = await run(tiered, r);
          ties.expectSame(tiered, r, want[i]!, got.tokens, `round ${round}, request ${i}, with the tier`);
          ties.expectSame(plain, r, want[i]!, (await run(plain, r)).tokens, `round ${round}, request ${i}, pool only`);
          const after = tiered.stats();
          const hit = { tokens: after.prefixCacheHitTokens - before.prefixCacheHitTokens, host: after.kvHostHitBlocks - before.kvHostHitBlocks };
          expect(hit, `round ${round}, request ${i}`).toEqual(round === 1 ? { tokens: 0, host: 0 } : { tokens: 48, host: 3 });
        }
      }
      // Round 1 left 9 blocks cached in the pool and evicted 3 prompts' blocks (9) to the tier; round 2 moved each
      // prompt back (3 blocks) while evicting the oldest pool prompt (3 blocks) to the tier.
      expect(hostStats(tiered)).toEqual({ total: 12, held: 9, stored: 9 + 18, hit: 18, evicted: 0 });
      const s = tiered.stats();
      expect(s.prefixCacheHitTokens).toBe(6 * 48);
      expect(s.prefixCacheMissTokens).toBe(6 * 49 + 6 * 1);
      expect(s.promptTokens).toBe(s.prefixCacheMissTokens);
      // Without the tier the same trace finds nothing: each prompt was evicted before it came back.
      expect(plain.stats()).toMatchObject({ prefixCacheHitTokens: 0, kvHostBlocksTotal: 0, kvHostHitBlocks: 0, kvHostStoredBlocks: 0 });
    });
  }

  it.skipIf(skipFor("cuda", "greedy output through the tier equals transformers' generate()", BF16))(
    "greedy output whose prefix came back from the tier equals transformers' generate() on models/tiny",
    async () => {
      const sha = createHash("sha256").update(readFileSync(join(tinyDir, "model.safetensors"))).digest("hex");
      expect(sha, "models/tiny changed: rerun tools/reference/host_tier_fixture.py").toBe(hf.model_sha256);
      expect(hf.cases.map((c) => c.prompt)).toEqual([0, 1, 2, 3, 4, 5].map((i) => req(i).prompt));
      // As the round trip above: 6 prompts on a 10-block pool, twice; in round 2 every prefix comes from the tier.
      const ex = exec({ kvTokensPerBlock: T, kvBlockCount: 10, kvHostCacheBytes: 12 * bytesPerBlock() });
      for (const round of [1, 2]) {
        for (const [i, c] of hf.cases.entries()) {
          const got = await run(ex, { prompt: c.prompt, maxNewTokens: hf.max_new_tokens });
          expect(got.tokens, `round ${round}, prompt ${i}`).toEqual(c.tokens);
        }
      }
      expect(ex.stats().kvHostHitBlocks).toBe(6 * 3);
    },
  );

  it("a tier smaller than the working set drops its least recently used blocks; events name what the worker holds", async () => {
    // Pool: 10 blocks. Tier: 6 slots (two prompts). Runs A..F (3 cached blocks each): after C the pool holds A, B, C
    // (9 blocks) and one empty block; D evicts A to the tier, E evicts B, F evicts C: the tier is full (A, B) and
    // drops A, its least recently used, for C.
    const bpb = bytesPerBlock();
    const ex = exec({ kvTokensPerBlock: T, kvBlockCount: 10, kvHostCacheBytes: 6 * bpb });
    const fresh = exec({ kvTokensPerBlock: T, prefixCache: false });
    const fp = ex.model.fingerprint;
    const [A, B, C, D, E, F] = [10, 11, 12, 13, 14, 15].map((s) => req(s));
    const hashes = (r: GenerateRequest) => prefixBlockHashes(r.prompt, T, fp).slice(0, 3);
    for (const r of [A, B, C]) await run(ex, r);
    expect(ex.kvEvents().events.filter((e) => e.type === "removed")).toEqual([]);
    await run(ex, D);
    // A moved to the tier: no event (the worker still holds it); D's blocks were stored.
    expect(ex.kvEvents()).toEqual({ events: hashes(D).map((hash) => ({ type: "stored", hash })), lost: false });
    expect(hostStats(ex)).toMatchObject({ held: 3, stored: 3, evicted: 0 });
    await run(ex, E);
    ex.kvEvents();
    await run(ex, F);
    expect(hostStats(ex)).toMatchObject({ held: 6, stored: 9, evicted: 3 });
    // The tier dropped A's blocks: now they are removed. The tier drops its least recently used slot first, which
    // holds A's last block (a chain leaves the pool tail first).
    const removed = ex.kvEvents().events.filter((e) => e.type === "removed");
    expect(removed).toEqual([...hashes(A)].reverse().map((hash) => ({ type: "removed", hash })));
    // A snapshot lists both levels: D, E, F in the pool and B, C in the tier.
    expect(new Set(ex.kvCacheSnapshot())).toEqual(new Set([B, C, D, E, F].flatMap(hashes)));
    // A again: gone from both levels, a miss. Its run evicts D to the tier, which drops B (now the oldest).
    let before = ex.stats();
    ties.expectSame(ex, A, (await run(fresh, A)).tokens, (await run(ex, A)).tokens, "A after the tier dropped it");
    let s = ex.stats();
    expect({ hit: s.prefixCacheHitTokens - before.prefixCacheHitTokens, host: s.kvHostHitBlocks }).toEqual({ hit: 0, host: 0 });
    // C again: in the tier (stored after B), a hit of its 3 blocks, output equal to the uncached run.
    before = s;
    ties.expectSame(ex, C, (await run(fresh, C)).tokens, (await run(ex, C)).tokens, "C from the tier");
    s = ex.stats();
    expect({ hit: s.prefixCacheHitTokens - before.prefixCacheHitTokens, host: s.kvHostHitBlocks }).toEqual({ hit: 48, host: 3 });
    // B again: dropped when D came in, a miss.
    before = s;
    await run(ex, B);
    expect(ex.stats().prefixCacheHitTokens - before.prefixCacheHitTokens).toBe(0);
    expect(ex.stats().kvHostBlocksHeld).toBeLessThanOrEqual(6);
  });

  it("a pool that holds a third of the concurrent demand, the tier on: every request finishes with its output alone", async () => {
    // 12 requests of 5 blocks each over their life (56 + 24 - 1 = 79 tokens) on a 20-block pool, sharing a 32-token
    // system prompt (2 blocks) and each with a full block of its own after it; twice, so that the second wave finds
    // what the first left in the pool and, for what the pool evicted, in the tier.
    const bpb = bytesPerBlock();
    const ex = exec({ kvTokensPerBlock: T, kvBlockCount: 20, kvHostCacheBytes: 40 * bpb });
    const fresh = exec({ kvTokensPerBlock: T, prefixCache: false });
    const system = pseudoTokens(32, 77);
    const requests: GenerateRequest[] = Array.from({ length: 12 }, (_, i) => ({
      prompt: [...system, ...pseudoTokens(24, 1040 + i)],
      maxNewTokens: 24,
      sampling: i % 2 ? { ...seeded, seed: 100 + i } : {},
    }));
    const demand = requests.reduce((n, r) => n + Math.ceil((r.prompt.length + r.maxNewTokens - 1) / T), 0);
    expect(demand).toBe(3 * ex.stats().kvBlocksTotal);
    const alone: number[][] = [];
    for (const r of requests) alone.push((await run(fresh, r)).tokens);
    for (const wave of [1, 2]) {
      const results = await Promise.all(requests.map((r) => run(ex, r)));
      results.forEach((r, i) => {
        expect(r.finishReason, `wave ${wave}, request ${i}`).toBe("length");
        ties.expectSame(ex, requests[i]!, alone[i]!, r.tokens, `wave ${wave}, request ${i} in a short pool with the tier vs alone`);
      });
    }
    const s = ex.stats();
    expect(s.kvHostStoredBlocks).toBeGreaterThan(0);
    expect(s.kvHostHitBlocks).toBeGreaterThan(0);
  });

  it("the tier off (0 or unset) changes nothing: same hits, evictions and events as an executor without the option", async () => {
    const unset = exec({ kvTokensPerBlock: T, kvBlockCount: 10 });
    const zero = exec({ kvTokensPerBlock: T, kvBlockCount: 10, kvHostCacheBytes: 0 });
    const trace = [0, 1, 2, 3, 0, 4, 1, 0].map((i) => req(20 + i));
    const outputs = async (ex: Executor) => {
      const out = [];
      for (const r of trace) out.push((await run(ex, r)).tokens);
      return { out, events: ex.kvEvents(), stats: { ...ex.stats(), iterations: 0 } };
    };
    const a = await outputs(unset);
    const b = await outputs(zero);
    expect(b).toEqual(a);
    expect(a.stats.prefixCacheEvictedBlocks).toBeGreaterThan(0);
    expect(a.stats).toMatchObject({ kvHostBlocksTotal: 0, kvHostBlocksHeld: 0, kvHostStoredBlocks: 0, kvHostHitBlocks: 0, kvHostEvictedBlocks: 0 });
  });

  it("the tier's memory is released on close", async () => {
    // 128 MiB of tier, filled at open (the reference zero-fills its slots; the CUDA executor pins them), opened and
    // closed 6 times: a leak would keep 768 MiB resident.
    const bpb = bytesPerBlock();
    const tierBytes = Math.floor((128 << 20) / bpb) * bpb;
    const cycle = async () => {
      const ex = openTiny({ kvTokensPerBlock: T, kvBlockCount: 10, kvHostCacheBytes: tierBytes });
      for (const s of [30, 31, 32, 33]) await run(ex, req(s)); // the fourth evicts the first to the tier
      expect(ex.stats().kvHostStoredBlocks).toBe(3);
      expectIdle(ex);
      await ex.close();
    };
    await cycle(); // warm-up: the allocator's own pools
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 6; i++) await cycle();
    const grown = process.memoryUsage().rss - rss0;
    expect(grown).toBeLessThan(tierBytes);
  });
});
