// The checks of tools/gpu/run_deploy.sh that talk to one running trtd deployment (launcher: nats-server, 1 prefill +
// 1 decode worker, an api that disaggregates every prompt) plus a second api on the same request plane started with
// --no-disaggregation (the aggregated path through the same decode worker):
//   node --import tsx --conditions=source tools/gpu/deploy-checks.ts --part openai|equality|overhead|kv \
//     --disagg-url http://127.0.0.1:P1 --agg-url http://127.0.0.1:P2 --model-dir DIR --out FILE.json [options]
// Parts:
//   openai    the official `openai` client: models.list, chat and completions, streamed and not (streamed text ==
//             whole text, greedy), usage counts, a typed 400 for n > 1.
//   equality  N prompts (default 40), greedy and seeded (temperature 0.9, seed 1234): the disaggregated api and the
//             aggregated api give the same text, usage and finish reason; /metrics must show the routing.
//   overhead  TTFT through HTTP (streamed chat, each api) against the executor's own TTFT for the same tokens (the
//             chat template applied by @trtd/tokenizer), alternated; an executor of the same library opened in this
//             process (tools/bench measureFrontendOverhead). Prompt of --overhead-tokens words (1 cl100k token each).
//   kv        KV handoff of a --kv-tokens prompt through the disaggregated api, one request at a time: the decode
//             worker's pull time (pull start -> import done, from the api's /metrics counters per request), its path
//             and bytes; plus TTFT through the disaggregated and the aggregated api for the same prompt.
// Writes one JSON object to --out (and prints it last); exit 0 when the part's checks passed (1 otherwise).
import { writeFileSync } from "node:fs";
import OpenAI from "openai";
import { createRandom, describe, measureFrontendOverhead, parsePrometheusText, randomText, sendStreamingRequest } from "@trtd/bench";

const argv = process.argv.slice(2);
function opt(name: string, fallback?: string): string {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
  if (fallback === undefined) throw new Error(`--${name} is required`);
  return fallback;
}
const num = (name: string, fallback: number) => Number(opt(name, String(fallback)));
const part = opt("part");
const disaggUrl = opt("disagg-url");
const aggUrl = opt("agg-url");
const modelDir = opt("model-dir");
const out = opt("out");
const timeoutMs = num("request-timeout-s", 120) * 1000;

const client = (url: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0, timeout: timeoutMs });
const disagg = client(disaggUrl);
const agg = client(aggUrl);

async function metrics(url: string): Promise<Record<string, number>> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
  return parsePrometheusText(await res.text(), ["trtd_routed_requests_total", "trtd_kv_transfer", "trtd_kv_transfers_total", "trtd_prefill_fallbacks_total"]);
}
const delta = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.entries(b).flatMap(([k, v]) => (v - (a[k] ?? 0) !== 0 ? [[k, v - (a[k] ?? 0)]] : [])));
const sumOf = (m: Record<string, number>, prefix: string) => Object.entries(m).filter(([k]) => k.startsWith(prefix)).reduce((n, [, v]) => n + v, 0);

interface Check {
  name: string;
  ok: boolean;
  detail?: string;
}

