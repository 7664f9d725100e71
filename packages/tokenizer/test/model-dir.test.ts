import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  LLAMA3_CHAT_TEMPLATE,
  ModelDirError,
  RanksFormatError,
  SpecialTokensError,
  Tokenizer,
  TokenizerError,
  validateRanksText,
} from "../src/index.js";
import { chatmlModelFiles, cl100kRanksText, CL100K_RANKS, llama3Specials, TempDirs } from "./fixtures.js";

const dirs = new TempDirs();
afterAll(() => dirs.cleanup());
const ranks = cl100kRanksText();

function llama3Config(extra: Record<string, unknown> = {}): object {
  return {
    added_tokens_decoder: Object.fromEntries(llama3Specials().map(([id, content]) => [String(id), { content, special: true }])),
    bos_token: "<|begin_of_text|>",
    eos_token: "<|eot_id|>",
    chat_template: LLAMA3_CHAT_TEMPLATE,
    ...extra,
  };
}

/** Loading must fail with a typed error, never with the WASM module's `RuntimeError: unreachable`. */
function loadError(files: Record<string, string | object>): TokenizerError {
  const dir = dirs.make(files);
  try {
    Tokenizer.fromModelDir(dir).free();
  } catch (e) {
    expect(e).toBeInstanceOf(TokenizerError);
    expect(String(e)).not.toMatch(/unreachable/);
    return e as TokenizerError;
  }
  throw new Error("loading did not fail");
}

