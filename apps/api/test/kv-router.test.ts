// KV-aware routing with real decode workers on the in-process request plane: the workers' KV events (polled,
// delta or snapshot) rebuild each worker's prefix-cache blocks in the api's KvIndex; the kv mode sends requests
// that share a prefix to the worker holding it, round robin does not; conditional disaggregation counts the prompt
// left after the cached prefix; the cost formula trades overlap against load.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, modelDir } from "@trtd/test-support";
import { EXECUTOR_DEFAULTS, kvEventSubjects, unpackHashes, type KvEventReply } from "@trtd/apps-common";
import { startDecodeWorker, type RunningDecodeWorker } from "@trtd/decode";
import { prefixBlockHashes } from "@trtd/model";
import { createInProcessPlane, type RequestPlane } from "@trtd/request-plane";
import { createApiMetrics, KvAwareSelector, KvIndex, PrefillPolicy, RequestPlaneWorkers, RoundRobinSelector, Router, type RouteDecision, type WorkerInstance } from "../src/index.js";
import { generateRequest as req, runThrough as run } from "./support/router-requests.js";

const T = 16; // tokens per KV block on both workers
const SYSTEM = Array.from({ length: 64 }, (_, i) => 3000 + i * 7); // 4 full blocks
const chat = (user: number): number[] => [...SYSTEM, ...Array.from({ length: 9 }, (_, i) => 20_000 + user * 31 + i)];

let plane: RequestPlane;
let decoders: RunningDecodeWorker[];
let workers: RequestPlaneWorkers;
const indexes: KvIndex[] = [];
function index(): KvIndex {
  const ix = new KvIndex(workers, { pollMs: 20, roles: ["decode"] });
  indexes.push(ix);
  return ix;
}
/** Which worker ran a request: the one whose executor counted its prompt. */
const promptCounts = () => decoders.map((d) => d.executor.stats().prefixCacheHitTokens + d.executor.stats().prefixCacheMissTokens);
const ranOn = (before: number[]) => {
  const after = promptCounts();
  const moved = decoders.filter((_, i) => after[i] !== before[i]);
  expect(moved, "exactly one worker ran the request").toHaveLength(1);
  return moved[0]!.instanceId;
};

beforeAll(async () => {
  plane = createInProcessPlane({ leaseMs: 600 });
  decoders = [];
  for (let i = 0; i < 2; i++) {
    decoders.push(await startDecodeWorker({ plane, executor: { ...EXECUTOR_DEFAULTS, modelDir, threads: 1, kvBlockCount: 64, kvTokensPerBlock: T } }));
  }
  workers = new RequestPlaneWorkers(plane);
  await workers.waitForDecode(2, 5000);
}, 60_000);
afterAll(async () => {
  for (const ix of indexes) await ix.close();
  workers?.close();
  for (const d of decoders ?? []) await d.stop(1000);
  await plane?.close();
});

describe("KV events and the index", () => {
  it("a poll answers a snapshot, then deltas; the index holds what the worker's executor caches", async () => {
    const [a] = decoders;
    const poll = async (body: object) =>
      JSON.parse(Buffer.from(await plane.request(kvEventSubjects.worker(a!.instanceId), Buffer.from(JSON.stringify(body)), { timeoutMs: 2000 })).toString()) as KvEventReply;
    const first = await poll({});
    expect(first).toMatchObject({ kind: "snapshot", tokensPerBlock: T, fingerprint: a!.executor.model.fingerprint });
    if (first.kind !== "snapshot") throw new Error("expected a snapshot");
    // A request straight to worker a: its prompt's full blocks are stored.
    const prompt = chat(1);
    for await (const _ of workers.decode(a!.instanceId, req(prompt), new AbortController().signal));
    const delta = await poll({ epoch: first.epoch, since: first.seq });
    if (delta.kind !== "delta") throw new Error(`expected a delta, got ${delta.kind}`);
    const stored = unpackHashes(delta.hashes).filter((_, i) => delta.types[i] === "s");
    expect(stored.slice(0, 4)).toEqual(prefixBlockHashes(prompt, T, a!.executor.model.fingerprint).slice(0, 4));
    // Another epoch (a restarted worker, or one that lost events) or a cursor from the future gets a snapshot.
    expect((await poll({ epoch: "other", since: delta.seq })).kind).toBe("snapshot");
    expect((await poll({ epoch: delta.epoch, since: delta.seq + 5 })).kind).toBe("snapshot");
    // A late joiner's index starts from a snapshot and sees the same prefix on a, none on b.
    const ix = index();
    await ix.refresh();
    expect(ix.overlap(a!.instanceId, chat(2)).cachedTokens).toBe(64);
    expect(ix.overlap(decoders[1]!.instanceId, chat(2)).cachedTokens).toBe(0);
    expect(ix.blockCount(a!.instanceId)).toBe(a!.executor.stats().kvBlocksCached);
  });
});

