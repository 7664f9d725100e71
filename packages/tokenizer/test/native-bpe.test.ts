// The native BPE encoder against tiktoken itself: the WASM package in-process (same ranks, same pattern) on a
// seeded fuzz of Unicode text and on real Markdown, special-token handling against tiktoken's own
// `encode(text, allowed, disallowed)`, and Python tiktoken (its native Rust core) when it can be imported.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { Tiktoken } from "tiktoken";
import { afterAll, describe, expect, it } from "vitest";
import { LLAMA3_PATTERN, SpecialTokenNotAllowedError, Tokenizer } from "../src/index.js";
import { bpeLibraryError, loadBpeLibrary, QWEN2_PATTERN } from "../src/native-bpe.js";
import { GPT2_PATTERN } from "../src/tokenizer-json.js";
import { encoderEngine } from "../src/tokenizer.js";
import { findPythonTiktoken } from "../scripts/python-tiktoken.mjs";
import { cl100kRanksText, llama3Specials, prng, TempDirs } from "./fixtures.js";
import { markdownFiles } from "../bench/markdown-corpus.js";

const require = createRequire(import.meta.url);
const dirs = new TempDirs();
const owned: Array<{ free(): void }> = [];
afterAll(() => {
  for (const o of owned.splice(0)) o.free();
  dirs.cleanup();
});
function own<T extends { free(): void }>(x: T): T {
  owned.push(x);
  return x;
}

/** `<base64> <rank>` lines of a bundled encoding. */
function ranksTextOf(name: string): string {
  const json = require(`tiktoken/encoders/${name}.json`) as { bpe_ranks: string };
  const lines: string[] = [];
  for (const line of json.bpe_ranks.split("\n")) {
    if (!line) continue;
    const parts = line.split(" ");
    const offset = Number(parts[1]);
    for (let i = 2; i < parts.length; i++) lines.push(`${parts[i]} ${offset + i - 2}`);
  }
  return lines.join("\n") + "\n";
}

// White_Space (Rust regex \s) and look-alikes that are not: U+FEFF, U+200B, U+180E, U+2060.
const SPACES = [0x9, 0xa, 0xb, 0xc, 0xd, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2005, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff, 0x200b, 0x180e, 0x2060];
const DIGITS = ["0", "7", "١", "٣", "۹", "०", "½", "²", "Ⅻ", "０", "𝟘", "𐒠", "〇", "፲"];
const CONTRACTIONS = ["'s", "'S", "'ſ", "'t", "'T", "'re", "'RE", "'rE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL", "'d", "'D", "'K", "'ſt", "''s", "’s", "'x", "'"];
const WORDS = ["hello", " world", "Ünïcödé", " naïve", "东京", "Москва", "مرحبا", "שלום", "ไทย", "e\u0301", "Z\u0351\u0362", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "fn(x)", "{}", " ...", "!!!", "$$", "\\n", "_", "a_b"];

/** Random text from all planes and the tricky parts of the split pattern. */
function fuzzText(rand: () => number, parts: number): string {
  let s = "";
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  for (let i = 0; i < parts; i++) {
    const r = rand();
    if (r < 0.15) {
      // any code point, any plane (surrogates: lone ones are in the mix too)
      const cp = Math.floor(rand() * 0x110000);
      s += cp >= 0xd800 && cp < 0xe000 ? String.fromCharCode(cp) : String.fromCodePoint(cp);
    } else if (r < 0.3) {
      const n = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < n; k++) s += String.fromCodePoint(pick(SPACES));
    } else if (r < 0.4) {
      s += pick(["\r\n", "\n", "\r", "\n\n", " \n", "\t\r\n ", "\n \n"]);
    } else if (r < 0.52) {
      const n = 1 + Math.floor(rand() * 6);
      for (let k = 0; k < n; k++) s += pick(DIGITS);
    } else if (r < 0.64) {
      s += pick(CONTRACTIONS);
    } else if (r < 0.7) {
      s += String.fromCodePoint(0x300 + Math.floor(rand() * 0x70)); // combining marks
    } else if (r < 0.76) {
      s += String.fromCodePoint(0x1f300 + Math.floor(rand() * 0x700)); // emoji
    } else if (r < 0.8) {
      s += String.fromCodePoint(0x20 + Math.floor(rand() * 0x5f)); // ASCII punctuation and letters
    } else {
      s += pick(WORDS);
    }
  }
  return s;
}

