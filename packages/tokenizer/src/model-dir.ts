import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ModelDirError, SpecialTokensError } from "./errors.js";
import { isEncodingName, LLAMA3_PATTERN, llama3DefaultSpecials } from "./encodings.js";
import { validateRanksText } from "./ranks-file.js";
import { bpeFromTokenizerJson } from "./tokenizer-json.js";
import { locateTokenizer, readChatTemplate, type TokenizerSource } from "@trtd/model";
import type { TokenizerDefinition, AddedToken } from "./definition.js";

type Json = Record<string, unknown>;

function readJson(dir: string, name: string): Json | undefined {
  const path = join(dir, name);
  if (!existsSync(path)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, "utf8"));
  } catch (cause) {
    throw new ModelDirError(`${path} is not valid JSON`, { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ModelDirError(`${path} must hold a JSON object`);
  }
  return value as Json;
}

/** HF writes special tokens either as a string or as `{content: "..."}` (an AddedToken). */
function tokenText(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "object" && typeof (value as Json).content === "string") return (value as Json).content as string;
  throw new ModelDirError(`tokenizer_config.json field ${field} must be a string or {content}`);
}

function idList(value: unknown, where: string): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  for (const v of list) {
    if (!Number.isInteger(v) || (v as number) < 0) throw new ModelDirError(`${where} must be a token id or a list of ids`);
  }
  return list as number[];
}

/** Added tokens from tokenizer_config.json's `added_tokens_decoder`, then tokenizer.json's `added_tokens`. */
function readAddedTokens(config: Json | undefined, tokJson: Json | undefined): Map<number, AddedToken> {
  const out = new Map<number, AddedToken>();
  const add = (id: number, content: unknown, special: unknown, where: string): void => {
    if (!Number.isInteger(id) || id < 0) throw new SpecialTokensError(`${where}: bad token id ${String(id)}`);
    if (typeof content !== "string" || content.length === 0) throw new SpecialTokensError(`${where}: token ${id} has no content`);
    const prev = out.get(id);
    if (prev && prev.content !== content) {
      throw new SpecialTokensError(`${where}: id ${id} is both ${JSON.stringify(prev.content)} and ${JSON.stringify(content)}`);
    }
    out.set(id, { content, special: special !== false });
  };
  const decoder = config?.added_tokens_decoder;
  if (decoder !== undefined) {
    if (typeof decoder !== "object" || decoder === null) throw new ModelDirError("added_tokens_decoder must be an object");
    for (const [k, v] of Object.entries(decoder as Json)) {
      const entry = v as Json;
      add(Number(k), entry?.content, entry?.special, "tokenizer_config.json added_tokens_decoder");
    }
  }
  const list = tokJson?.added_tokens;
  if (Array.isArray(list)) {
    for (const e of list as Json[]) add(e?.id as number, e?.content, e?.special, "tokenizer.json added_tokens");
  }
  return out;
}

/** The chat template, by @trtd/model's readChatTemplate (the lookup every reader of a model directory shares). */
function chatTemplateOf(dir: string, config: Json | undefined): string | undefined {
  try {
    return readChatTemplate(dir, config);
  } catch (cause) {
    throw new ModelDirError((cause as Error).message, { cause });
  }
}

/** Whether tokenizer.json's post-processor prepends the BOS token (how Llama 3 HF repos add BOS). */
function postProcessorAddsBos(tokJson: Json | undefined, bos: string | undefined): boolean {
  if (!tokJson || !bos) return false;
  const pp = tokJson.post_processor;
  return pp !== undefined && pp !== null && JSON.stringify(pp).includes(JSON.stringify(bos));
}

/**
 * Reads a model directory (see docs/design/contracts.md): the tokenizer that @trtd/model's locateTokenizer names
 * (`tiktoken_encoding` in tokenizer_config.json, else a Llama-3-style `tokenizer.model`, also
 * `original/tokenizer.model`, else a byte-level BPE `tokenizer.json`); special tokens, BOS/EOS, chat template.
 */