describe("prefix-cache figures in the published load", () => {
  it("each worker publishes its prefix-cache hit and miss tokens; /metrics shows them per instance", async () => {
    const published = () => workers.instances("decode").flatMap((w) => (w.load ? [{ component: "decode", instance: w.id, load: w.load }] : []));
    const m = createApiMetrics(published);
    // A repeat of the first test's prompt on the worker that ran it: a hit there.
    for await (const _ of workers.decode(decoders[0]!.instanceId, req(chat(1)), new AbortController().signal));
    const matches = () =>
      decoders.every((d) => {
        const l = published().find((p) => p.instance === d.instanceId)?.load;
        const s = d.executor.stats();
        return l?.prefixCacheHitTokens === s.prefixCacheHitTokens && l.prefixCacheMissTokens === s.prefixCacheMissTokens;
      });
    await eventually(matches, 5000, "the published load to carry the executors' prefix-cache figures", { intervalMs: 20 });
    const text = m.registry.render();
    for (const d of decoders) {
      const s = d.executor.stats();
      expect(text).toContain(`trtd_worker_prefix_cache_tokens_total{component="decode",instance="${d.instanceId}",result="hit"} ${s.prefixCacheHitTokens}`);
      expect(text).toContain(`trtd_worker_prefix_cache_tokens_total{component="decode",instance="${d.instanceId}",result="miss"} ${s.prefixCacheMissTokens}`);
    }
    expect(decoders.reduce((n, d) => n + d.executor.stats().prefixCacheHitTokens, 0)).toBeGreaterThan(0);
  });
});

