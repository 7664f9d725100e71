// nx run trtllm:bench-host-tier: does the host KV tier pay off? A seeded multi-turn trace (several users, each with a
// history that grows by a user turn and the reply's token) whose working set is about 3x the KV pool, run on two
// executors (reference, or TRTD_BENCH_EXECUTOR=cuda) in the same process, turn by turn in alternating order: the pool alone, and the pool plus a
// host tier that holds the working set. Per turn, TTFT (enqueue to first token). The first round has nothing to
// reuse; from the second on, each user's history was evicted from the pool by the others: the pool alone recomputes
// it, the tier copies it back. Reports TTFT p50/p99 of the warm rounds per configuration, their ratio, the hit
// ratio, and the load average; REPEATS fresh pairs, median ratio. Last line: one JSON object.
import { cpus, loadavg } from "node:os";
import { resolve } from "node:path";
import { pseudoTokens } from "@trtd/test-support";
import { Executor, type ExecutorOptions } from "../src/index.js";

const MODEL = resolve(import.meta.dirname, "../../../models/tiny");
const T = 16;
const USERS = Number(process.env.TRTD_BENCH_USERS ?? 6);
const HISTORY = Number(process.env.TRTD_BENCH_HISTORY ?? 512); // tokens of each user's history at the start
const TURN = 16; // user tokens per turn
const ROUNDS = Number(process.env.TRTD_BENCH_ROUNDS ?? 4);
const REPEATS = Number(process.env.TRTD_BENCH_REPEATS ?? 3);
const POOL_BLOCKS = Number(process.env.TRTD_BENCH_POOL_BLOCKS ?? 64);
const THREADS = Number(process.env.TRTD_BENCH_THREADS ?? Math.min(2, cpus().length));
/** TRTD_BENCH_EXECUTOR=cuda runs the same trace on the CUDA executor (pinned tier, copies on the engine's stream). */
const EXECUTOR = (process.env.TRTD_BENCH_EXECUTOR ?? "reference") as "reference" | "cuda";

/** Milliseconds from enqueue to the first generated token; the reply's token joins the history. */
async function turn(ex: Executor, prompt: number[]): Promise<{ ms: number; token: number }> {
  const t0 = performance.now();
  let ms = -1;
  let token = -1;
  for await (const chunk of ex.generate({ prompt, maxNewTokens: 1 })) {
    if (ms < 0 && chunk.tokens.length) {
      ms = performance.now() - t0;
      token = chunk.tokens[0]!;
    }
  }
  return { ms, token };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

interface Side {
  name: string;
  ex: Executor;
  warm: number[];
}

async function onePair(repeat: number) {
  const base: ExecutorOptions = { executor: EXECUTOR, kvTokensPerBlock: T, kvBlockCount: POOL_BLOCKS, threads: THREADS, maxBatchSize: 8 };
  const pool = Executor.open(MODEL, base);
  const bpb = pool.kvLayout().bytesPerBlock;
  const finalBlocks = Math.ceil((HISTORY + ROUNDS * (TURN + 1)) / T);
  const workingSet = USERS * finalBlocks;
  const tiered = Executor.open(MODEL, { ...base, kvHostCacheBytes: 2 * workingSet * bpb });
  const sides: Side[] = [
    { name: "pool", ex: pool, warm: [] },
    { name: "pool+tier", ex: tiered, warm: [] },
  ];
  // One history per user per side (they stay equal: greedy on the same tokens; checked each turn).
  const histories = sides.map(() => Array.from({ length: USERS }, (_, u) => pseudoTokens(HISTORY, 1000 * repeat + u)));
  let k = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (let u = 0; u < USERS; u++) {
      const userTurn = pseudoTokens(TURN, 7 + 1000 * repeat + 100 * round + u);
      const order = k++ % 2 ? [1, 0] : [0, 1]; // alternate which side goes first
      const got: number[] = [];
      for (const i of order) {
        const h = histories[i]![u]!;
        const prompt = [...h, ...userTurn];
        const r = await turn(sides[i]!.ex, prompt);
        if (round > 0) sides[i]!.warm.push(r.ms);
        got[i] = r.token;
        histories[i]![u] = [...prompt, r.token];
      }
      if (got[0] !== got[1]) throw new Error(`round ${round}, user ${u}: the two executors answered ${got[0]} and ${got[1]}`);
    }
  }
  const out = sides.map((s) => {
    const st = s.ex.stats();
    return {
      name: s.name,
      p50: quantile(s.warm, 0.5),
      p99: quantile(s.warm, 0.99),
      hitRatio: st.prefixCacheHitTokens / (st.prefixCacheHitTokens + st.prefixCacheMissTokens),
      hostHitBlocks: st.kvHostHitBlocks,
      poolEvictions: st.prefixCacheEvictedBlocks,
    };
  });
  await pool.close();
  await tiered.close();
  return { workingSetBlocks: workingSet, sides: out, ratio: out[0]!.p50 / out[1]!.p50 };
}

const results = [];
for (let r = 0; r < REPEATS; r++) {
  const res = await onePair(r);
  results.push(res);
  const line = res.sides
    .map((s) => `${s.name}: TTFT p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, hit ratio ${(100 * s.hitRatio).toFixed(1)}%, host hit blocks ${s.hostHitBlocks}`)
    .join(" | ");
  console.log(`repeat ${r + 1}: working set ${res.workingSetBlocks} blocks on a ${POOL_BLOCKS}-block pool; ${line}; pool / pool+tier p50 = ${res.ratio.toFixed(2)}x; load ${loadavg()[0]!.toFixed(2)}`);
}
const ratios = results.map((r) => r.ratio).sort((a, b) => a - b);
const median = ratios[Math.floor(ratios.length / 2)]!;
const med = (pick: (r: (typeof results)[number]) => number) => quantile(results.map(pick), 0.5);
console.log(
  JSON.stringify({
    bench: "host-kv-tier",
    executor: EXECUTOR,
    model: "tiny",
    threads: THREADS,
    users: USERS,
    historyTokens: HISTORY,
    rounds: ROUNDS,
    poolBlocks: POOL_BLOCKS,
    workingSetBlocks: results[0]!.workingSetBlocks,
    repeats: REPEATS,
    ttftP50Ms: { pool: med((r) => r.sides[0]!.p50), poolTier: med((r) => r.sides[1]!.p50) },
    ttftP99Ms: { pool: med((r) => r.sides[0]!.p99), poolTier: med((r) => r.sides[1]!.p99) },
    hitRatio: { pool: med((r) => r.sides[0]!.hitRatio), poolTier: med((r) => r.sides[1]!.hitRatio) },
    ttftP50Ratio: median,
    ratios,
    loadAvg1m: loadavg()[0],
  }),
);