export function readModelDir(dir: string): TokenizerDefinition {
  if (!existsSync(dir)) throw new ModelDirError(`model directory ${dir} does not exist`);
  const config = readJson(dir, "tokenizer_config.json");
  const tokJson = readJson(dir, "tokenizer.json");
  const modelConfig = readJson(dir, "config.json");
  const genConfig = readJson(dir, "generation_config.json");
  const added = readAddedTokens(config, tokJson);

  // Which file: @trtd/model's locateTokenizer, the precedence every reader of a model directory shares.
  let located: TokenizerSource;
  try {
    located = locateTokenizer(dir);
  } catch (cause) {
    throw new ModelDirError((cause as Error).message, { cause });
  }
  let def: Pick<TokenizerDefinition, "source" | "origin" | "normalization">;
  if (located.kind === "tiktoken-encoding") {
    const encodingName = located.encoding;
    if (!isEncodingName(encodingName)) {
      throw new ModelDirError(`tokenizer_config.json names unknown tiktoken_encoding "${encodingName}"`);
    }
    def = { source: { kind: "named", name: encodingName }, origin: `${dir} (tiktoken ${encodingName})` };
  } else if (located.kind === "tokenizer-json") {
    // byte-level BPE, ranks = ids (see tokenizer-json.ts)
    const bpe = bpeFromTokenizerJson(tokJson!, located.path);
    const info = validateRanksText(bpe.ranksText, located.path);
    def = {
      source: { kind: "ranks", ranksText: bpe.ranksText, pattern: bpe.pattern, info },
      origin: `${dir} (tokenizer.json)`,
      ...(bpe.normalization ? { normalization: bpe.normalization } : {}),
    };
  } else {
    const ranksPath = located.path;
    const ranksText = readFileSync(ranksPath, "utf8");
    const info = validateRanksText(ranksText, ranksPath);
    const pattern = typeof config?.tiktoken_pattern === "string" ? config.tiktoken_pattern : LLAMA3_PATTERN;
    def = { source: { kind: "ranks", ranksText, pattern, info }, origin: `${dir} (${ranksPath.slice(dir.length + 1)})` };
    if (added.size === 0) {
      for (const [content, id] of Object.entries(llama3DefaultSpecials(info.end))) added.set(id, { content, special: true });
    }
  }
  const bosToken = tokenText(config?.bos_token, "bos_token");
  const eosToken = tokenText(config?.eos_token, "eos_token");
  const templateTokens: Record<string, string> = {};
  for (const field of ["pad_token", "unk_token"]) {
    const text = tokenText(config?.[field], field);
    if (text !== undefined) templateTokens[field] = text;
  }
  const addBosRaw = config?.add_bos_token;
  if (addBosRaw !== undefined && typeof addBosRaw !== "boolean") throw new ModelDirError("add_bos_token must be a boolean");
  const addBos = addBosRaw ?? postProcessorAddsBos(tokJson, bosToken);
  const vocabRaw = modelConfig?.vocab_size;
  if (vocabRaw !== undefined && (!Number.isInteger(vocabRaw) || (vocabRaw as number) <= 0)) {
    throw new ModelDirError("config.json vocab_size must be a positive integer");
  }
  const eosIdsFromFiles = [
    ...idList(genConfig?.eos_token_id, "generation_config.json eos_token_id"),
    ...idList(modelConfig?.eos_token_id, "config.json eos_token_id"),
  ];
  return {
    ...def,
    addedTokens: added,
    bosToken,
    eosToken,
    templateTokens,
    addBos,
    extraEosTokenIds: eosIdsFromFiles,
    extraEosTokens: [],
    chatTemplate: chatTemplateOf(dir, config),
    modelVocabSize: vocabRaw as number | undefined,
  };
}