async function openaiPart(model: string): Promise<Record<string, unknown>> {
  const checks: Check[] = [];
  const check = async (name: string, fn: () => Promise<string | undefined>) => {
    const t0 = performance.now();
    try {
      const detail = await fn();
      checks.push({ name, ok: true, detail: `${detail ?? ""} (${(performance.now() - t0).toFixed(0)} ms)`.trim() });
    } catch (err) {
      checks.push({ name, ok: false, detail: (err as Error).message.slice(0, 400) });
    }
  };
  const expect = (cond: boolean, msg: string) => {
    if (!cond) throw new Error(msg);
  };
  await check("models.list", async () => {
    const ids = (await disagg.models.list()).data.map((m) => m.id);
    expect(ids.includes(model), `model ${model} not in ${JSON.stringify(ids)}`);
    return ids.join(",");
  });
  const messages = [{ role: "user" as const, content: "Tell me a story about a cat." }];
  let whole = "";
  await check("chat, not streamed", async () => {
    const r = await disagg.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0 });
    expect(r.object === "chat.completion", `object ${r.object}`);
    expect(r.choices[0].message.role === "assistant", "role");
    whole = r.choices[0].message.content ?? "";
    expect(whole.length > 0, "empty content");
    expect(r.usage?.completion_tokens === 16 || r.choices[0].finish_reason === "stop", `completion_tokens ${r.usage?.completion_tokens}, finish ${r.choices[0].finish_reason}`);
    return `finish ${r.choices[0].finish_reason}, usage ${JSON.stringify(r.usage)}`;
  });
  await check("chat, streamed with usage == not streamed", async () => {
    const stream = await disagg.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let chunks = 0;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const c of stream) {
      chunks++;
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) text += ch.delta.content ?? "";
    }
    expect(text === whole, `streamed ${JSON.stringify(text.slice(0, 80))} != whole ${JSON.stringify(whole.slice(0, 80))}`);
    expect(usage !== undefined && usage !== null, "no usage chunk");
    return `${chunks} chunks, usage ${JSON.stringify(usage)}`;
  });
  await check("completions, streamed == not streamed", async () => {
    const r = await disagg.completions.create({ model, prompt: "The quick brown fox", max_tokens: 12, temperature: 0 });
    expect(r.object === "text_completion", `object ${r.object}`);
    let streamed = "";
    for await (const c of await disagg.completions.create({ model, prompt: "The quick brown fox", max_tokens: 12, temperature: 0, stream: true })) streamed += c.choices[0]?.text ?? "";
    expect(streamed === r.choices[0].text, `streamed ${JSON.stringify(streamed.slice(0, 80))} != ${JSON.stringify(r.choices[0].text.slice(0, 80))}`);
    return `${r.usage?.completion_tokens} tokens`;
  });
  await check("aggregated api, chat streamed", async () => {
    let text = "";
    for await (const c of await agg.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0, stream: true })) text += c.choices[0]?.delta.content ?? "";
    expect(text === whole, "aggregated text differs from the disaggregated one");
    return "same text as disaggregated";
  });
  await check("n > 1 is a typed 400", async () => {
    const err = await disagg.chat.completions.create({ model, messages, n: 2 }).catch((e: unknown) => e);
    expect(err instanceof OpenAI.BadRequestError, `got ${String(err)}`);
    return `code ${(err as { code?: string }).code}`;
  });
  return { checks, passed: checks.filter((c) => c.ok).length, failed: checks.filter((c) => !c.ok).length, ok: checks.every((c) => c.ok) };
}

async function equalityPart(model: string): Promise<Record<string, unknown>> {
  const n = num("prompts", 40);
  const maxTokens = num("max-tokens", 24);
  const rng = createRandom(7);
  // Prompts of 4..(4 + spread) words, varied lengths; fixed seed, so the same on every run.
  const spread = num("prompt-words-spread", 200);
  const prompts = Array.from({ length: n }, () => randomText(rng, 4 + Math.floor(rng.next() * spread)));
  const modes = [
    { label: "greedy", sampling: { temperature: 0 } },
    { label: "seeded", sampling: { temperature: 0.9, seed: 1234 } },
  ];
  const results: Record<string, unknown>[] = [];
  const before = { d: await metrics(disaggUrl), a: await metrics(aggUrl) };
  let allOk = true;
  for (const m of modes) {
    const mismatches: Record<string, unknown>[] = [];
    let outputTokens = 0;
    const t0 = performance.now();
    for (const [i, content] of prompts.entries()) {
      const body = { model, messages: [{ role: "user" as const, content }], max_tokens: maxTokens, ...m.sampling };
      const d = await disagg.chat.completions.create(body);
      const a = await agg.chat.completions.create(body);
      outputTokens += d.usage?.completion_tokens ?? 0;
      const same = d.choices[0].message.content === a.choices[0].message.content && JSON.stringify(d.usage) === JSON.stringify(a.usage) && d.choices[0].finish_reason === a.choices[0].finish_reason;
      if (!same) mismatches.push({ prompt: i, disagg: d.choices[0].message.content?.slice(0, 120), agg: a.choices[0].message.content?.slice(0, 120), usage: [d.usage, a.usage] });
    }
    allOk &&= mismatches.length === 0;
    results.push({ mode: m.label, sampling: m.sampling, prompts: n, equal: n - mismatches.length, mismatches: mismatches.slice(0, 5), outputTokens, wallS: (performance.now() - t0) / 1000 });
  }
  const routedD = delta(before.d, await metrics(disaggUrl));
  const routedA = delta(before.a, await metrics(aggUrl));
  const disaggregated = routedD['trtd_routed_requests_total{mode="disaggregated"}'] ?? 0;
  const aggOnAgg = routedA['trtd_routed_requests_total{mode="aggregated"}'] ?? 0;
  // Every request on the disaggregated api must have been disaggregated, every one on the other aggregated.
  const routingOk = disaggregated === 2 * n && aggOnAgg === 2 * n;
  return { ok: allOk && routingOk, routingOk, results, metricsDisaggApi: routedD, metricsAggApi: routedA };
}

