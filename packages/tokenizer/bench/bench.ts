/**
 * Tokenizer benchmark: encode throughput of @trtd/tokenizer (tiktoken WASM) against js-tiktoken in the same run,
 * the 32k-token prompt on and off the main thread, and the incremental detokenizer's cost per token.
 * Run: nx run tokenizer:bench. The last output line is one JSON object.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { join, resolve } from "node:path";
import { getEncoding } from "js-tiktoken";
import { Tokenizer } from "../src/index.js";

const ROOT = resolve(import.meta.dirname, "../../..");
const CORPUS_BYTES = 2 * 1024 * 1024;
const DOC_CHARS = 4096;
const MIN_MS = 1500;

/** Real English and code: the Markdown docs of installed packages (sorted, so the same install gives the same corpus). */
function corpus(): string {
  // TOKENIZER_BENCH_CORPUS: a file written by an earlier run here, for machines without node_modules.
  const fromFile = process.env.TOKENIZER_BENCH_CORPUS;
  if (fromFile) return readFileSync(fromFile, "utf8");
  const files: string[] = [];
  const walk = (dir: string, depth: number): void => {
    if (depth > 4) return;
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p, depth + 1);
      else if (name.endsWith(".md") && st.size > 2048) files.push(p);
    }
  };
  walk(join(ROOT, "node_modules"), 0);
  let text = "";
  for (const f of files) {
    if (Buffer.byteLength(text) >= CORPUS_BYTES * 0.9) break;
    text += readFileSync(f, "utf8") + "\n";
  }
  // a tenth non-Latin text: CJK, Cyrillic, Arabic, emoji
  const intl = "模型在预填充阶段处理整个提示，然后逐个生成令牌。Модель обрабатывает запрос. النموذج يعالج الطلب 🚀🦜 ";
  while (Buffer.byteLength(text) < CORPUS_BYTES) text += intl;
  return text;
}

function docsOf(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += DOC_CHARS) out.push(text.slice(i, i + DOC_CHARS));
  return out;
}

