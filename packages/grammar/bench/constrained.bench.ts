// Constrained decoding on one executor and model (default: the reference executor, models/tiny), everything
// measured in one run against its own baseline: (1) decode throughput at batch 32, constrained (a JSON grammar's matcher per request, masks through
// trtd_executor_set_token_mask) vs unconstrained, the cases taking turns, best of TRTD_BENCH_REPEATS (3), with the
// ratio; (2) the first-token latency of a constrained request whose schema is new (compiled then) vs one whose
// schema is cached, vs unconstrained; (3) schema violations (ajv) over TRTD_BENCH_GENERATIONS (1000) constrained
// generations with varied schemas. Last line: one JSON object, naming the executor and model it measured.
// TRTD_BENCH_MODEL_DIR: the model directory (default models/tiny); it needs a tokenizer (on a GPU: the 8B-shaped model
// of tools/gpu/make_models.py, then tools/gpu/deploy-tokenizer.ts; see tools/gpu/README.md). The executor is the
// binding's default, so $TRTD_EXECUTOR_LIB picks another (packages/trtllm/build/libtrtd_executor_cuda.so).
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { Executor, type GenerateRequest } from "@trtd/trtllm";
import { Tokenizer } from "@trtd/tokenizer";
import { GrammarCompiler, type GrammarMatcher, type GrammarSpec } from "../src/index.js";

const modelDir = process.env.TRTD_BENCH_MODEL_DIR
  ? resolve(process.env.TRTD_BENCH_MODEL_DIR)
  : new URL("../../../models/tiny", import.meta.url).pathname;
const REPEATS = Number(process.env.TRTD_BENCH_REPEATS ?? 3);
const GENERATIONS = Number(process.env.TRTD_BENCH_GENERATIONS ?? 1000);
const BATCH = 32;
const NEW_TOKENS = 48;

const tok = Tokenizer.fromModelDir(modelDir);
// TRTD_BENCH_THREADS: the executor's compute threads (default: all cores). The matchers run on the event loop's
// thread: on a small CPU box they compete with the forward pass for cores unless one is left to them.
const THREADS = process.env.TRTD_BENCH_THREADS ? Number(process.env.TRTD_BENCH_THREADS) : undefined;
const ex = Executor.open(modelDir, { maxBatchSize: BATCH, kvBlockCount: 4096, ...(THREADS ? { threads: THREADS } : {}) });
const t0 = performance.now();
const compiler = await GrammarCompiler.create(tok, { vocabSize: ex.model.vocabSize, cacheSize: 2048 });
const vocabMs = performance.now() - t0;
const stop = [...tok.eosTokenIds];

function prompt(i: number): number[] {
  return tok.encode(`Request ${i}: describe item ${i * 7919 % 1000} in JSON.`);
}

/** A long free-text field: documents rarely end within NEW_TOKENS, so the batch stays full. */
const LONG: GrammarSpec = { type: "json_schema", schema: { type: "object", properties: { text: { type: "string" } }, required: ["text"] } };

/**
 * One batch of BATCH requests decoding together. Constrained: each with its matcher, up to NEW_TOKENS (a document
 * may end sooner, at its EOS). Unconstrained with `lengths`: the same prompts and seeds, each request exactly as many
 * tokens as the constrained run gave it (no stop tokens), so both runs do the same work but for the masks.
 */