describe("routing modes", () => {
  it("kv mode sends requests sharing a system prompt to the worker that holds it; round robin spreads them", async () => {
    const ix = index();
    ix.start();
    const selector = new KvAwareSelector(ix);
    const decisions: RouteDecision[] = [];
    const kvRouter = new Router({ workers, decodeSelector: selector, kvIndex: ix, prefill: { enabled: false }, onRoute: (d) => decisions.push(d) });
    // The first request of a new system prompt goes wherever; then every later one follows it.
    const system2 = SYSTEM.map((t) => t + 1);
    const convo = (user: number) => [...system2, ...Array.from({ length: 9 }, (_, i) => 40_000 + user * 13 + i)];
    let before = promptCounts();
    await run(kvRouter, req(convo(0)));
    const home = ranOn(before);
    await eventually(() => decoders.some((d) => ix.overlap(d.instanceId, convo(1)).cachedTokens === 64), 5000, "the index to see the system prompt", { intervalMs: 20 });
    for (let u = 1; u <= 4; u++) {
      before = promptCounts();
      await run(kvRouter, req(convo(u)));
      expect(ranOn(before), `request ${u}`).toBe(home);
      // The decision log says where it went and what each worker held then.
      expect(decisions.at(-1)).toMatchObject({ instanceId: home, attempt: 1, pinned: false, tokens: convo(u) });
      expect(decisions.at(-1)!.candidates.find((c) => c.id === home)).toMatchObject({ cachedTokens: 64, outstanding: 0 });
    }
    expect(decisions).toHaveLength(5);
    // Each request's prefill stopped counting as queued once its first token came: nothing is left behind.
    for (const d of decoders) expect(selector.queuedBlocks(d.instanceId)).toBe(0);
    // Round robin alternates regardless of the cache.
    const rr = new Router({ workers, decodeSelector: new RoundRobinSelector(), prefill: { enabled: false } });
    const seen = new Set<string>();
    for (let u = 5; u <= 8; u++) {
      before = promptCounts();
      await run(rr, req(convo(u)));
      seen.add(ranOn(before));
    }
    expect(seen.size).toBe(2);
    for (const d of decoders) expect(d.executor.stats()).toMatchObject({ activeRequests: 0, kvBlocksUsed: 0 });
  });

  it("the cost trades the blocks to compute against the work on each worker: a busy worker with the prefix loses to an idle one", async () => {
    const ix = index();
    await ix.refresh();
    const [a, b] = decoders.map((d) => d.instanceId);
    const holder = [a!, b!].find((id) => ix.overlap(id, chat(3)).cachedTokens === 64)!;
    const other = holder === a ? b! : a!;
    const load = (activeRequests: number) => ({ activeRequests, queuedRequests: 0, kvBlocksUsed: 4 * activeRequests, kvBlocksTotal: 64, generatedTokens: 0, pinnedExports: 0, draining: false });
    const r = req(chat(3)); // 73 tokens: 5 blocks, 4 of them cached on the holder
    const candidates = (holderRunning: number, otherRunning = 0): WorkerInstance[] => [
      { id: holder, load: load(holderRunning) },
      { id: other, load: load(otherRunning) },
    ];
    const s = new KvAwareSelector(ix); // weights 1 and 1
    expect(s.costs(r, candidates(0), new Map())).toEqual([
      { id: holder, newBlocks: 1, queuedBlocks: 0, outstanding: 0, cost: 1 },
      { id: other, newBlocks: 5, queuedBlocks: 0, outstanding: 0, cost: 5 },
    ]);
    expect(s.select(r, candidates(3), new Map()).id).toBe(holder); // 1 + 3 < 5
    s.settled(r.id);
    expect(s.select(r, candidates(5), new Map()).id).toBe(other); // 1 + 5 > 5
    s.settled(r.id);
    expect(new KvAwareSelector(ix, { loadWeight: 0 }).select(r, candidates(50), new Map()).id).toBe(holder);
  });

  it("a follow-up turn stays with its history when the holder runs one request more (each running request costs a block, not a prompt)", async () => {
    const ix = index();
    await ix.refresh();
    const [a, b] = decoders.map((d) => d.instanceId);
    const holder = [a!, b!].find((id) => ix.overlap(id, chat(3)).cachedTokens === 64)!;
    const other = holder === a ? b! : a!;
    const load = (activeRequests: number) => ({ activeRequests, queuedRequests: 0, kvBlocksUsed: 0, kvBlocksTotal: 64, generatedTokens: 0, pinnedExports: 0, draining: false });
    const s = new KvAwareSelector(ix);
    const r = req(chat(3));
    // 1 + 3 against 5 + 2. Charging each running request the new prompt's 5 blocks (the formula before) made it
    // 1 + 15 against 5 + 10 and sent the turn away from its history, to compute it all again.
    expect(s.select(r, [{ id: holder, load: load(3) }, { id: other, load: load(2) }], new Map()).id).toBe(holder);
    s.settled(r.id);
  });

  it("prefill work queued on a worker counts until its first token: a second request goes elsewhere meanwhile", async () => {
    const ix = index();
    await ix.refresh();
    const [a, b] = decoders.map((d) => d.instanceId);
    const holder = [a!, b!].find((id) => ix.overlap(id, chat(3)).cachedTokens === 64)!;
    const other = holder === a ? b! : a!;
    const idle = { activeRequests: 0, queuedRequests: 0, kvBlocksUsed: 0, kvBlocksTotal: 64, generatedTokens: 0, pinnedExports: 0, draining: false };
    const both: WorkerInstance[] = [{ id: holder, load: idle }, { id: other, load: idle }];
    const s = new KvAwareSelector(ix);
    // A long prompt cached nowhere (12 blocks) sent to the holder, its only candidate.
    const long = req(Array.from({ length: 12 * T }, (_, i) => 60_000 + i));
    expect(s.select(long, [{ id: holder, load: idle }], new Map()).id).toBe(holder);
    expect(s.queuedBlocks(holder)).toBe(12);
    const r = req(chat(3)); // 1 block to compute on the holder, behind 12 queued; 5 on the other
    expect(s.select(r, both, new Map()).id).toBe(other);
    s.settled(r.id);
    s.settled(long.id); // its first token came
    expect(s.queuedBlocks(holder)).toBe(0);
    expect(s.select(r, both, new Map()).id).toBe(holder);
    s.settled(r.id);
  });

  it("a prompt counts as cached where the router sent it until the worker's events confirm it or the assumption lapses", async () => {
    const ix = new KvIndex(workers, { pollMs: 1_000_000, roles: ["decode"], pendingMs: 300 }); // polled by hand below
    indexes.push(ix);
    await ix.refresh();
    const fresh = [...SYSTEM.map((t) => t + 5), ...Array.from({ length: 9 }, (_, i) => 50_000 + i)]; // cached nowhere
    const [a, b] = decoders.map((d) => d.instanceId);
    expect(ix.overlap(a!, fresh).cachedTokens).toBe(0);
    ix.notePrompt(a!, fresh);
    expect(ix.overlap(a!, fresh).cachedTokens).toBe(64);
    expect(ix.overlap(b!, fresh).cachedTokens).toBe(0);
    await new Promise((r) => setTimeout(r, 350));
    expect(ix.overlap(a!, fresh).cachedTokens).toBe(0); // lapsed: it was never sent
    // Sent for real: the assumption holds at once, and the worker's events keep it after it would have lapsed.
    const router = new Router({ workers, decodeSelector: new KvAwareSelector(ix), kvIndex: ix, prefill: { enabled: false } });
    const before = promptCounts();
    await run(router, req(fresh));
    const home = ranOn(before);
    expect(ix.overlap(home, fresh).cachedTokens).toBe(64);
    await new Promise((r) => setTimeout(r, 350));
    await ix.refresh();
    expect(ix.overlap(home, fresh).cachedTokens).toBe(64);
  });

  it("conditional disaggregation counts the prompt left after the cached prefix", () => {
    const policy = new PrefillPolicy({ minPromptTokens: 32, maxPrefillLoad: 8 });
    const prefill: WorkerInstance[] = [{ id: "p", load: { activeRequests: 0, queuedRequests: 0, kvBlocksUsed: 0, kvBlocksTotal: 1, generatedTokens: 0, pinnedExports: 0, draining: false } }];
    const r = req(chat(4)); // 73 tokens
    expect(policy.decide(r, prefill, new Map(), 0)).toMatchObject({ remote: true });
    expect(policy.decide(r, prefill, new Map(), 64)).toEqual({ remote: false, reason: "cached_prefix" }); // 9 left
    expect(policy.decide(r, prefill, new Map(), 32)).toMatchObject({ remote: true }); // 41 left
  });

  it("kv mode picks the prefill worker by the same cost, among those under --max-prefill-load", async () => {
    // The decode workers stand in as prefill candidates: the index knows their caches (roles are what it polls).
    const ix = index();
    await ix.refresh();
    const [a, b] = decoders.map((d) => d.instanceId);
    const holder = [a!, b!].find((id) => ix.overlap(id, chat(6)).cachedTokens === 64)!;
    const other = holder === a ? b! : a!;
    const load = (active: number) => ({ activeRequests: active, queuedRequests: 0, kvBlocksUsed: 0, kvBlocksTotal: 64, generatedTokens: 0, pinnedExports: 0, draining: false });
    const policy = new PrefillPolicy({ minPromptTokens: 8, maxPrefillLoad: 2 });
    const r = req(chat(6));
    const pick = (holderActive: number) =>
      policy.decide(r, [{ id: other, load: load(0) }, { id: holder, load: load(holderActive) }], new Map(), 0, new KvAwareSelector(ix));
    expect(pick(0)).toMatchObject({ remote: true, instance: { id: holder } }); // least loaded would tie, then take the first
    expect(pick(2)).toMatchObject({ remote: true, instance: { id: other } }); // the holder is at --max-prefill-load
    expect(policy.decide(r, [{ id: holder, load: load(2) }], new Map(), 0, new KvAwareSelector(ix))).toEqual({ remote: false, reason: "prefill_busy" });
  });
});
