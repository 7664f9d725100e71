/**
 * Tokenizer benchmark: encode throughput of @trtd/tokenizer with its native encoder (the default), with the
 * tiktoken WASM package (its fallback), js-tiktoken, and tiktoken's native Rust core through its Python package
 * (a child process on the same documents), all in the same run on the same corpus, ids checked equal first;
 * the 32k-token prompt on and off the main thread, and the incremental detokenizer's cost per token.
 * Run: nx run tokenizer:bench. The last output line is one JSON object.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { getEncoding } from "js-tiktoken";
import { Tiktoken } from "tiktoken";
import { findPythonTiktoken } from "../scripts/python-tiktoken.mjs";
import { markdownFiles } from "./markdown-corpus.js";
import { Tokenizer } from "../src/index.js";
import { encoderEngine } from "../src/tokenizer.js";

const CORPUS_BYTES = 2 * 1024 * 1024;
const DOC_CHARS = 4096;
const MIN_MS = 1500;

/** Real English and code: the Markdown docs of installed packages (sorted, so the same install gives the same corpus). */
function corpus(): string {
  // TOKENIZER_BENCH_CORPUS: a file written by an earlier run here, for machines without node_modules.
  const fromFile = process.env.TOKENIZER_BENCH_CORPUS;
  if (fromFile) return readFileSync(fromFile, "utf8");
  let text = "";
  for (const f of markdownFiles()) {
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
const engine = encoderEngine(ours);
if (engine !== "native") console.log("note: the native encoder is not in use (libtrtd_bpe.so not built?); 'native' below is WASM");
process.env.TRTD_TOKENIZER_NATIVE = "0";
const oursWasm = Tokenizer.fromEncoding("cl100k_base");
delete process.env.TRTD_TOKENIZER_NATIVE;
const ref = getEncoding("cl100k_base");
const cl100k = createRequire(import.meta.url)("tiktoken/encoders/cl100k_base.json") as { bpe_ranks: string; pat_str: string };
const wasmRef = new Tiktoken(cl100k.bpe_ranks, {}, cl100k.pat_str);

const sameIds = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};
let tokens = 0;
const oursIds: number[][] = [];
for (const d of docs) {
  const a = ours.encode(d, { disallowedSpecial: "text" });
  if (!sameIds(a, wasmRef.encode(d, [], []))) throw new Error("ids differ from tiktoken WASM");
  if (!sameIds(a, ref.encode(d, [], []))) throw new Error("ids differ from js-tiktoken");
  if (!sameIds(a, oursWasm.encode(d, { disallowedSpecial: "text" }))) throw new Error("ids differ from our WASM path");
  oursIds.push(a);
  tokens += a.length;
}
console.log(
  `corpus: ${(bytes / 1e6).toFixed(2)} MB in ${docs.length} docs of ${DOC_CHARS} chars, ${tokens} tokens (cl100k_base); ` +
    `ids equal to tiktoken WASM and js-tiktoken (engine: ${engine})`,
);

const oursMs = timePasses(() => {
  for (const d of docs) ours.encode(d, { disallowedSpecial: "text" });
});
const wasmMs = timePasses(() => {
  for (const d of docs) oursWasm.encode(d, { disallowedSpecial: "text" });
});
const refMs = timePasses(() => {
  for (const d of docs) ref.encode(d, [], []);
});
wasmRef.free();
oursWasm.free();

/** tiktoken's Rust core through its Python package, on the same documents: ids checked, then timed. */
function pythonTiktoken(): { ms: number; version: string } | { skipped: string } {
  const py = findPythonTiktoken();
  if (!py.python) return { skipped: py.reason };
  const dir = mkdtempSync(join(tmpdir(), "trtd-tok-bench-"));
  try {
    const lines: string[] = [];
    for (const line of cl100k.bpe_ranks.split("\n")) {
      if (!line) continue;
      const parts = line.split(" ");
      for (let i = 2; i < parts.length; i++) lines.push(`${parts[i]} ${Number(parts[1]) + i - 2}`);
    }
    writeFileSync(join(dir, "ranks"), lines.join("\n") + "\n");
    writeFileSync(join(dir, "pattern"), cl100k.pat_str);
    writeFileSync(join(dir, "docs.json"), JSON.stringify(docs));
    const script = resolve(import.meta.dirname, "../test/reference/tiktoken_ids.py");
    const args = [script, join(dir, "ranks"), join(dir, "pattern"), join(dir, "docs.json"), join(dir, "ids.bin"), "--time", String(MIN_MS / 1000)];
    const r = spawnSync(py.python, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${py.python} tiktoken_ids.py failed: ${r.stderr}`);
    const bin = readFileSync(join(dir, "ids.bin"));
    const words = new Uint32Array(bin.buffer, bin.byteOffset, bin.byteLength / 4);
    let at = 0;
    for (const a of oursIds) {
      const n = words[at++]!;
      if (!sameIds(a, words.subarray(at, at + n))) throw new Error("ids differ from Python tiktoken");
      at += n;
    }
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { tokens: number; medianSeconds: number };
    if (out.tokens !== tokens) throw new Error(`Python tiktoken counted ${out.tokens} tokens, we ${tokens}`);
    return { ms: out.medianSeconds * 1000, version: py.version };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const pyResult = pythonTiktoken();

const rate = (ms: number) => ({ mbPerS: bytes / 1e6 / (ms / 1000), tokensPerS: tokens / (ms / 1000) });
const o = rate(oursMs);
const w = rate(wasmMs);
const r = rate(refMs);
const p = "ms" in pyResult ? rate(pyResult.ms) : undefined;
const line = (name: string, x: { mbPerS: number; tokensPerS: number }) =>
  console.log(`encode ${name.padEnd(40)} ${x.mbPerS.toFixed(2).padStart(6)} MB/s, ${(x.tokensPerS / 1e6).toFixed(3)} M tokens/s`);
line(`@trtd/tokenizer (${engine}, the default)`, o);
line("@trtd/tokenizer (tiktoken WASM fallback)", w);
line("js-tiktoken", r);
if (p && "version" in pyResult) line(`tiktoken ${pyResult.version} (Python, Rust core)`, p);
else console.log(`encode tiktoken (Python, Rust core): skipped: ${"skipped" in pyResult ? pyResult.skipped : ""}`);
if (p) console.log(`ratio ours / Python tiktoken core: ${(o.tokensPerS / p.tokensPerS).toFixed(2)}x (target 0.8x); WASM / Python: ${(w.tokensPerS / p.tokensPerS).toFixed(2)}x`);
console.log(`ratio ours / WASM: ${(o.tokensPerS / w.tokensPerS).toFixed(2)}x; ours / js-tiktoken: ${(o.tokensPerS / r.tokensPerS).toFixed(2)}x`);

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
  engine,
  corpusMB: +(bytes / 1e6).toFixed(3),
  corpusTokens: tokens,
  encodeMBps: +o.mbPerS.toFixed(2),
  encodeTokensPerS: Math.round(o.tokensPerS),
  wasmEncodeTokensPerS: Math.round(w.tokensPerS),
  baselineJsTiktokenMBps: +r.mbPerS.toFixed(2),
  baselineJsTiktokenTokensPerS: Math.round(r.tokensPerS),
  baselinePythonTiktokenTokensPerS: p ? Math.round(p.tokensPerS) : null,
  pythonTiktoken: "version" in pyResult ? pyResult.version : `skipped: ${"skipped" in pyResult ? pyResult.skipped : ""}`,
  ratioVsPythonTiktoken: p ? +(o.tokensPerS / p.tokensPerS).toFixed(2) : null,
  ratioWasmVsPythonTiktoken: p ? +(w.tokensPerS / p.tokensPerS).toFixed(2) : null,
  ratioVsWasm: +(o.tokensPerS / w.tokensPerS).toFixed(2),
  ratioVsJsTiktoken: +(o.tokensPerS / r.tokensPerS).toFixed(2),
  prompt32kTokens: promptTokens,
  prompt32kSyncEncodeMs: +syncMs.toFixed(2),
  prompt32kEncodeAsyncWallMs: +asyncMs.toFixed(2),
  detokenizerNsPerToken: Math.round(ns(plainMs)),
  detokenizerWithStopsNsPerToken: Math.round(ns(stopMs)),
  baselineNaiveDecodeNsPerToken: Math.round(ns(naiveMs)),
};
console.log(JSON.stringify(figures));