describe("Llama-3-style tokenizer.model", () => {
  it("loads ranks text with specials from tokenizer_config.json, BOS as the config says", () => {
    const t = Tokenizer.fromModelDir(dirs.make({ "tokenizer.model": ranks, "tokenizer_config.json": llama3Config({ add_bos_token: true }) }));
    try {
      const bot = CL100K_RANKS;
      expect(t.bosTokenId).toBe(bot);
      expect(t.eosTokenIds).toEqual([bot + 9]);
      expect(t.vocabSize).toBe(CL100K_RANKS + 256);
      expect(t.encode("Hello world")).toEqual([bot, 9906, 1917]);
      expect(t.encode("<|eot_id|>", { allowedSpecial: "all", addBos: false })).toEqual([bot + 9]);
      expect(t.decode(t.encode("héllo 😀"), { skipSpecialTokens: true })).toBe("héllo 😀");
    } finally {
      t.free();
    }
  });

  it("adds BOS by default when tokenizer.json's post-processor does (HF Llama 3 repos)", () => {
    const t = Tokenizer.fromModelDir(
      dirs.make({
        "tokenizer.model": ranks,
        "tokenizer_config.json": llama3Config(),
        "tokenizer.json": { post_processor: { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<|begin_of_text|>" } }] } },
      }),
    );
    try {
      expect(t.addBos).toBe(true);
      expect(t.encode("hi")[0]).toBe(CL100K_RANKS);
    } finally {
      t.free();
    }
  });

  it("reads specials from tokenizer.json added_tokens, and eos ids from generation_config.json", () => {
    const t = Tokenizer.fromModelDir(
      dirs.make({
        "tokenizer.model": ranks,
        "tokenizer_config.json": { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" },
        "tokenizer.json": { added_tokens: llama3Specials().map(([id, content]) => ({ id, content, special: true })) },
        "generation_config.json": { eos_token_id: [CL100K_RANKS + 1, CL100K_RANKS + 8, CL100K_RANKS + 9] },
      }),
    );
    try {
      expect(t.eosTokenIds).toEqual([CL100K_RANKS + 9, CL100K_RANKS + 1, CL100K_RANKS + 8]);
      expect(t.addBos).toBe(false);
    } finally {
      t.free();
    }
  });

  it("falls back to Meta's special-token layout when no config lists specials (original/tokenizer.model)", () => {
    const dir = dirs.make({});
    mkdirSync(join(dir, "original"));
    writeFileSync(join(dir, "original", "tokenizer.model"), ranks);
    const t = Tokenizer.fromModelDir(dir);
    try {
      expect(t.tokenId("<|begin_of_text|>")).toBe(CL100K_RANKS);
      expect(t.tokenId("<|eot_id|>")).toBe(CL100K_RANKS + 9);
      expect(t.tokenId("<|python_tag|>")).toBe(CL100K_RANKS + 10);
      expect(t.tokenId("<|reserved_special_token_247|>")).toBe(CL100K_RANKS + 255);
      expect(t.specialTokens.size).toBe(256);
    } finally {
      t.free();
    }
  });
});

describe("malformed ranks files give clear errors", () => {
  const cases: Array<[string, string, RegExp]> = [
    ["empty file", "", /empty/],
    ["no rank", "IQ==\n", /expected "<base64> <rank>"/],
    ["bad base64", "I*Q== 0\n", /invalid base64/],
    ["negative rank", "IQ== -1\n", /non-negative integer/],
    ["rank not a number", "IQ== one\n", /non-negative integer/],
    ["three fields", "IQ== 0 1\n", /expected/],
    ["empty line in the middle", "IQ== 0\n\nIg== 1\n", /empty line/],
    ["duplicate rank", ranks.replace(/\nIg== 1\n/, "\nIg== 0\n"), /duplicate rank 0/],
    ["duplicate bytes", ranks + "IQ== 200000\n", /duplicate token bytes/],
    ["missing single byte", ranks.replace(/^IQ== 0\n/, ""), /single byte 0x21 has no rank/],
    ["binary garbage", "\u0000\u0001\u0002 \u0003\n", /invalid base64/],
  ];
  for (const [name, text, message] of cases) {
    it(name, () => {
      const err = loadError({ "tokenizer.model": text, "tokenizer_config.json": {} });
      expect(err).toBeInstanceOf(RanksFormatError);
      expect(err.code).toBe("RANKS_MALFORMED");
      expect(err.message).toMatch(message);
    });
  }

  it("validateRanksText accepts CRLF line ends and reports counts", () => {
    expect(validateRanksText(ranks.replace(/\n/g, "\r\n"))).toMatchObject({ count: CL100K_RANKS, end: CL100K_RANKS });
  });

  it("Tokenizer.fromTiktokenRanks validates too", () => {
    expect(() => Tokenizer.fromTiktokenRanks("IQ== x")).toThrow(RanksFormatError);
  });
});

describe("model directory errors", () => {
  it("no tokenizer at all", () => {
    const err = loadError({ "config.json": {} });
    expect(err).toBeInstanceOf(ModelDirError);
    expect(err.message).toMatch(/no tokenizer/);
  });

  it("a directory that does not exist", () => {
    expect(() => Tokenizer.fromModelDir("/nonexistent/model/dir")).toThrow(ModelDirError);
  });

  it("invalid JSON in tokenizer_config.json", () => {
    expect(loadError({ "tokenizer_config.json": "{ nope" })).toBeInstanceOf(ModelDirError);
  });

  it("unknown tiktoken_encoding", () => {
    expect(loadError({ "tokenizer_config.json": { tiktoken_encoding: "cl999k" } }).message).toMatch(/unknown tiktoken_encoding/);
  });

  it("a special token id that is a BPE rank", () => {
    const err = loadError({ "tokenizer_config.json": { tiktoken_encoding: "cl100k_base", added_tokens_decoder: { "5": { content: "<|x|>" } } } });
    expect(err).toBeInstanceOf(SpecialTokensError);
  });

  it("one text with two ids", () => {
    const err = loadError({
      "tokenizer_config.json": {
        tiktoken_encoding: "cl100k_base",
        added_tokens_decoder: { "100300": { content: "<|a|>" }, "100301": { content: "<|a|>" } },
      },
    });
    expect(err).toBeInstanceOf(SpecialTokensError);
  });

  it("eos_token that is not a special token", () => {
    const err = loadError({ "tokenizer_config.json": { tiktoken_encoding: "cl100k_base", eos_token: "</s>" } });
    expect(err.message).toMatch(/eos_token "<\/s>" is not a special token/);
  });

  it("eos id outside the vocabulary", () => {
    const files = chatmlModelFiles();
    const err = loadError({ ...files, "generation_config.json": { eos_token_id: 999999 } });
    expect(err).toBeInstanceOf(SpecialTokensError);
  });

  it("loads the ChatML layout of our generated models", () => {
    const t = Tokenizer.fromModelDir(dirs.make(chatmlModelFiles()));
    try {
      expect(t.eosTokenIds).toEqual([100265, 100257]);
      expect([...t.specialTokens.keys()]).toEqual(
        expect.arrayContaining(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|endofprompt|>"]),
      );
    } finally {
      t.free();
    }
  });
});
