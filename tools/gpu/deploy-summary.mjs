// The table printed last by tools/gpu/run_deploy.sh: reads the JSON files of $OUT and computes every target's
// met / missed from the measurements in them (nothing here is a result by itself). Writes $OUT/summary.json.
//   node tools/gpu/deploy-summary.mjs OUT_DIR
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const out = process.argv[2] ?? "/tmp/trtd-deploy-out";
const read = (f) => {
  const p = join(out, f);
  if (!existsSync(p)) return undefined;
  try {
    return JSON.parse(readFileSync(p, "utf8"));
  } catch {
    return undefined;
  }
};
const status = read("status.json") ?? {};
const f = (v, d = 2) => (typeof v === "number" && !Number.isNaN(v) ? (Number.isFinite(v) ? v.toFixed(d) : String(v)) : "-");
const rows = [];
const targets = [];
const row = (part, what, result) => rows.push([part, what, result]);
// A target: met only when the value was measured and satisfies the bound.
// `undecided(met)`: true when the value is only a bound that cannot decide this outcome (e.g. saturated sweeps).
const target = (name, value, op, bound, unit, extra = "", undecided = () => false) => {
  const measured = typeof value === "number" && !Number.isNaN(value);
  const met = measured && (op === ">=" ? value >= bound : op === "<=" ? value <= bound : value < bound);
  const verdict = !measured ? "NOT MEASURED" : undecided(met) ? "UNDECIDED" : met ? "MET" : "MISSED";
  targets.push({ name, value: measured ? (Number.isFinite(value) ? value : String(value)) : null, op, bound, unit, met: verdict === "MET", verdict, extra });
};

const stack = read("stack.json");
if (stack) row("stack", "launcher (nats, 1 prefill + 1 decode) + aggregated api up", `${stack.stackUpS} s`);

const oa = read("openai.json");
if (oa) {
  row("openai", "official openai client checks", `${oa.passed ?? 0} passed, ${oa.failed ?? 0} failed${oa.error ? " (error: " + String(oa.error).split("\n")[0] + ")" : ""}`);
  for (const c of oa.checks ?? []) if (!c.ok) row("openai", `FAIL ${c.name}`, c.detail);
}

const eq = read("equality.json");
if (eq) {
  for (const r of eq.results ?? []) row("equality", `disagg == agg, ${r.mode}`, `${r.equal}/${r.prompts} equal (${r.outputTokens} tokens, ${f(r.wallS, 1)} s)`);
  row("equality", "routing (/metrics)", eq.routingOk ? "every request routed as asked" : `NOT as asked: ${JSON.stringify(eq.metricsDisaggApi)} / ${JSON.stringify(eq.metricsAggApi)}`);
  if (eq.error) row("equality", "error", String(eq.error).split("\n")[0]);
}

const ov = read("overhead.json");
if (ov) {
  for (const k of ["aggregated", "disaggregated"]) {
    const o = ov[k];
    if (!o) continue;
    row("overhead", `${k} api, ${o.executorPromptTokens}-token prompt, TTFT p50`, `HTTP ${f(o.httpTtftMs?.p50)} ms vs executor ${f(o.executorTtftMs?.p50)} ms: +${f(o.overheadP50Ms)} ms (${o.reps} reps)`);
    target(`TTFT added by the stack, ${o.executorPromptTokens}-token prompt, p50 (${k} api)`, o.overheadP50Ms, "<=", 2, "ms");
  }
  if (ov.error) row("overhead", "error", String(ov.error).split("\n")[0]);
}
if (!ov?.aggregated) target("TTFT added by the stack, 1k-token prompt, p50", undefined, "<=", 2, "ms");

const kv = read("kv.json");
if (kv) {
  row("kv", `KV handoff, ${kv.promptTokens}-token prompt, pull start -> import done`, `p50 ${f(kv.pullMs?.p50)} ms, p90 ${f(kv.pullMs?.p90)} ms, max ${f(kv.pullMs?.max)} ms; path ${(kv.paths ?? []).join(",")}; ${kv.bytesPerRequest} bytes`);
  row("kv", "TTFT same prompt, disagg vs agg api (p50)", `${f(kv.ttftDisaggMs?.p50)} vs ${f(kv.ttftAggMs?.p50)} ms`);
  if (kv.error) row("kv", "error", String(kv.error).split("\n")[0]);
}
target(`KV handoff (pull start -> import done), ${kv?.promptTokens ?? "2k"}-token prompt, same GPU, p50`, kv?.pullMs?.p50, "<", 5, "ms", kv?.paths ? `path ${kv.paths.join(",")}` : "");