function fuzzTexts(seed: number, count: number): string[] {
  const rand = prng(seed);
  const out = [" ", "\n", "  ", " \n", "x ", "  x", "\r\n\r\n", "'s", "'ſ", "1234567", " 1", "ſ", "\u0085x", "\ufeff x", "a\ud800b", "\udc00"];
  for (let i = 0; i < count; i++) out.push(fuzzText(rand, 1 + Math.floor(rand() * 40)));
  return out;
}

/** Long pieces (the heap-based merge) and long whitespace runs. */
function longPieces(): string[] {
  const rand = prng(11);
  const letters = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join("");
  return [
    letters("abcdefghijklmnopqrstuvwxyz", 3000),
    letters("ab", 2000),
    "a".repeat(5000),
    letters("模型在预填充阶段处理整个提示然后逐个生成令牌", 2000),
    letters("абвгдежзийклмнопрстуфхцчшщъыьэюя", 1500),
    " ".repeat(3000) + "x",
    "\t \u00a0".repeat(700) + "\n" + " ".repeat(300),
    letters("!@#$%^&*()-=+[]{};:,.<>/?|~`", 2500),
  ];
}

/** Real English and code: Markdown docs of installed packages (sorted), up to `bytes`. */
function markdownCorpus(bytes: number): string {
  let text = "";
  for (const f of markdownFiles()) {
    if (text.length >= bytes) break;
    text += readFileSync(f, "utf8") + "\n";
  }
  return text;
}

const CASES = [
  { name: "cl100k_base", ranks: () => ranksTextOf("cl100k_base"), pattern: LLAMA3_PATTERN },
  { name: "r50k_base (GPT-2 pattern)", ranks: () => ranksTextOf("r50k_base"), pattern: GPT2_PATTERN },
  { name: "cl100k ranks, Qwen2 pattern", ranks: () => ranksTextOf("cl100k_base"), pattern: QWEN2_PATTERN },
];

describe("native BPE library", () => {
  it("is built and loads (npm run build:native / the globalSetup)", () => {
    expect(loadBpeLibrary(), bpeLibraryError()).not.toBeNull();
  });

  it("is used for the patterns it implements and not for others", () => {
    const expectations: Array<[string, "native" | "wasm"]> = [
      ["cl100k_base", "native"],
      ["gpt2", "native"],
      ["r50k_base", "native"],
      ["p50k_base", "native"],
      ["p50k_edit", "native"],
      ["o200k_base", "wasm"],
    ];
    for (const [name, engine] of expectations) expect([name, encoderEngine(own(Tokenizer.fromEncoding(name)))]).toEqual([name, engine]);
    const ranks = cl100kRanksText();
    expect(encoderEngine(own(Tokenizer.fromTiktokenRanks(ranks)))).toBe("native");
    expect(encoderEngine(own(Tokenizer.fromTiktokenRanks(ranks, { pattern: QWEN2_PATTERN })))).toBe("native");
    // the same pattern with one character changed is not recognised
    expect(encoderEngine(own(Tokenizer.fromTiktokenRanks(ranks, { pattern: LLAMA3_PATTERN.replace("{1,3}", "{1,4}") })))).toBe("wasm");
  });
});