/** Runs `fn` repeatedly for at least MIN_MS (and 5 passes); returns the median ms per pass. */
function timePasses(fn: () => void): number {
  fn(); // warm-up
  const times: number[] = [];
  const start = performance.now();
  while (performance.now() - start < MIN_MS || times.length < 5) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

const text = corpus();
if (process.env.TOKENIZER_BENCH_WRITE_CORPUS) writeFileSync(process.env.TOKENIZER_BENCH_WRITE_CORPUS, text);
const docs = docsOf(text);
const bytes = Buffer.byteLength(text);
const ours = Tokenizer.fromEncoding("cl100k_base");
const ref = getEncoding("cl100k_base");

let tokens = 0;
for (const d of docs) {
  const a = ours.encode(d, { disallowedSpecial: "text" });
  const b = ref.encode(d, [], []);
  if (a.length !== b.length || a.some((x, i) => x !== b[i])) throw new Error("ids differ from js-tiktoken");
  tokens += a.length;
}
console.log(`corpus: ${(bytes / 1e6).toFixed(2)} MB in ${docs.length} docs of ${DOC_CHARS} chars, ${tokens} tokens (cl100k_base); ids equal to js-tiktoken`);

const oursMs = timePasses(() => {
  for (const d of docs) ours.encode(d, { disallowedSpecial: "text" });
});
const refMs = timePasses(() => {
  for (const d of docs) ref.encode(d, [], []);
});
const rate = (ms: number) => ({ mbPerS: bytes / 1e6 / (ms / 1000), tokensPerS: tokens / (ms / 1000) });
const o = rate(oursMs);
const r = rate(refMs);
console.log(`encode @trtd/tokenizer: ${o.mbPerS.toFixed(2)} MB/s, ${(o.tokensPerS / 1e6).toFixed(3)} M tokens/s`);
console.log(`encode js-tiktoken:     ${r.mbPerS.toFixed(2)} MB/s, ${(r.tokensPerS / 1e6).toFixed(3)} M tokens/s`);
console.log(`ratio (ours / js-tiktoken): ${(o.tokensPerS / r.tokensPerS).toFixed(2)}x`);

// 32k-token prompt: one sync encode (blocks the loop) vs encodeAsync (worker thread) wall time.
let long = "";
for (const d of docs) {
  long += d;
  if (long.length > 32_768 * 8) break;
}
const prompt = ours.decode(ours.encode(long, { disallowedSpecial: "text" }).slice(0, 32_768));
const promptTokens = ours.encode(prompt, { disallowedSpecial: "text" }).length;
const syncMs = timePasses(() => ours.encode(prompt, { disallowedSpecial: "text" }));
await ours.encodeAsync(prompt, { disallowedSpecial: "text" });
const asyncTimes: number[] = [];
for (let i = 0; i < 10; i++) {
  const t0 = performance.now();
  await ours.encodeAsync(prompt, { disallowedSpecial: "text" });
  asyncTimes.push(performance.now() - t0);
}
asyncTimes.sort((a, b) => a - b);
const asyncMs = asyncTimes[5]!;
console.log(`prompt of ${promptTokens} tokens: sync encode ${syncMs.toFixed(1)} ms on the event loop; encodeAsync ${asyncMs.toFixed(1)} ms wall (off the loop)`);

// Detokenizer: one id per push (the streaming case), over the corpus' token stream.
const stream = docs.slice(0, 400).flatMap((d) => ours.encode(d, { disallowedSpecial: "text" }));
const detokMs = (stop: string[]) =>
  timePasses(() => {
    const d = ours.createDetokenizer({ stop });
    for (const id of stream) d.push([id]);
    d.flush();
    if (d.stoppedBy !== undefined) throw new Error("the detokenizer stopped early; the figure would be wrong");
  });
// Stop strings whose first characters are common (so text is held back and released often) but which never
// occur whole, so every token is processed.
const stops = ["\n\nUser: STOP", "The end of it all.", "```stop"];
const streamText = ours.decode(stream);
for (const s of stops) if (streamText.includes(s)) throw new Error(`stop string ${JSON.stringify(s)} occurs in the corpus`);
const plainMs = detokMs([]);
const stopMs = detokMs(stops);
// Baseline: decoding each token on its own (what a naive streamer does; wrong for characters split across tokens).
const naiveMs = timePasses(() => {
  for (const id of stream) ours.decode([id]);
});
const ns = (ms: number) => (ms * 1e6) / stream.length;
console.log(
  `detokenizer: ${ns(plainMs).toFixed(0)} ns/token, with 3 stop strings ${ns(stopMs).toFixed(0)} ns/token; ` +
    `naive per-token decode() ${ns(naiveMs).toFixed(0)} ns/token (ratio ${(naiveMs / plainMs).toFixed(2)}x)`,
);
ours.free();

const figures = {
  bench: "tokenizer",
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model ?? "unknown",
  cores: availableParallelism(),
  encoding: "cl100k_base",
  corpusMB: +(bytes / 1e6).toFixed(3),
  corpusTokens: tokens,
  encodeMBps: +o.mbPerS.toFixed(2),
  encodeTokensPerS: Math.round(o.tokensPerS),
  baselineJsTiktokenMBps: +r.mbPerS.toFixed(2),
  baselineJsTiktokenTokensPerS: Math.round(r.tokensPerS),
  ratioVsJsTiktoken: +(o.tokensPerS / r.tokensPerS).toFixed(2),
  prompt32kTokens: promptTokens,
  prompt32kSyncEncodeMs: +syncMs.toFixed(2),
  prompt32kEncodeAsyncWallMs: +asyncMs.toFixed(2),
  detokenizerNsPerToken: Math.round(ns(plainMs)),
  detokenizerWithStopsNsPerToken: Math.round(ns(stopMs)),
  baselineNaiveDecodeNsPerToken: Math.round(ns(naiveMs)),
};
console.log(JSON.stringify(figures));