for (const [part, label] of [["bench-long", "long prompts + short outputs"], ["bench-short", "short prompts + long outputs"]]) {
  const r = read(join(part, "results.json"));
  if (!r) {
    if (part === "bench-long") target("goodput disagg / agg, long-prompt mix", undefined, ">=", 1.3, "x");
    continue;
  }
  const slo = r.slo ?? {};
  row(part, `${label}: ${JSON.stringify(r.workload?.dataset ?? {})}`, `SLO TTFT <= ${slo.ttftMs} ms, TPOT <= ${slo.tpotMs} ms`);
  const g = {};
  const lowestRate = {};
  for (const s of r.sweeps ?? []) {
    const key = /disagg/.test(s.legend ?? s.name) ? "disagg" : "agg";
    g[key] = s.goodput;
    lowestRate[key] = Math.min(...(s.points ?? []).map((p) => p.rate));
    row(part, `${s.legend} goodput`, `${f(s.goodput?.interpolatedRate)} req/s (highest passing ${f(s.goodput?.highestPassingRate ?? s.goodput?.sweptRate)}${s.goodput?.saturated ? ", saturated" : ""})`);
    const routed = {};
    for (const p of s.points ?? []) for (const [k, v] of Object.entries(p.serverMetrics ?? {})) {
      const m = /^trtd_routed_requests_total\{mode="([^"]+)"\}$/.exec(k);
      if (m) routed[m[1]] = (routed[m[1]] ?? 0) + v;
    }
    row(part, `${s.legend} routing over the sweep (/metrics)`, Object.entries(routed).map(([k, v]) => `${k} ${v}`).join(", ") || "-");
    for (const p of s.points ?? []) {
      row(part, `  ${s.legend} @ ${p.rate} req/s`, `${p.completed}/${p.sent} ok; TTFT p50/p90/p99 ${f(p.ttftMs?.p50, 0)}/${f(p.ttftMs?.p90, 0)}/${f(p.ttftMs?.p99, 0)} ms; ITL p50/p90/p99 ${f(p.itlMs?.p50, 1)}/${f(p.itlMs?.p90, 1)}/${f(p.itlMs?.p99, 1)} ms; SLO ${f((p.sloAttainment ?? 0) * 100, 0)}%`);
    }
  }
  // Aggregated goodput 0 (it missed the SLO at its lowest swept rate r) and disaggregated > 0: aggregated's goodput
  // lies somewhere below r, so the ratio is only a lower bound, disagg / r (it can decide "met", never "missed");
  // both 0: nothing measured (sweep lower rates).
  const gd = g.disagg?.interpolatedRate;
  const ga = g.agg?.interpolatedRate;
  const aggBelowSweep = ga === 0 && gd > 0 && Number.isFinite(lowestRate.agg);
  const ratio = typeof gd === "number" && typeof ga === "number" ? (ga > 0 ? gd / ga : aggBelowSweep ? gd / lowestRate.agg : undefined) : undefined;
  const ratioNote = [
    aggBelowSweep ? `aggregated missed the SLO at the lowest swept rate (${lowestRate.agg} req/s): the ratio is only a lower bound, sweep lower rates for a figure` : "",
    g.agg?.saturated || g.disagg?.saturated ? "a sweep saturated (every rate passed): the ratio is a bound" : "",
  ].filter(Boolean).join("; ");
  row(part, "charts", ["ttft.svg", "tpot.svg", "attainment.svg", "throughput.svg"].filter((c) => existsSync(join(out, part, c))).join(", ") || "none");
  // Both saturated: the ratio decides nothing. Only disagg saturated: a lower bound (decides "met" only). Only agg
  // saturated: an upper bound (decides "missed" only).
  const undecided = (met) =>
    (g.disagg?.saturated && g.agg?.saturated) || (g.disagg?.saturated && !met) || (g.agg?.saturated && !g.disagg?.saturated && met) ||
    (aggBelowSweep && !met);
  if (part === "bench-long") target("goodput disagg / agg, long-prompt mix", ratio, ">=", 1.3, "x", ratioNote, undecided);
  else row(part, "goodput disagg / agg", `${f(ratio)}${ratioNote ? " (" + ratioNote + ")" : ""}`);
}

const w = Math.max(...rows.map((r) => r[0].length), 5);
const w2 = Math.max(...rows.map((r) => r[1].length), 10);
console.log("part".padEnd(w), "what".padEnd(w2), "result");
for (const r of rows) console.log(r[0].padEnd(w), r[1].padEnd(w2), r[2]);
console.log("\nparts:", Object.entries(status).map(([k, v]) => `${k} ${v}`).join("; ") || "none recorded");
console.log("\ntargets (issue 16):");
for (const t of targets) console.log(`  ${t.verdict.padEnd(12)} ${t.name}: ${t.value === null ? "-" : f(t.value)} ${t.unit} (target ${t.op} ${t.bound} ${t.unit})${t.extra ? "; " + t.extra : ""}`);
writeFileSync(join(out, "summary.json"), JSON.stringify({ status, rows, targets }, null, 2) + "\n");