describe.each(CASES)("same ids as tiktoken WASM: $name", ({ ranks, pattern }) => {
  const text = ranks();
  const ref = own(new Tiktoken(text, {}, pattern));
  const ours = own(Tokenizer.fromTiktokenRanks(text, { pattern }));

  it("on 4000 seeded fuzz strings (all planes, whitespace runs, digits, contractions, marks, emoji, CR/LF)", () => {
    expect(encoderEngine(ours)).toBe("native");
    let mismatches = 0;
    const first: string[] = [];
    for (const s of fuzzTexts(1234, 4000)) {
      const a = ours.encode(s);
      const b = Array.from(ref.encode_ordinary(s));
      if (a.length !== b.length || a.some((x, i) => x !== b[i])) {
        mismatches++;
        if (first.length < 3) first.push(JSON.stringify(s));
      }
    }
    expect({ mismatches, first }).toEqual({ mismatches: 0, first: [] });
  });

  it("on long pieces and long whitespace runs", () => {
    for (const s of longPieces()) expect(ours.encode(s)).toEqual(Array.from(ref.encode_ordinary(s)));
  });

  it("on 512 KB of Markdown docs (whole, and in 4 KiB documents)", () => {
    const md = markdownCorpus(512 * 1024);
    expect(md.length).toBeGreaterThan(100_000);
    expect(ours.encode(md, { disallowedSpecial: "text" })).toEqual(Array.from(ref.encode_ordinary(md)));
    for (let i = 0; i < md.length; i += 4096) {
      const d = md.slice(i, i + 4096);
      expect(ours.encode(d, { disallowedSpecial: "text" })).toEqual(Array.from(ref.encode_ordinary(d)));
    }
  });
});

describe("special tokens: the same results as tiktoken's encode(text, allowed, disallowed)", () => {
  const ranks = cl100kRanksText();
  const specials = llama3Specials();
  const specialsObj = Object.fromEntries(specials.map(([id, t]) => [t, id]));
  const ref = own(new Tiktoken(ranks, specialsObj, LLAMA3_PATTERN));
  const native = own(Tokenizer.fromTiktokenRanks(ranks, { specialTokens: specialsObj }));
  const prev = process.env.TRTD_TOKENIZER_NATIVE;
  process.env.TRTD_TOKENIZER_NATIVE = "0";
  const wasm = own(Tokenizer.fromTiktokenRanks(ranks, { specialTokens: specialsObj }));
  if (prev === undefined) delete process.env.TRTD_TOKENIZER_NATIVE;
  else process.env.TRTD_TOKENIZER_NATIVE = prev;

  function refResult(text: string, allowed: "all" | string[], disallowed: "all" | string[]): number[] | string {
    try {
      return Array.from(ref.encode(text, allowed, disallowed));
    } catch (e) {
      const m = /not allowed: (.*)$/.exec((e as Error).message);
      if (!m) throw e;
      return `not allowed: ${m[1]}`;
    }
  }
  function ourResult(tok: Tokenizer, text: string, allowed: "all" | string[], mode: "error" | "text"): number[] | string {
    try {
      return tok.encode(text, { allowedSpecial: allowed, disallowedSpecial: mode, addBos: false });
    } catch (e) {
      if (e instanceof SpecialTokenNotAllowedError) return `not allowed: ${e.token}`;
      throw e;
    }
  }

  it("on 400 seeded texts with specials (whole, split across, adjacent), for both encoders", () => {
    expect([encoderEngine(native), encoderEngine(wasm)]).toEqual(["native", "wasm"]);
    const rand = prng(99);
    const names = specials.slice(0, 12).map(([, t]) => t);
    let errors = 0;
    let compared = 0;
    for (let i = 0; i < 400; i++) {
      let s = "";
      const n = 1 + Math.floor(rand() * 8);
      for (let k = 0; k < n; k++) {
        const r = rand();
        if (r < 0.4) s += names[Math.floor(rand() * names.length)];
        else if (r < 0.5) s += names[Math.floor(rand() * names.length)]!.slice(0, 5); // a broken special
        else s += fuzzText(rand, 1 + Math.floor(rand() * 5));
      }
      const subset = names.filter(() => rand() < 0.3);
      for (const [allowed, mode] of [
        ["all", "error"],
        [[], "error"],
        [[], "text"],
        [subset, "error"],
        [subset, "text"],
      ] as Array<["all" | string[], "error" | "text"]>) {
        const want = refResult(s, allowed, mode === "error" ? "all" : []);
        if (typeof want === "string") errors++;
        expect(ourResult(native, s, allowed, mode)).toEqual(want);
        expect(ourResult(wasm, s, allowed, mode)).toEqual(want);
        compared++;
      }
    }
    expect(compared).toBe(2000);
    expect(errors).toBeGreaterThan(300); // the refusal path was exercised, not only the happy one
  });
});

