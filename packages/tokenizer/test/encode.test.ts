import { afterAll, describe, expect, it } from "vitest";
import { getEncoding } from "js-tiktoken";
import {
  InvalidOptionsError,
  InvalidTokenIdError,
  isClientInputError,
  SpecialTokenNotAllowedError,
  Tokenizer,
  TokenizerFreedError,
  UnknownEncodingError,
} from "../src/index.js";
import { chatmlModelFiles, prng, randomText, TempDirs } from "./fixtures.js";

const dirs = new TempDirs();
const tok = Tokenizer.fromModelDir(dirs.make(chatmlModelFiles()));
afterAll(() => {
  tok.free();
  dirs.cleanup();
});

const SAMPLES = [
  "",
  "Hello, world!",
  "emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
  "CJK: 你好，世界。日本語のテキスト。한국어 텍스트",
  "combining: e\u0301 a\u0308 n\u0303 Z\u0351\u0362\u0347\u0324 ǹ",
  "RTL: שלום עולם مرحبا بالعالم \u202ekcab\u202c",
  "mixed\r\n\ttabs  and   spaces\n\n\n  trailing   ",
  "code: fn main() { println!(\"{}\", 1_000_000 >> 2); } // ≠ ≤ ∑",
  "\u0000\u0001\u007f control chars and \ufeff BOM",
];

