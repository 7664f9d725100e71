// tokenizer.json (byte-level BPE) against Hugging Face `tokenizers` itself: fixtures/tokenizer-*.json were trained
// and saved by that library, and fixtures/tokenizer-json-hf.json holds its own ids and decodings of multilingual
// text, code, emoji and whitespace (tools/reference/tokenizer_json_fixtures.py, tokenizers 0.23). Two pre-tokenizer
// families: Llama 3's Split regex + ByteLevel, and GPT-2's ByteLevel regex with an NFC normalizer (as Qwen2 has).
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { locateTokenizer } from "@trtd/model";
import { ModelDirError, Tokenizer } from "../src/index.js";
import { encoderEngine } from "../src/tokenizer.js";

const fixtures = join(import.meta.dirname, "fixtures");
interface Expected {
  tokenizers: string;
  families: Record<string, { file: string; vocab_size: number; cases: { text: string; ids: number[]; decoded: string }[] }>;
}
const expected = JSON.parse(readFileSync(join(fixtures, "tokenizer-json-hf.json"), "utf8")) as Expected;
const scratch = mkdtempSync(join(tmpdir(), "tokjson-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function modelDir(name: string, tokenizerJson: string): string {
  const dir = join(scratch, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(tokenizerJson, join(dir, "tokenizer.json"));
  return dir;
}

describe.each(Object.entries(expected.families))("tokenizer.json, %s family, against tokenizers", (family, f) => {
  const tok = Tokenizer.fromModelDir(modelDir(family, join(fixtures, f.file)));
  afterAll(() => tok.free());

  it("covers scripts, code, emoji and whitespace, and is encoded by the native encoder", () => {
    expect(encoderEngine(tok)).toBe("native"); // so the ids below compare the native encoder with `tokenizers`
    expect(f.cases.length).toBeGreaterThanOrEqual(15);
    expect(f.cases.some((c) => /\p{Script=Han}/u.test(c.text))).toBe(true);
    expect(f.cases.some((c) => /\p{Extended_Pictographic}/u.test(c.text))).toBe(true);
  });

  for (const c of f.cases) {
    it(`ids of ${JSON.stringify(c.text.slice(0, 40))}`, () => {
      expect(tok.encode(c.text, { allowedSpecial: "all", addBos: false })).toEqual(c.ids);
      expect(tok.decode(c.ids)).toBe(c.decoded);
    });
  }

  it("encodeAsync (the worker thread, given the normalized text) gives encode's ids on a long text", async () => {
    const text = f.cases.map((c) => c.text).join("\n").repeat(40);
    expect(text.length).toBeGreaterThan(16_384);
    expect(await tok.encodeAsync(text, { allowedSpecial: "all", addBos: false })).toEqual(tok.encode(text, { allowedSpecial: "all", addBos: false }));
  });
});

describe("tokenizer.json that this reader cannot follow exactly is refused by name", () => {
  const base = JSON.parse(readFileSync(join(fixtures, "tokenizer-llama3.json"), "utf8")) as Record<string, any>;
  const cases: [string, (j: Record<string, any>) => void, RegExp][] = [
    ["a WordPiece model", (j) => (j.model.type = "WordPiece"), /model type "WordPiece" is not supported/],
    ["SentencePiece-style byte fallback", (j) => (j.model.byte_fallback = true), /byte_fallback/],
    ["a Metaspace pre-tokenizer", (j) => (j.pre_tokenizer = { type: "Metaspace" }), /pre-tokenizer "Metaspace" is not supported/],
    ["an NFKD normalizer", (j) => (j.normalizer = { type: "NFKD" }), /normalizer "NFKD" is not supported/],
    ["merges out of id order", (j) => j.model.merges.reverse(), /merges out of id order/],
  ];
  for (const [what, edit, message] of cases) {
    it(what, () => {
      const j = structuredClone(base);
      edit(j);
      const path = join(scratch, `bad-${what.replace(/\W+/g, "-")}.json`);
      writeFileSync(path, JSON.stringify(j));
      expect(() => Tokenizer.fromModelDir(modelDir(`bad-${what.replace(/\W+/g, "-")}`, path))).toThrow(ModelDirError);
      expect(() => Tokenizer.fromModelDir(modelDir(`bad2-${what.replace(/\W+/g, "-")}`, path))).toThrow(message);
    });
  }
});

describe("one precedence for a model directory's tokenizer files", () => {
  it("@trtd/model's locateTokenizer and the loader pick the same file", () => {
    const dir = modelDir("precedence", join(fixtures, "tokenizer-llama3.json"));
    expect(locateTokenizer(dir)).toEqual({ kind: "tokenizer-json", path: join(dir, "tokenizer.json") });
    const a = Tokenizer.fromModelDir(dir);
    expect(a.origin).toMatch(/\(tokenizer\.json\)$/);
    a.free();
    // With a tiktoken_encoding named as well (and tokenizer.json's added tokens dropped, which would collide with
    // cl100k's ranks), the encoding wins in both.
    const j = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({ ...j, added_tokens: [] }));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ tiktoken_encoding: "cl100k_base" }));
    expect(locateTokenizer(dir)).toEqual({ kind: "tiktoken-encoding", encoding: "cl100k_base" });
    const b = Tokenizer.fromModelDir(dir);
    expect(b.origin).toMatch(/tiktoken cl100k_base/);
    b.free();
  });
});
