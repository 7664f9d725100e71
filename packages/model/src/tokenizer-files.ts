// Finds a model directory's tokenizer files (locateTokenizer: the one precedence rule) and checks that they name a
// tokenizer the tokenizer package can load: a tiktoken encoding shipped with `tiktoken`, a tiktoken ranks file
// (tokenizer.model, Llama 3 style) or a byte-level BPE tokenizer.json.
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
  kind: "tiktoken-file" | "tiktoken-encoding" | "tokenizer-json";
  /** For "tiktoken-file" and "tokenizer-json": the file that was checked (absolute or relative to the cwd, as given). */
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

/** Where a model directory's tokenizer comes from: the one precedence rule, shared by every reader. */
export type TokenizerSource =
  | { kind: "tiktoken-encoding"; encoding: string }
  | { kind: "tiktoken-file"; path: string }
  | { kind: "tokenizer-json"; path: string };

/**
 * Finds a model directory's tokenizer, in this order: `tokenizerModelPath` when given; `tiktoken_encoding` in
 * tokenizer_config.json; `tokenizer.model` (tiktoken ranks); `original/tokenizer.model` (Hugging Face Llama 3
 * repos); `tokenizer.json`. @trtd/tokenizer loads what this names, and validateModelDir checks it, so the two never
 * disagree. Throws TokenizerNotFoundError when there is none, InvalidTokenizerError for an unreadable
 * tokenizer_config.json.
 */
export function locateTokenizer(dir: string, options: { tokenizerModelPath?: string } = {}): TokenizerSource {
  if (options.tokenizerModelPath !== undefined) return { kind: "tiktoken-file", path: options.tokenizerModelPath };
  const tcPath = join(dir, "tokenizer_config.json");
  if (existsSync(tcPath)) {
    let tc: unknown;
    try {
      tc = JSON.parse(readFileSync(tcPath, "utf8"));
    } catch (e) {
      throw new InvalidTokenizerError(`${tcPath} is not valid JSON: ${(e as Error).message}`, { cause: e });
    }
    const enc = tc !== null && typeof tc === "object" ? (tc as Record<string, unknown>).tiktoken_encoding : undefined;
    if (enc !== undefined) {
      if (typeof enc !== "string") throw new InvalidTokenizerError(`${tcPath}: tiktoken_encoding must be a string`);
      return { kind: "tiktoken-encoding", encoding: enc };
    }
  }
  for (const rel of ["tokenizer.model", join("original", "tokenizer.model")]) {
    if (existsSync(join(dir, rel))) return { kind: "tiktoken-file", path: join(dir, rel) };
  }
  if (existsSync(join(dir, "tokenizer.json"))) return { kind: "tokenizer-json", path: join(dir, "tokenizer.json") };
  throw new TokenizerNotFoundError(
    `model directory ${dir} has no tokenizer: expected a "tiktoken_encoding" in tokenizer_config.json, tokenizer.model (tiktoken ranks), original/tokenizer.model or tokenizer.json`,
  );
}

export interface CheckTokenizerOptions {
  /** Use this ranks file instead of `<dir>/tokenizer.model` (convert uses Llama 3's `original/tokenizer.model`). */
  tokenizerModelPath?: string;
}

/**
 * The chat template of a model directory, the one lookup every reader shares: tokenizer_config.json's
 * `chat_template` (a string, or a list of `{name, template}` of which "default", else the first, is used), else
 * `chat_template.jinja`; undefined when there is none. `tokenizerConfig` is the parsed tokenizer_config.json.
 * Throws InvalidTokenizerError on a malformed `chat_template`.
 */
export function readChatTemplate(dir: string, tokenizerConfig: Record<string, unknown> | null | undefined): string | undefined {
  const t = tokenizerConfig?.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t as Array<{ name?: unknown; template?: unknown }>;
    const pick = named.find((x) => x?.name === "default") ?? named[0];
    if (typeof pick?.template === "string") return pick.template;
    throw new InvalidTokenizerError("chat_template list has no usable {name, template} entry");
  }
  if (t !== undefined && t !== null) throw new InvalidTokenizerError("chat_template must be a string or a list of {name, template}");
  const file = join(dir, "chat_template.jinja");
  return existsSync(file) ? readFileSync(file, "utf8") : undefined;
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
  const hasChatTemplate = (readChatTemplate(dir, tc) ?? "").length > 0;

  const source = locateTokenizer(dir, options);
  if (source.kind === "tiktoken-file") {
    const modelPath = source.path;
    const { ranks, maxRank } = checkTiktokenRanks(readFileSync(modelPath, "latin1"), modelPath);
    if (maxRank >= config.vocabSize) throw new InvalidTokenizerError(`${modelPath}: rank ${maxRank} is not below vocab_size ${config.vocabSize}`);
    for (const s of specialTokens) {
      if (s.id <= maxRank) throw new InvalidTokenizerError(`${tcPath}: special token ${s.content} id ${s.id} collides with the ranks of ${modelPath} (0..${maxRank})`);
    }
    return { kind: "tiktoken-file", modelPath, ranks, maxRank, specialTokens, hasChatTemplate, tokenizerConfig: tc };
  }
  if (source.kind === "tiktoken-encoding") {
    const enc = source.encoding;
    if (!(TIKTOKEN_ENCODINGS as readonly string[]).includes(enc)) {
      throw new InvalidTokenizerError(`${tcPath}: tiktoken_encoding ${JSON.stringify(enc)} is not an encoding shipped in tiktoken (${TIKTOKEN_ENCODINGS.join(", ")})`);
    }
    const ordinary = ENCODING_ORDINARY_TOKENS[enc as (typeof TIKTOKEN_ENCODINGS)[number]];
    if (ordinary > config.vocabSize) {
      throw new InvalidTokenizerError(`${tcPath}: tiktoken_encoding ${enc} has ${ordinary} ordinary tokens, more than vocab_size ${config.vocabSize}`);
    }
    return { kind: "tiktoken-encoding", encoding: enc, specialTokens, hasChatTemplate, tokenizerConfig: tc };
  }
  // tokenizer.json: its BPE is read (and anything it cannot follow refused) by @trtd/tokenizer; here, that it is a
  // BPE vocabulary whose ids fit the model.
  let tj: Record<string, unknown>;
  try {
    tj = JSON.parse(readFileSync(source.path, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new InvalidTokenizerError(`${source.path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  const model = tj?.model as { type?: unknown; vocab?: Record<string, number> } | undefined;
  if (model?.type !== "BPE" || typeof model.vocab !== "object" || model.vocab === null) {
    throw new InvalidTokenizerError(`${source.path}: model type ${JSON.stringify(model?.type)} is not supported (byte-level BPE is)`);
  }
  let maxId = -1;
  for (const id of Object.values(model.vocab)) maxId = Math.max(maxId, id);
  for (const t of (tj.added_tokens as { id?: number }[] | undefined) ?? []) maxId = Math.max(maxId, t.id ?? -1);
  if (maxId >= config.vocabSize) throw new InvalidTokenizerError(`${source.path}: token id ${maxId} is not below vocab_size ${config.vocabSize}`);
  return { kind: "tokenizer-json", modelPath: source.path, ranks: Object.keys(model.vocab).length, maxRank: maxId, specialTokens, hasChatTemplate, tokenizerConfig: tc };
}