describe("encode / decode", () => {
  it("round-trips varied Unicode", () => {
    for (const s of SAMPLES) {
      const ids = tok.encode(s);
      expect(tok.decode(ids)).toBe(s);
      expect(new TextDecoder().decode(tok.decodeBytes(ids))).toBe(s);
    }
  });

  it("round-trips 300 random strings (seeded)", () => {
    const rand = prng(42);
    for (let i = 0; i < 300; i++) {
      const s = randomText(rand, 1 + Math.floor(rand() * 200));
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
  });

  it("gives the same ids as js-tiktoken for cl100k_base and o200k_base", () => {
    const rand = prng(7);
    const texts = [...SAMPLES, ...Array.from({ length: 50 }, () => randomText(rand, 120))];
    for (const name of ["cl100k_base", "o200k_base"] as const) {
      const ours = Tokenizer.fromEncoding(name);
      const ref = getEncoding(name);
      try {
        for (const s of texts) expect(ours.encode(s)).toEqual(ref.encode(s));
      } finally {
        ours.free();
      }
    }
  });

  it("loads every named encoding in the tiktoken package", () => {
    for (const name of ["gpt2", "r50k_base", "p50k_base", "p50k_edit", "cl100k_base", "o200k_base"]) {
      const t = Tokenizer.fromEncoding(name);
      try {
        expect(t.decode(t.encode("Hello world"))).toBe("Hello world");
        expect(t.specialTokens.has("<|endoftext|>")).toBe(true);
      } finally {
        t.free();
      }
    }
    expect(() => Tokenizer.fromEncoding("cl200k_base")).toThrow(UnknownEncodingError);
  });

  it("lone surrogates cannot be UTF-8: they encode as U+FFFD", () => {
    expect(tok.decode(tok.encode("a\ud800b"))).toBe("a\ufffdb");
  });
});

describe("special tokens", () => {
  const text = "hi <|im_start|>user<|im_end|> <|endoftext|>";

  it("refuses special-token text by default with a typed error", () => {
    const err = (() => {
      try {
        tok.encode(text);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(SpecialTokenNotAllowedError);
    expect((err as SpecialTokenNotAllowedError).code).toBe("SPECIAL_TOKEN_NOT_ALLOWED");
    expect((err as SpecialTokenNotAllowedError).token).toBe("<|im_start|>");
  });

  it("encodes allowed specials as their ids, others refused or as text", () => {
    const all = tok.encode(text, { allowedSpecial: "all" });
    expect(all.filter((id) => id >= 100257)).toEqual([100264, 100265, 100257]);
    expect(() => tok.encode(text, { allowedSpecial: ["<|im_start|>", "<|im_end|>"] })).toThrow(SpecialTokenNotAllowedError);
    const asText = tok.encode(text, { disallowedSpecial: "text" });
    expect(asText.some((id) => id >= 100257)).toBe(false);
    expect(tok.decode(asText)).toBe(text);
    const some = tok.encode(text, { allowedSpecial: ["<|im_end|>"], disallowedSpecial: "text" });
    expect(some.filter((id) => id >= 100257)).toEqual([100265]);
  });

  it("decodes specials, or skips them", () => {
    const ids = tok.encode(text, { allowedSpecial: "all" });
    expect(tok.decode(ids)).toBe(text);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("hi user ");
  });

  it("exposes ids from the config", () => {
    expect(tok.eosTokenIds).toEqual([100265, 100257]);
    expect(tok.bosTokenId).toBeUndefined();
    expect(tok.vocabSize).toBe(100352);
    expect(tok.tokenId("<|im_start|>")).toBe(100264);
    expect(tok.isSpecialToken(100265)).toBe(true);
    expect(tok.isSpecialToken(15339)).toBe(false);
  });

  it("adds BOS when asked, once", () => {
    const t = Tokenizer.fromEncoding("cl100k_base", { bosToken: "<|endoftext|>", addBos: true });
    try {
      expect(t.bosTokenId).toBe(100257);
      expect(t.encode("hi")).toEqual([100257, 6151]);
      expect(t.encode("hi", { addBos: false })).toEqual([6151]);
      expect(t.encode("<|endoftext|>hi", { allowedSpecial: "all" })).toEqual([100257, 6151]);
    } finally {
      t.free();
    }
  });
});

describe("token ids", () => {
  it("decodes padded embedding rows (no token) to nothing and refuses ids outside the vocab", () => {
    expect(tok.decode([15339, 100300, 100351, 1917])).toBe("hello world");
    for (const bad of [-1, 100352, 1.5, Number.NaN]) {
      expect(() => tok.decode([bad])).toThrow(InvalidTokenIdError);
      expect(() => tok.validateTokenIds([1, bad])).toThrow(InvalidTokenIdError);
    }
    expect(() => tok.validateTokenIds([0, 100300, 100351])).not.toThrow();
    // the encoder still works after refused input
    expect(tok.decode(tok.encode("still fine"))).toBe("still fine");
  });

  it("tells client-input errors from server errors", () => {
    expect(isClientInputError(new InvalidTokenIdError(-1, 10))).toBe(true);
    expect(isClientInputError(new SpecialTokenNotAllowedError("<|im_end|>"))).toBe(true);
    expect(isClientInputError(new TokenizerFreedError())).toBe(false);
    expect(isClientInputError(new Error("x"))).toBe(false);
  });

  it("answers wrong argument types with InvalidOptionsError, not a WASM fault", async () => {
    for (const bad of [undefined, 5, null, {}]) {
      expect(() => tok.encode(bad as unknown as string)).toThrow(InvalidOptionsError);
      await expect(tok.encodeAsync(bad as unknown as string)).rejects.toBeInstanceOf(InvalidOptionsError);
    }
    expect(() => tok.encode("x", { allowedSpecial: "some" as unknown as "all" })).toThrow(InvalidOptionsError);
    expect(() => tok.encode("x", { allowedSpecial: [1] as unknown as string[] })).toThrow(InvalidOptionsError);
    expect(() => tok.encode("x", { disallowedSpecial: "ignore" as unknown as "text" })).toThrow(InvalidOptionsError);
    expect(() => tok.decode(5 as unknown as number[])).toThrow(InvalidOptionsError);
    expect(() => tok.decode(["1"] as unknown as number[])).toThrow(InvalidTokenIdError);
    expect(tok.encode("still fine")).toEqual([44466, 7060]);
  });

  it("throws TokenizerFreedError after free(), and free() is idempotent", () => {
    const t = Tokenizer.fromEncoding("cl100k_base");
    t.free();
    t.free();
    expect(() => t.encode("x")).toThrow(TokenizerFreedError);
    expect(() => t.decode([1])).toThrow(TokenizerFreedError);
  });
});
