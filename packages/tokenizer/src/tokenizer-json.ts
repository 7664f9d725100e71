// tokenizer.json (Hugging Face `tokenizers`) for byte-level BPE models: turned into the tiktoken ranks this package
// encodes with. Ranks are the vocabulary ids, which is exact where the merges are in id order (each merge's result
// has a larger id than the one before: true of tiktoken-derived vocabularies such as Llama 3's and Qwen2's, and of
// BPE as `tokenizers` trains it); anything else is refused rather than approximated.
import { ModelDirError } from "./errors.js";

type Json = Record<string, unknown>;

/** GPT-2's pre-tokenizer regex (ByteLevel with use_regex: true). */
export const GPT2_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

export interface TokenizerJsonBpe {
  /** tiktoken ranks text, `<base64 bytes> <id>` per line. */
  ranksText: string;
  /** The pre-tokenizer's split regex. */
  pattern: string;
  /** Unicode normalization applied to text before encoding (the file's normalizer), if any. */
  normalization: "NFC" | "NFKC" | undefined;
}

/** The byte ↔ printable character table of byte-level BPE (GPT-2's bytes_to_unicode). */
function byteLevelDecoder(): Map<string, number> {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out = new Map<string, number>();
  bs.forEach((b, i) => out.set(String.fromCodePoint(cs[i]!), b));
  return out;
}

function fail(path: string, what: string): never {
  throw new ModelDirError(`${path}: ${what}`);
}

/** The split regex of a pre-tokenizer: a Split with a Regex pattern, or ByteLevel's own (GPT-2's) when use_regex. */
function pattern(path: string, pre: unknown): string {
  if (pre === null || typeof pre !== "object") fail(path, "pre_tokenizer is missing (byte-level BPE needs ByteLevel)");
  const p = pre as Json;
  const parts = p.type === "Sequence" ? ((p.pretokenizers as Json[] | undefined) ?? []) : [p];
  let regex: string | undefined;
  let byteLevel = false;
  for (const part of parts) {
    if (part.type === "Split") {
      const pat = part.pattern as Json | undefined;
      if (typeof pat?.Regex !== "string") fail(path, "a Split pre-tokenizer without a Regex pattern is not supported");
      if (part.behavior !== "Isolated" || part.invert === true) fail(path, `Split behavior ${JSON.stringify(part.behavior)} is not supported (Isolated is)`);
      if (regex !== undefined) fail(path, "more than one split regex is not supported");
      regex = pat.Regex as string;
    } else if (part.type === "ByteLevel") {
      byteLevel = true;
      if (part.add_prefix_space === true) fail(path, "ByteLevel add_prefix_space: true is not supported");
      if (part.use_regex !== false) {
        if (regex !== undefined) fail(path, "a Split regex and ByteLevel's own regex together are not supported");
        regex = GPT2_PATTERN;
      }
    } else {
      fail(path, `pre-tokenizer ${JSON.stringify(part.type)} is not supported (Split and ByteLevel are)`);
    }
  }
  if (!byteLevel) fail(path, "only byte-level BPE is supported (no ByteLevel pre-tokenizer)");
  if (regex === undefined) fail(path, "the pre-tokenizer has no split regex");
  return regex;
}

function normalization(path: string, n: unknown): "NFC" | "NFKC" | undefined {
  if (n === null || n === undefined) return undefined;
  const t = (n as Json).type;
  if (t === "NFC" || t === "NFKC") return t;
  fail(path, `normalizer ${JSON.stringify(t)} is not supported (none, NFC and NFKC are)`);
}

/** Reads a parsed tokenizer.json. `path` names it in errors. */
export function bpeFromTokenizerJson(json: Json, path = "tokenizer.json"): TokenizerJsonBpe {
  const model = json.model as Json | undefined;
  if (!model || model.type !== "BPE") fail(path, `model type ${JSON.stringify(model?.type)} is not supported (BPE is)`);
  for (const k of ["continuing_subword_prefix", "end_of_word_suffix"] as const) {
    if (model[k] !== null && model[k] !== undefined && model[k] !== "") fail(path, `model.${k} is not supported`);
  }
  if (model.byte_fallback === true) fail(path, "model.byte_fallback (SentencePiece-style BPE) is not supported");
  const vocab = model.vocab as Record<string, number> | undefined;
  if (!vocab || typeof vocab !== "object") fail(path, "model.vocab is missing");
  const decode = byteLevelDecoder();
  const bytesOf = (token: string): Buffer => {
    const out: number[] = [];
    for (const ch of token) {
      const b = decode.get(ch);
      if (b === undefined) fail(path, `vocabulary token ${JSON.stringify(token)} is not byte-level (character ${JSON.stringify(ch)})`);
      out.push(b);
    }
    return Buffer.from(out);
  };
  // Merges in id order: the rank of a merged token is its id, and tiktoken's lowest-rank-first merging then makes
  // the same choices as the merge list's priority order.
  const merges = (model.merges as unknown[] | undefined) ?? [];
  let last = -1;
  for (const [i, m] of merges.entries()) {
    const [a, b] = Array.isArray(m) ? (m as string[]) : String(m).split(" ");
    const id = vocab[`${a}${b}`];
    if (id === undefined) fail(path, `merge ${i} (${JSON.stringify(a)} + ${JSON.stringify(b)}) makes no vocabulary token`);
    if (id <= last) fail(path, `merge ${i} makes id ${id} after id ${last}: merges out of id order are not supported`);
    last = id;
  }
  const lines: string[] = [];
  for (const [token, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || id < 0) fail(path, `vocabulary id of ${JSON.stringify(token)} is not a non-negative integer`);
    lines.push(`${bytesOf(token).toString("base64")} ${id}`);
  }
  return { ranksText: lines.join("\n") + "\n", pattern: pattern(path, json.pre_tokenizer), normalization: normalization(path, json.normalizer) };
}