describe("encodeAsync with the native encoder in the worker", () => {
  it("gives the ids of encode, with specials; free() stops the worker", async () => {
    const ranks = cl100kRanksText();
    const specialsObj = Object.fromEntries(llama3Specials().map(([id, t]) => [t, id]));
    const tok = Tokenizer.fromTiktokenRanks(ranks, { specialTokens: specialsObj });
    try {
      expect(encoderEngine(tok)).toBe("native");
      const pieces = fuzzTexts(5, 300);
      const text = pieces.join("<|eot_id|>");
      expect(text.length).toBeGreaterThan(16_384);
      const ids = await tok.encodeAsync(text, { allowedSpecial: "all" });
      expect(ids).toEqual(tok.encode(text, { allowedSpecial: "all" }));
      expect(ids.filter((x) => x === specialsObj["<|eot_id|>"]).length).toBe(pieces.length - 1);
      await expect(tok.encodeAsync(text)).rejects.toBeInstanceOf(SpecialTokenNotAllowedError);
      expect(tok.encodeWorkerState()).toEqual({ running: true, pending: 0 });
    } finally {
      tok.free();
    }
    expect(tok.encodeWorkerState()).toEqual({ running: false, pending: 0 });
  });
});

const py = findPythonTiktoken();
describe("same ids as Python tiktoken (native Rust core)", () => {
  it.skipIf(!("python" in py))(`fuzz and Markdown, cl100k and GPT-2 patterns${"python" in py ? "" : ` (skipped: ${py.reason})`}`, () => {
    const texts = [...fuzzTexts(4321, 3000), ...longPieces(), markdownCorpus(256 * 1024)];
    for (const c of [CASES[0]!, CASES[1]!]) {
      const dir = dirs.make({});
      const ranks = c.ranks();
      writeFileSync(join(dir, "ranks"), ranks);
      writeFileSync(join(dir, "pattern"), c.pattern);
      writeFileSync(join(dir, "texts.json"), JSON.stringify(texts));
      const r = spawnSync(py.python!, [resolve(import.meta.dirname, "reference/tiktoken_ids.py"), join(dir, "ranks"), join(dir, "pattern"), join(dir, "texts.json"), join(dir, "ids.bin")], {
        encoding: "utf8",
      });
      expect(r.status, r.stderr).toBe(0);
      const bin = readFileSync(join(dir, "ids.bin"));
      const words = new Uint32Array(bin.buffer, bin.byteOffset, bin.byteLength / 4);
      const tok = own(Tokenizer.fromTiktokenRanks(ranks, { pattern: c.pattern }));
      expect(encoderEngine(tok)).toBe("native");
      let at = 0;
      let mismatches = 0;
      for (const t of texts) {
        const n = words[at++]!;
        const want = Array.from(words.subarray(at, at + n));
        at += n;
        const got = tok.encode(t, { disallowedSpecial: "text" });
        if (got.length !== want.length || got.some((x, i) => x !== want[i])) mismatches++;
      }
      expect(at).toBe(words.length);
      expect([c.name, mismatches]).toEqual([c.name, 0]);
    }
  });
});