async function overheadPart(model: string): Promise<Record<string, unknown>> {
  const words = num("overhead-tokens", 1024);
  const reps = num("overhead-reps", 20);
  const warmup = num("overhead-warmup", 100); // steady state: the api's request path optimised by V8
  const prompt = randomText(createRandom(11), words);
  const executor = {
    threads: num("threads", 1),
    // The same settings as the stack's workers (run_deploy.sh passes both): chunking changes TTFT.
    maxBatchSize: num("max-batch-size", 64),
    maxTokensPerIteration: num("max-tokens-per-iteration", 2048),
    kvTokensPerBlock: 16,
    kvBlockCount: num("kv-block-count", 512),
    library: process.env.TRTD_EXECUTOR_LIB,
  };
  const res: Record<string, unknown> = { promptWords: words, reps, warmup, executorSettings: executor };
  for (const [key, url] of [["aggregated", aggUrl], ["disaggregated", disaggUrl]] as const) {
    const o = await measureFrontendOverhead({ baseUrl: url, model, endpoint: "chat", requestTimeoutMs: timeoutMs, modelDir, prompt, executor, reps, warmup });
    res[key] = o;
    console.error(`[overhead ${key}] prompt ${o.executorPromptTokens} tokens (HTTP usage ${o.httpPromptTokens}): TTFT p50 HTTP ${o.httpTtftMs.p50?.toFixed(2)} ms, executor ${o.executorTtftMs.p50?.toFixed(2)} ms, added ${o.overheadP50Ms?.toFixed(2)} ms`);
  }
  return { ok: true, ...res };
}

async function kvPart(model: string): Promise<Record<string, unknown>> {
  const words = num("kv-tokens", 2048);
  const reps = num("kv-reps", 10);
  const prompt = randomText(createRandom(13), words);
  const per: { pullMs: number; bytes: number; path: string; ttftMs: number }[] = [];
  const aggTtft: number[] = [];
  const opts = (url: string) => ({ baseUrl: url, model, endpoint: "chat" as const, requestTimeoutMs: timeoutMs });
  const ctx = { index: 0, scheduledAtMs: 0, runStart: 0 };
  let promptTokens: number | undefined;
  for (let i = 0; i <= reps; i++) {
    const m0 = await metrics(disaggUrl);
    const rec = await sendStreamingRequest(opts(disaggUrl), { prompt, maxTokens: 4 }, { ...ctx, runStart: performance.now() });
    const d = delta(m0, await metrics(disaggUrl));
    const a = await sendStreamingRequest(opts(aggUrl), { prompt, maxTokens: 4 }, { ...ctx, runStart: performance.now() });
    if (!rec.ok || !a.ok) throw new Error(`request failed: ${rec.error ?? a.error}`);
    promptTokens = rec.promptTokens;
    const paths = Object.entries(d).filter(([k, v]) => k.startsWith("trtd_kv_transfers_total{") && v > 0).map(([k]) => k.replace(/.*path="([^"]*)".*/, "$1"));
    if (i === 0) continue; // warm-up
    per.push({ pullMs: sumOf(d, "trtd_kv_transfer_seconds_total{") * 1000, bytes: sumOf(d, "trtd_kv_transfer_bytes_total{"), path: paths.join("+") || "none", ttftMs: rec.ttftMs! });
    aggTtft.push(a.ttftMs!);
  }
  const pulls = describe(per.map((p) => p.pullMs));
  return {
    ok: per.every((p) => p.path !== "none"),
    promptTokens,
    reps,
    pullMs: pulls,
    note: "pull time = decode worker's pull start -> import done (kv-transfer puller, Date.now() resolution: 1 ms), from trtd_kv_transfer_seconds_total per request",
    paths: [...new Set(per.map((p) => p.path))],
    bytesPerRequest: per[0]?.bytes,
    ttftDisaggMs: describe(per.map((p) => p.ttftMs)),
    ttftAggMs: describe(aggTtft),
    perRequest: per,
  };
}

const model = opt("model", "");
async function main(): Promise<number> {
  const served = model || (await disagg.models.list()).data[0].id;
  const t0 = performance.now();
  const parts: Record<string, (m: string) => Promise<Record<string, unknown>>> = { openai: openaiPart, equality: equalityPart, overhead: overheadPart, kv: kvPart };
  const fn = parts[part];
  if (!fn) throw new Error(`unknown --part ${part} (${Object.keys(parts).join(", ")})`);
  let result: Record<string, unknown>;
  try {
    result = await fn(served);
  } catch (err) {
    result = { ok: false, error: (err as Error).stack ?? String(err) };
  }
  const report: Record<string, unknown> = { part, model: served, modelDir, disaggUrl, aggUrl, wallS: (performance.now() - t0) / 1000, ...result };
  writeFileSync(out, JSON.stringify(report, null, 2) + "\n");
  console.log(JSON.stringify(report).slice(0, 4000));
  return report.ok === true ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
