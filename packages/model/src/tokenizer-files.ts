// Checks that a model directory names a tokenizer the tokenizer package can load: a tiktoken ranks file
// (tokenizer.model, Llama 3 style) or a tiktoken encoding shipped with the `tiktoken` package.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidTokenizerError, TokenizerNotFoundError } from "./errors.js";
import type { ModelConfig } from "./config.js";

/** Encodings shipped in the `tiktoken` npm package (tiktoken/encoders/<name>.json). */
export const TIKTOKEN_ENCODINGS = ["cl100k_base", "o200k_base", "p50k_base", "p50k_edit", "r50k_base", "gpt2"] as const;
/** Ordinary (byte-pair) token count of each shipped encoding: vocab_size must cover at least these ids. */
const ENCODING_ORDINARY_TOKENS: Readonly<Record<(typeof TIKTOKEN_ENCODINGS)[number], number>> = {
  cl100k_base: 100256,
  o200k_base: 199998,
  p50k_base: 50280,
  p50k_edit: 50280,
  r50k_base: 50256,
  gpt2: 50256,
};

export interface TokenizerInfo {
  kind: "tiktoken-file" | "tiktoken-encoding";
  /** For "tiktoken-file": the ranks file that was checked (absolute or relative to the cwd, as given). */
  modelPath?: string;
  /** For "tiktoken-encoding". */
  encoding?: string;
  /** For "tiktoken-file": number of ranks and the largest rank. */
  ranks?: number;
  maxRank?: number;
  /** From tokenizer_config.json added_tokens_decoder. */
  specialTokens: { id: number; content: string }[];
  hasChatTemplate: boolean;
  /** Parsed tokenizer_config.json, or null when absent. */
  tokenizerConfig: Record<string, unknown> | null;
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Validates tiktoken ranks text (`<base64> <rank>` per line). Returns count and largest rank. */
export function checkTiktokenRanks(text: string, source = "tokenizer.model"): { ranks: number; maxRank: number } {
  const seenRanks = new Set<number>();
  const seenTokens = new Set<string>();
  let maxRank = -1;
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].replace(/\r$/, "");
    if (line === "") continue;
    const parts = line.split(" ");
    if (parts.length !== 2 || parts[0] === "" || parts[0].length % 4 !== 0 || !B64.test(parts[0]) || !/^\d+$/.test(parts[1])) {
      throw new InvalidTokenizerError(`${source} line ${n + 1} is not "<base64> <rank>" (tiktoken ranks format; SentencePiece models are not supported): ${JSON.stringify(line.slice(0, 60))}`);
    }
    const rank = Number(parts[1]);
    if (seenRanks.has(rank)) throw new InvalidTokenizerError(`${source} line ${n + 1}: rank ${rank} appears twice`);
    if (seenTokens.has(parts[0])) throw new InvalidTokenizerError(`${source} line ${n + 1}: token ${parts[0]} appears twice`);
    seenRanks.add(rank);
    seenTokens.add(parts[0]);
    if (rank > maxRank) maxRank = rank;
  }
  if (seenRanks.size === 0) throw new InvalidTokenizerError(`${source} holds no ranks`);
  return { ranks: seenRanks.size, maxRank };
}

export interface CheckTokenizerOptions {
  /** Use this ranks file instead of `<dir>/tokenizer.model` (convert uses Llama 3's `original/tokenizer.model`). */
  tokenizerModelPath?: string;
}

/** Finds and checks the tokenizer of a model directory against its config (ids below vocab_size). */
export function checkTokenizerFiles(dir: string, config: ModelConfig, options: CheckTokenizerOptions = {}): TokenizerInfo {
  const tcPath = join(dir, "tokenizer_config.json");
  let tc: Record<string, unknown> | null = null;
  if (existsSync(tcPath)) {
    try {
      tc = JSON.parse(readFileSync(tcPath, "utf8"));
    } catch (e) {
      throw new InvalidTokenizerError(`${tcPath} is not valid JSON: ${(e as Error).message}`, { cause: e });
    }
    if (tc === null || typeof tc !== "object" || Array.isArray(tc)) throw new InvalidTokenizerError(`${tcPath} is not a JSON object`);
  }
  const specialTokens: { id: number; content: string }[] = [];
  const atd = tc?.added_tokens_decoder;
  if (atd !== undefined) {
    if (atd === null || typeof atd !== "object") throw new InvalidTokenizerError(`${tcPath}: added_tokens_decoder is not an object`);
    for (const [idStr, entry] of Object.entries(atd as Record<string, unknown>)) {
      const id = Number(idStr);
      const content = (entry as { content?: unknown } | null)?.content;
      if (!Number.isSafeInteger(id) || id < 0 || typeof content !== "string") {
        throw new InvalidTokenizerError(`${tcPath}: added_tokens_decoder entry ${JSON.stringify(idStr)} needs an integer id and a string content`);
      }
      if (id >= config.vocabSize) throw new InvalidTokenizerError(`${tcPath}: special token ${content} has id ${id}, not below vocab_size ${config.vocabSize}`);
      specialTokens.push({ id, content });
    }
  }
  const hasChatTemplate = typeof tc?.chat_template === "string" && (tc.chat_template as string).length > 0;

  const modelPath = options.tokenizerModelPath ?? join(dir, "tokenizer.model");
  if (existsSync(modelPath)) {
    const { ranks, maxRank } = checkTiktokenRanks(readFileSync(modelPath, "latin1"), modelPath);
    if (maxRank >= config.vocabSize) throw new InvalidTokenizerError(`${modelPath}: rank ${maxRank} is not below vocab_size ${config.vocabSize}`);
    for (const s of specialTokens) {
      if (s.id <= maxRank) throw new InvalidTokenizerError(`${tcPath}: special token ${s.content} id ${s.id} collides with the ranks of ${modelPath} (0..${maxRank})`);
    }
    return { kind: "tiktoken-file", modelPath, ranks, maxRank, specialTokens, hasChatTemplate, tokenizerConfig: tc };
  }
  const enc = tc?.tiktoken_encoding;
  if (enc !== undefined) {
    if (typeof enc !== "string" || !(TIKTOKEN_ENCODINGS as readonly string[]).includes(enc)) {
      throw new InvalidTokenizerError(`${tcPath}: tiktoken_encoding ${JSON.stringify(enc)} is not an encoding shipped in tiktoken (${TIKTOKEN_ENCODINGS.join(", ")})`);
    }
    const ordinary = ENCODING_ORDINARY_TOKENS[enc as (typeof TIKTOKEN_ENCODINGS)[number]];
    if (ordinary > config.vocabSize) {
      throw new InvalidTokenizerError(`${tcPath}: tiktoken_encoding ${enc} has ${ordinary} ordinary tokens, more than vocab_size ${config.vocabSize}`);
    }
    return { kind: "tiktoken-encoding", encoding: enc, specialTokens, hasChatTemplate, tokenizerConfig: tc };
  }
  const hint = existsSync(join(dir, "tokenizer.json")) ? " (tokenizer.json alone is not supported; Llama 3 checkpoints carry the ranks file as original/tokenizer.model)" : "";
  throw new TokenizerNotFoundError(
    `model directory ${dir} has no tokenizer: expected tokenizer.model (tiktoken ranks) or a "tiktoken_encoding" in tokenizer_config.json${hint}`,
  );
}