// TRTD_BENCH_PROFILE=1: per batch, the wall-clock time per engine step against the event loop's busy time per step
// (masks, accepts, draining responses), to see whether the mask work fits inside the engine's steps.
const PROFILE = process.env.TRTD_BENCH_PROFILE === "1";
const prof = { acceptMs: 0, masks: 0 };
function timed(m: GrammarMatcher): GrammarMatcher {
  if (!PROFILE) return m;
  return new Proxy(m, {
    get(target, key) {
      if (key === "acceptToken") return (t: number) => { const s = performance.now(); const r = target.acceptToken(t); prof.acceptMs += performance.now() - s; return r; };
      if (key === "nextTokenMask") return () => { prof.masks++; return target.nextTokenMask(); };
      const v = Reflect.get(target, key, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

async function batchRun(constrained: GrammarSpec | undefined, lengths?: number[]): Promise<{ tokPerS: number; lengths: number[]; iterations: number }> {
  const matchers: GrammarMatcher[] = [];
  if (constrained) for (let i = 0; i < BATCH; i++) matchers.push(await compiler.matcher(constrained));
  Object.assign(prof, { acceptMs: 0, masks: 0 });
  const elu0 = performance.eventLoopUtilization();
  const start = performance.now();
  const iter0 = ex.stats().iterations;
  const outs = await Promise.all(
    Array.from({ length: BATCH }, (_, i) => {
      const req: GenerateRequest = { prompt: prompt(i), maxNewTokens: lengths?.[i] ?? NEW_TOKENS, stopTokenIds: constrained ? stop : [], sampling: { temperature: 1, seed: 100 + i } };
      return ex.generate(constrained ? { ...req, constraint: timed(matchers[i]) } : req).collect();
    }),
  );
  const s = (performance.now() - start) / 1000;
  const busyMs = performance.eventLoopUtilization(elu0).active;
  for (const m of matchers) m.free();
  const tokens = outs.reduce((n, o) => n + o.tokens.length, 0);
  const iterations = ex.stats().iterations - iter0;
  if (process.env.TRTD_BENCH_VERBOSE || PROFILE) console.log(`  ${constrained ? constrained.type : "unconstrained"}: ${tokens} tokens, ${iterations} iterations, ${s.toFixed(2)} s`);
  if (PROFILE) console.log(`    per step: wall ${(s * 1000 / iterations).toFixed(1)} ms, event loop busy ${(busyMs / iterations).toFixed(1)} ms` + (constrained ? ` (${(prof.masks / iterations).toFixed(1)} masks, accepts ${(prof.acceptMs / iterations).toFixed(2)} ms)` : ""));
  return { tokPerS: tokens / s, lengths: outs.map((o) => o.tokens.length), iterations };
}

async function firstTokenMs(spec: GrammarSpec | undefined, i: number): Promise<number> {
  const start = performance.now();
  const m = spec ? await compiler.matcher(spec) : undefined;
  const stream = ex.generate({ prompt: prompt(i), maxNewTokens: 1, stopTokenIds: stop, ...(m ? { constraint: m } : {}) });
  await stream.collect();
  m?.free();
  return performance.now() - start;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// (1) throughput: each constrained batch, then the same requests unconstrained at the same lengths; pairs take turns.
await batchRun(undefined); // warm-up
const load1AtStart = loadavg()[0];
const best = { long: { c: 0, u: 0 }, object: { c: 0, u: 0 } };
// Each pair's own ratio too (a constrained batch and its twin run back to back): on a shared machine the load moves
// between pairs, and the median of the pairs' ratios follows it less than the ratio of two maxima does.
const pairRatios = { long: [] as number[], object: [] as number[] };
for (let r = 0; r < REPEATS; r++) {
  for (const [name, spec] of [["long", LONG], ["object", { type: "json_object" }]] as const) {
    const c = await batchRun(spec);
    const u = await batchRun(undefined, c.lengths);
    best[name].c = Math.max(best[name].c, c.tokPerS);
    best[name].u = Math.max(best[name].u, u.tokPerS);
    pairRatios[name].push(c.tokPerS / u.tokPerS);
  }
}
const ratio = (x: { c: number; u: number }) => x.c / x.u;
console.log(`batch ${BATCH}, up to ${NEW_TOKENS} new tokens, best of ${REPEATS}: long-string schema ${best.long.c.toFixed(0)} tok/s vs ${best.long.u.toFixed(0)} unconstrained (x${ratio(best.long).toFixed(3)}); json_object ${best.object.c.toFixed(0)} vs ${best.object.u.toFixed(0)} (x${ratio(best.object).toFixed(3)}); median of the ${REPEATS} pairs' ratios: long-string x${median(pairRatios.long).toFixed(3)}, json_object x${median(pairRatios.object).toFixed(3)}`);

// (2) first-token latency: new schema (a property name never seen, so compiled now) vs the same schema cached.
const fresh: number[] = [];
const cached: number[] = [];
const plain: number[] = [];
for (let i = 0; i < 9; i++) {
  const spec: GrammarSpec = { type: "json_schema", schema: { type: "object", properties: { [`field_${i}_${Date.now()}`]: { type: "integer" }, name: { type: "string" }, tags: { type: "array", items: { type: "string" } } }, required: ["name"] }, strict: true };
  fresh.push(await firstTokenMs(spec, i));
  cached.push(await firstTokenMs(spec, i));
  plain.push(await firstTokenMs(undefined, i));
}
console.log(`first token (median of 9): unconstrained ${median(plain).toFixed(1)} ms, cached schema ${median(cached).toFixed(1)} ms, new schema ${median(fresh).toFixed(1)} ms (compile overhead ${(median(fresh) - median(cached)).toFixed(1)} ms); vocabulary setup once ${vocabMs.toFixed(0)} ms`);

// (3) violations over varied bounded schemas.
const ajv = new Ajv2020({ strict: false });
function variedSchema(i: number): Record<string, unknown> {
  const props: Record<string, unknown> = {};
  const n = 1 + (i % 4);
  for (let k = 0; k < n; k++) {
    const kind = (i + k) % 5;
    props[`p${k}_${i % 50}`] =
      kind === 0 ? { type: "boolean" }
      : kind === 1 ? { enum: ["x", "y", "z"].slice(0, 1 + (i % 3)) }
      : kind === 2 ? { type: "integer", minimum: 0, maximum: 9 }
      : kind === 3 ? { type: "array", items: { type: "boolean" }, maxItems: 1 + (i % 3) }
      : { type: "null" };
  }
  return { type: "object", properties: props, required: Object.keys(props), additionalProperties: false };
}
let violations = 0;
let cut = 0;
let done = 0;
const vStart = performance.now();
for (let base = 0; base < GENERATIONS; base += BATCH) {
  const jobs = Array.from({ length: Math.min(BATCH, GENERATIONS - base) }, async (_, j) => {
    const i = base + j;
    const schema = variedSchema(i);
    const m = await compiler.matcher({ type: "json_schema", schema, strict: true });
    try {
      const out = await ex.generate({ prompt: prompt(i), maxNewTokens: 96, stopTokenIds: stop, sampling: { temperature: 1, seed: i }, constraint: m }).collect();
      if (out.finishReason !== "stop_token") return void cut++;
      const text = tok.decode(out.tokens.slice(0, -1));
      let ok = false;
      try {
        ok = ajv.validate(schema, JSON.parse(text));
      } catch {
        ok = false;
      }
      if (!ok) violations++;
      done++;
    } finally {
      m.free();
    }
  });
  await Promise.all(jobs);
}
const vSeconds = (performance.now() - vStart) / 1000;
console.log(`${GENERATIONS} constrained generations over ${new Set(Array.from({ length: GENERATIONS }, (_, i) => JSON.stringify(variedSchema(i)))).size} schemas: ${violations} violations, ${done} complete, ${cut} cut by max tokens, ${vSeconds.toFixed(1)} s`);

const stats = ex.stats();
const measured = {
  executor: ex.version,
  executorLibrary: process.env.TRTD_EXECUTOR_LIB ?? "default",
  model: { dir: modelDir, vocabSize: ex.model.vocabSize, numLayers: ex.model.numLayers, hiddenSize: ex.model.hiddenSize },
};
const leaks = { kvBlocksUsed: stats.kvBlocksUsed, activeRequests: stats.activeRequests, liveMatchers: compiler.cacheStats.liveMatchers };
compiler.free();
tok.free();
await ex.close();
console.log(
  JSON.stringify({
    bench: "constrained-decoding",
    ...measured,
    batch: BATCH,
    threads: THREADS ?? "all",
    loadAverage1m: { start: load1AtStart, end: loadavg()[0] },
    longString: { constrainedTokPerS: Math.round(best.long.c), unconstrainedTokPerS: Math.round(best.long.u), ratio: Number(ratio(best.long).toFixed(3)), pairRatioMedian: Number(median(pairRatios.long).toFixed(3)) },
    jsonObject: { constrainedTokPerS: Math.round(best.object.c), unconstrainedTokPerS: Math.round(best.object.u), ratio: Number(ratio(best.object).toFixed(3)), pairRatioMedian: Number(median(pairRatios.object).toFixed(3)) },
    firstTokenMs: { unconstrained: Number(median(plain).toFixed(1)), cachedSchema: Number(median(cached).toFixed(1)), newSchema: Number(median(fresh).toFixed(1)) },
    vocabularySetupMs: Math.round(vocabMs),
    generations: GENERATIONS,
    violations,
    complete: done,
    cutByMaxTokens: cut,
    leaks,
  }),
);
