import { createRequire } from "node:module";
import { Tiktoken } from "tiktoken";
import { UnknownEncodingError } from "./errors.js";

const require = createRequire(import.meta.url);

/** The named encodings shipped in the tiktoken package. */
export const ENCODING_NAMES = ["gpt2", "r50k_base", "p50k_base", "p50k_edit", "cl100k_base", "o200k_base"] as const;
export type EncodingName = (typeof ENCODING_NAMES)[number];

/** The pre-tokenizer split pattern of Llama 3 (Meta's tokenizer.py; the same text as cl100k_base's). */
export const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * Llama 3 / 3.1 special tokens as Meta lays them out after the BPE ranks (`original/tokenizer.model` ships without
 * a tokenizer_config.json): 256 ids starting at the number of ranks.
 */
export function llama3DefaultSpecials(firstId: number): Record<string, number> {
  const named = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
  ];
  const out: Record<string, number> = {};
  named.forEach((t, i) => (out[t] = firstId + i));
  for (let i = named.length, r = 3; i < 256; i++, r++) out[`<|reserved_special_token_${r}|>`] = firstId + i;
  return out;
}

/** How to build one tiktoken encoder; plain data, so an encode worker can build the same encoder. */
export type EncoderSpec =
  | { kind: "named"; name: EncodingName; specials: Record<string, number> }
  | { kind: "ranks"; ranksText: string; pattern: string; specials: Record<string, number> };

interface EncodingJson {
  pat_str: string;
  special_tokens: Record<string, number>;
  bpe_ranks: string;
}

export function isEncodingName(name: string): name is EncodingName {
  return (ENCODING_NAMES as readonly string[]).includes(name);
}

/** Absolute path of an encoding's JSON in the tiktoken package (the worker thread requires it too). */
export function encodingJsonPath(name: string): string {
  if (!isEncodingName(name)) throw new UnknownEncodingError(name, ENCODING_NAMES);
  return require.resolve(`tiktoken/encoders/${name}.json`);
}

export function loadEncodingJson(name: string): EncodingJson {
  return require(encodingJsonPath(name)) as EncodingJson;
}

/** Rank id ranges `[start, end)` of a bundled encoding (its compact `! <offset> <b64> <b64>…` form). */
export function encodingRankRanges(json: EncodingJson): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (const line of json.bpe_ranks.split("\n")) {
    if (line.length === 0) continue;
    const parts = line.split(" ");
    const offset = Number(parts[1]);
    ranges.push([offset, offset + parts.length - 2]);
  }
  return ranges;
}

/** Absolute path of tiktoken's CommonJS entry (for the worker thread). */
export function tiktokenModulePath(): string {
  return require.resolve("tiktoken");
}

export function buildTiktoken(spec: EncoderSpec): Tiktoken {
  if (spec.kind === "named") {
    const json = loadEncodingJson(spec.name);
    return new Tiktoken(json.bpe_ranks, spec.specials, json.pat_str);
  }
  return new Tiktoken(spec.ranksText, spec.specials, spec.pattern);
}
