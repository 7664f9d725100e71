import type { Tiktoken } from "tiktoken";
import { CHATML_TEMPLATE } from "@trtd/model";
import { ChatTemplate, PLAIN_TEMPLATE, type ChatMessage, type ChatTemplateOptions } from "./chat-template.js";
import type { AddedToken, TokenizerDefinition } from "./definition.js";
import {
  buildTiktoken,
  ENCODING_NAMES,
  encodingRankRanges,
  isEncodingName,
  LLAMA3_PATTERN,
  loadEncodingJson,
  type EncoderSpec,
} from "./encodings.js";
import { EncodeWorker, type WorkerNative } from "./encode-worker.js";
import {
  InvalidOptionsError,
  InvalidTokenIdError,
  SpecialTokenNotAllowedError,
  SpecialTokensError,
  TokenizerError,
  TokenizerFreedError,
  UnknownEncodingError,
} from "./errors.js";
import { IncrementalDetokenizer, type DetokenizerOptions } from "./detokenizer.js";
import { readModelDir } from "./model-dir.js";
import { koffiModulePath, NATIVE_SIGNATURES, NativeBpe, nativePatternId } from "./native-bpe.js";
import { validateRanksText } from "./ranks-file.js";
import { SpecialSplitter, type Part } from "./specials.js";

export interface EncodeOptions {
  /**
   * Special tokens recognised as such in the text: "all", or a list of their texts. Default: none.
   * Non-special added tokens (`special: false`) are always recognised.
   */
  allowedSpecial?: "all" | readonly string[];
  /**
   * What happens to special-token text that is not allowed: "error" (default) throws SpecialTokenNotAllowedError;
   * "text" encodes it as ordinary text.
   */
  disallowedSpecial?: "error" | "text";
  /** Prepend the BOS token (not if the result already starts with it). Default: the model's `add_bos_token`. */
  addBos?: boolean;
}

export interface EncodeAsyncOptions extends EncodeOptions {
  signal?: AbortSignal;
  /** Bound on the wait for the worker thread. Default 30 000 ms. */
  timeoutMs?: number;
}

export interface DecodeOptions {
  /** Leave out special tokens (BOS, EOS, ChatML markers...). Default false. */
  skipSpecialTokens?: boolean;
}

export interface EncodeChatOptions extends ChatTemplateOptions {
  /**
   * Message contents may contain special-token text that then becomes real special tokens (prompt injection).
   * Default false: such content throws SpecialTokenNotAllowedError.
   */
  allowSpecialInContent?: boolean;
}

/** Options of the factories that take no model directory. */
export interface TokenizerOptions {
  /** Extra special tokens, text → id (e.g. ChatML's `<|im_start|>`: 100264). */
  specialTokens?: Record<string, number>;
  bosToken?: string;
  /** Texts of the tokens that end generation; the first is `eos_token`. */
  eosTokens?: string[];
  addBos?: boolean;
  chatTemplate?: string;
  /** The model's vocab size when its embeddings are padded past the tokenizer's ids. */
  vocabSize?: number;
}

export interface RanksOptions extends TokenizerOptions {
  /** Split pattern; default the Llama 3 pattern. */
  pattern?: string;
}

/** Inputs at least this long go to the worker thread in encodeAsync (measured: ~4 ms of encoding on the 2-core VM). */
export const ASYNC_ENCODE_THRESHOLD_CHARS = 16_384;

const KIND_NONE = 0;
const KIND_RANK = 1;
const KIND_SPECIAL = 2;
const KIND_ADDED = 3;
const utf8 = new TextDecoder("utf-8");
const utf8Fatal = new TextDecoder("utf-8", { fatal: true });

/** Which encoder a tokenizer uses (for tests and the bench; not exported from the package). */
export let encoderEngine: (t: Tokenizer) => "native" | "wasm";

/**
 * A tiktoken BPE tokenizer with the model's special tokens, BOS/EOS and chat template.
 * Encodes with the native BPE library (libtrtd_bpe.so) when it is built and implements the split pattern, else
 * with the tiktoken WASM package (same ids); decodes with WASM.
 * Holds WASM and native memory (and possibly a worker thread): call `free()` when done.
 */
export class Tokenizer {
  /** Size of the id space: the larger of the model's `vocab_size` and the tokenizer's largest id + 1. */
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly bosToken: string | undefined;
  /** Ids that end generation (eos_token first, then generation_config / config.json / options). */
  readonly eosTokenIds: readonly number[];
  /** Whether `encode` prepends BOS by default. */
  readonly addBos: boolean;
  /** Special and added tokens, text → id. */
  readonly specialTokens: ReadonlyMap<string, number>;
  /** The model's own chat template, or undefined when a default is used. */
  readonly chatTemplateSource: string | undefined;
  /** Where the tokenizer came from (for logs). */
  readonly origin: string;

  #enc: Tiktoken | undefined;
  #native: NativeBpe | undefined;
  readonly #workerNative: WorkerNative | undefined;
  readonly #splitter: SpecialSplitter;
  readonly #spec: EncoderSpec;
  readonly #normalization: "NFC" | "NFKC" | undefined;
  readonly #kinds: Uint8Array;
  readonly #alwaysAllowed: string[];
  readonly #specialTexts: string[];
  readonly #templateTokens: Record<string, string>;
  readonly #bytesCache: Array<Uint8Array | undefined>;
  readonly #textCache: Array<string | null | undefined>;
  #template: ChatTemplate | undefined;
  #worker: EncodeWorker | undefined;
  #specialRe: RegExp | null | undefined;

  static {
    encoderEngine = (t) => (t.#native ? "native" : "wasm");
  }

  private constructor(def: TokenizerDefinition) {
    this.origin = def.origin;
    let rankEnd: number;
    let markRanks: (kinds: Uint8Array) => void;
    let ranksText: string;
    let pattern: string;
    const specials: Record<string, number> = {};
    if (def.source.kind === "named") {
      const json = loadEncodingJson(def.source.name);
      ranksText = json.bpe_ranks;
      pattern = json.pat_str;
      const ranges = encodingRankRanges(json);
      rankEnd = Math.max(...ranges.map((r) => r[1]));
      markRanks = (k) => ranges.forEach(([a, b]) => k.fill(KIND_RANK, a, b));
      Object.assign(specials, json.special_tokens);
    } else {
      const { info } = def.source;
      ranksText = def.source.ranksText;
      pattern = def.source.pattern;
      rankEnd = info.end;
      markRanks = (k) => (info.sparse ? info.sparse.forEach((r) => (k[r] = KIND_RANK)) : k.fill(KIND_RANK, 0, info.end));
    }
    const added = new Map<number, AddedToken>(def.addedTokens);
    for (const [content, id] of Object.entries(specials)) if (!added.has(id)) added.set(id, { content, special: true });

    let maxId = rankEnd - 1;
    for (const id of added.keys()) maxId = Math.max(maxId, id);
    this.vocabSize = Math.max(maxId + 1, def.modelVocabSize ?? 0);
    const kinds = new Uint8Array(this.vocabSize);
    markRanks(kinds);
    const byText = new Map<string, number>();
    for (const [id, tok] of added) {
      if (kinds[id] === KIND_RANK) {
        throw new SpecialTokensError(`${def.origin}: added token ${JSON.stringify(tok.content)} id ${id} is also a BPE rank`);
      }
      const other = byText.get(tok.content);
      if (other !== undefined && other !== id) {
        throw new SpecialTokensError(`${def.origin}: token ${JSON.stringify(tok.content)} has two ids, ${other} and ${id}`);
      }
      byText.set(tok.content, id);
      kinds[id] = tok.special ? KIND_SPECIAL : KIND_ADDED;
    }
    this.#kinds = kinds;
    this.specialTokens = byText;
    this.#specialTexts = [...added.values()].filter((t) => t.special).map((t) => t.content);
    this.#alwaysAllowed = [...added.values()].filter((t) => !t.special).map((t) => t.content);
    const allSpecials = Object.fromEntries(byText);
    this.#spec =
      def.source.kind === "named"
        ? { kind: "named", name: def.source.name, specials: allSpecials }
        : { kind: "ranks", ranksText: def.source.ranksText, pattern: def.source.pattern, specials: allSpecials };

    const idOf = (text: string | undefined, what: string): number | undefined => {
      if (text === undefined) return undefined;
      const id = byText.get(text);
      if (id === undefined) throw new SpecialTokensError(`${def.origin}: ${what} ${JSON.stringify(text)} is not a special token`);
      return id;
    };
    this.bosToken = def.bosToken;
    this.#templateTokens = { ...def.templateTokens };
    this.bosTokenId = idOf(def.bosToken, "bos_token");
    this.addBos = def.addBos && this.bosTokenId !== undefined;
    const eos: number[] = [];
    const eosId = idOf(def.eosToken, "eos_token");
    const extraIds = def.extraEosTokens.map((t) => idOf(t, "eos token")!);
    for (const id of [...(eosId === undefined ? [] : [eosId]), ...def.extraEosTokenIds, ...extraIds]) {
      if (!eos.includes(id)) eos.push(id);
    }
    for (const id of eos) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new SpecialTokensError(`${def.origin}: eos token id ${id} is outside the vocabulary (${this.vocabSize})`);
      }
    }
    this.eosTokenIds = Object.freeze(eos);
    this.chatTemplateSource = def.chatTemplate;
    this.#template = def.chatTemplate === undefined ? undefined : new ChatTemplate(def.chatTemplate);
    this.#bytesCache = new Array(this.vocabSize);
    this.#textCache = new Array(this.vocabSize);
    this.#normalization = def.normalization;
    this.#splitter = new SpecialSplitter(byText);
    this.#enc = buildTiktoken(this.#spec);
    this.#native = NativeBpe.create(ranksText, pattern);
    this.#workerNative = this.#native
      ? { libPath: this.#native.libraryPath, koffiPath: koffiModulePath(), pattern: nativePatternId(pattern)!, signatures: { ...NATIVE_SIGNATURES } }
      : undefined;
  }

  /** Loads the tokenizer of a model directory (docs/design/contracts.md). */
  static fromModelDir(dir: string): Tokenizer {
    return new Tokenizer(readModelDir(dir));
  }

  /** A named encoding shipped in the tiktoken package (cl100k_base, o200k_base, ...). */
  static fromEncoding(name: string, options: TokenizerOptions = {}): Tokenizer {
    if (!isEncodingName(name)) throw new UnknownEncodingError(name, ENCODING_NAMES);
    return new Tokenizer(optionsDefinition({ kind: "named", name }, `tiktoken ${name}`, options));
  }

  /** Tiktoken ranks text (`<base64> <rank>` lines, a Llama-3-style tokenizer.model), validated first. */
  static fromTiktokenRanks(ranksText: string, options: RanksOptions = {}): Tokenizer {
    const info = validateRanksText(ranksText);
    const source = { kind: "ranks" as const, ranksText, pattern: options.pattern ?? LLAMA3_PATTERN, info };
    return new Tokenizer(optionsDefinition(source, "tiktoken ranks", options));
  }

  #encoder(): Tiktoken {
    if (!this.#enc) throw new TokenizerFreedError();
    return this.#enc;
  }

  /** The tokenizer's Unicode normalization (tokenizer.json's normalizer), before any splitting. */
  #normalize(text: string): string {
    return this.#normalization && typeof text === "string" ? text.normalize(this.#normalization) : text;
  }

  #tiktokenArgs(text: unknown, options: EncodeOptions): [allowed: "all" | string[], disallowed: "all" | string[]] {
    // Checked here: the WASM module answers wrong types with `RuntimeError: memory access out of bounds`.
    if (typeof text !== "string") throw new InvalidOptionsError(`text to encode must be a string, got ${typeof text}`);
    const a = options.allowedSpecial;
    if (a !== undefined && a !== "all" && !(Array.isArray(a) && a.every((x) => typeof x === "string"))) {
      throw new InvalidOptionsError('allowedSpecial must be "all" or an array of strings');
    }
    const d = options.disallowedSpecial;
    if (d !== undefined && d !== "error" && d !== "text") throw new InvalidOptionsError('disallowedSpecial must be "error" or "text"');
    const allowed = a === "all" ? "all" : [...this.#alwaysAllowed, ...(a ?? [])];
    return [allowed, options.disallowedSpecial === "text" ? [] : "all"];
  }

  #finish(ids: Uint32Array, options: EncodeOptions): number[] {
    // A preallocated copy: Array.from(Uint32Array) measured 3-5x slower here (32-50 ms for 130k ids on the 2-core
    // VM), on the main thread of every encode, encodeAsync's included.
    const bos = this.bosTokenId;
    const lead = (options.addBos ?? this.addBos) && bos !== undefined && ids[0] !== bos ? 1 : 0;
    const out = new Array<number>(ids.length + lead);
    if (lead) out[0] = bos!;
    for (let i = 0; i < ids.length; i++) out[i + lead] = ids[i]!;
    return out;
  }

  /** Ordinary text (no special tokens) → ids; a native result is a scratch view, valid until the next call. */
  #ordinary(text: string): Uint32Array {
    return this.#native ? this.#native.encode(text) : this.#encoder().encode_ordinary(text);
  }

  #encodeParts(parts: readonly Part[]): Uint32Array {
    if (parts.length === 1 && typeof parts[0] === "string") return this.#ordinary(parts[0]);
    const chunks: Uint32Array[] = [];
    let total = 0;
    for (const p of parts) {
      const c = typeof p === "number" ? Uint32Array.of(p) : this.#ordinary(p).slice();
      chunks.push(c);
      total += c.length;
    }
    const ids = new Uint32Array(total);
    let at = 0;
    for (const c of chunks) {
      ids.set(c, at);
      at += c.length;
    }
    return ids;
  }

  /** Text → token ids. Runs on the calling thread; for long user input prefer `encodeAsync`. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    this.#encoder();
    text = this.#normalize(text);
    const [allowed, disallowed] = this.#tiktokenArgs(text, options);
    const parts = this.#splitter.split(text, allowed, disallowed);
    return this.#finish(this.#encodeParts(parts), options);
  }

  /**
   * Like `encode`, but inputs of ASYNC_ENCODE_THRESHOLD_CHARS or more are encoded on a worker thread so the event
   * loop stays free (a 32k-token prompt takes ~25-30 ms to encode).
   */
  async encodeAsync(text: string, options: EncodeAsyncOptions = {}): Promise<number[]> {
    this.#encoder();
    text = this.#normalize(text);
    const [allowed, disallowed] = this.#tiktokenArgs(text, options);
    if (text.length < ASYNC_ENCODE_THRESHOLD_CHARS) return this.encode(text, options);
    const parts = this.#splitter.split(text, allowed, disallowed);
    this.#worker ??= new EncodeWorker(this.#spec, this.#workerNative);
    const ids = await this.#worker.encode(parts, options.timeoutMs ?? 30_000, options.signal);
    if (!this.#enc) throw new TokenizerFreedError();
    return this.#finish(ids, options);
  }

  /** Whether the encode worker thread is running and how many encodeAsync calls wait on it (for leak checks). */
  encodeWorkerState(): { running: boolean; pending: number } {
    return { running: this.#worker?.running ?? false, pending: this.#worker?.pending ?? 0 };
  }

  #checkedIds(ids: ArrayLike<number>, skipSpecial: boolean): Uint32Array {
    if (typeof ids !== "object" || ids === null || typeof ids.length !== "number") {
      throw new InvalidOptionsError("token ids must be an array of numbers");
    }
    const kinds = this.#kinds;
    const out = new Uint32Array(ids.length);
    let n = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= kinds.length) throw new InvalidTokenIdError(id, kinds.length);
      const k = kinds[id];
      if (k === KIND_NONE || (skipSpecial && k === KIND_SPECIAL)) continue;
      out[n++] = id;
    }
    return out.subarray(0, n);
  }

  /** Throws InvalidTokenIdError unless every id is an integer in [0, vocabSize) (e.g. client-given prompt ids). */
  validateTokenIds(ids: ArrayLike<number>): void {
    this.#encoder();
    const n = this.#kinds.length;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= n) throw new InvalidTokenIdError(id, n);
    }
  }

  /**
   * Token ids → UTF-8 bytes. Ids inside vocabSize that no token owns (padded embedding rows) decode to nothing;
   * ids outside it throw InvalidTokenIdError.
   */
  decodeBytes(ids: ArrayLike<number>, options: DecodeOptions = {}): Uint8Array {
    const enc = this.#encoder();
    return enc.decode(this.#checkedIds(ids, options.skipSpecialTokens ?? false));
  }

  /** Token ids → text; invalid UTF-8 (a sequence cut mid-character) becomes U+FFFD. */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    return utf8.decode(this.decodeBytes(ids, options));
  }

  /** The bytes of one token (empty for unowned ids; cached). */
  tokenBytes(id: number): Uint8Array {
    const enc = this.#encoder();
    const kinds = this.#kinds;
    if (!Number.isInteger(id) || id < 0 || id >= kinds.length) throw new InvalidTokenIdError(id, kinds.length);
    let bytes = this.#bytesCache[id];
    if (bytes === undefined) {
      bytes = kinds[id] === KIND_NONE ? new Uint8Array(0) : enc.decode_single_token_bytes(id);
      this.#bytesCache[id] = bytes;
    }
    return bytes;
  }

  /** The text of one token when its bytes are whole UTF-8 on their own, else null (cached). */
  tokenText(id: number): string | null {
    let text = this.#textCache[id];
    if (text === undefined) {
      try {
        text = utf8Fatal.decode(this.tokenBytes(id));
      } catch (e) {
        if (e instanceof TokenizerError) throw e;
        text = null; // not valid UTF-8 alone (part of a character)
      }
      this.#textCache[id] = text;
    }
    return text;
  }

  /** Whether an id is a special token (added with `special: true`, or one of the encoding's own). */
  isSpecialToken(id: number): boolean {
    return this.#kinds[id] === KIND_SPECIAL;
  }

  /** The id of a special or added token by its text. */
  tokenId(text: string): number | undefined {
    return this.specialTokens.get(text);
  }

  /**
   * The template `applyChatTemplate` uses: the model's, else ChatML (`CHATML_TEMPLATE` of @trtd/model, the one the
   * generated models ship) when the model has its tokens, else plain text.
   */
  get chatTemplate(): string {
    return this.#chatTemplate().source;
  }

  #chatTemplate(): ChatTemplate {
    if (!this.#template) {
      const chatml = this.specialTokens.has("<|im_start|>") && this.specialTokens.has("<|im_end|>");
      this.#template = new ChatTemplate(chatml ? CHATML_TEMPLATE : PLAIN_TEMPLATE);
    }
    return this.#template;
  }

  /** Renders messages with the chat template (Jinja, HF semantics): the prompt text. */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    this.#encoder();
    const eos = this.eosTokenIds[0];
    const eosText = eos === undefined ? undefined : [...this.specialTokens].find(([, id]) => id === eos)?.[0];
    return this.#chatTemplate().render(messages, { ...this.#templateTokens, bos_token: this.bosToken ?? "", eos_token: eosText }, options);
  }

  /**
   * Renders messages and encodes the prompt: special tokens the template writes become special ids, no extra BOS
   * (the template writes it when the model wants it, as HF's apply_chat_template(tokenize=True) does).
   */
  encodeChat(messages: readonly ChatMessage[], options: EncodeChatOptions = {}): number[] {
    const text = this.applyChatTemplate(messages, options);
    if (!options.allowSpecialInContent) this.#refuseSpecialInContent(messages, options.tools);
    return this.encode(text, { allowedSpecial: "all", addBos: false });
  }

  /** Async variant of encodeChat (long prompts are encoded on the worker thread). */
  async encodeChatAsync(messages: readonly ChatMessage[], options: EncodeChatOptions & EncodeAsyncOptions = {}): Promise<number[]> {
    const text = this.applyChatTemplate(messages, options);
    if (!options.allowSpecialInContent) this.#refuseSpecialInContent(messages, options.tools);
    return this.encodeAsync(text, { allowedSpecial: "all", addBos: false, signal: options.signal, timeoutMs: options.timeoutMs });
  }

  #refuseSpecialInContent(messages: readonly ChatMessage[], tools: unknown[] | undefined): void {
    const re = (this.#specialRe ??= specialTextRegExp(this.#specialTexts));
    if (!re) return;
    // Tool definitions and an assistant's tool calls reach the prompt as text too (templates write them as JSON).
    const texts = messages.map((m) => (typeof m.content === "string" ? m.content : JSON.stringify(m.content ?? "")));
    for (const m of messages) if (m.tool_calls !== undefined) texts.push(JSON.stringify(m.tool_calls));
    if (tools !== undefined) texts.push(JSON.stringify(tools));
    for (const text of texts) {
      const hit = re.exec(text);
      if (hit) throw new SpecialTokenNotAllowedError(hit[0]);
    }
  }

  /** A streaming detokenizer for one generated sequence. */
  createDetokenizer(options: DetokenizerOptions = {}): IncrementalDetokenizer {
    return new IncrementalDetokenizer(this, options);
  }

  /** Releases the WASM and native encoders and the worker thread. Later calls throw TokenizerFreedError. Idempotent. */
  free(): void {
    this.#enc?.free();
    this.#enc = undefined;
    this.#native?.free();
    this.#native = undefined;
    this.#bytesCache.length = 0;
    this.#textCache.length = 0;
    void this.#worker?.close();
    this.#worker = undefined;
  }
}

function optionsDefinition(source: TokenizerDefinition["source"], origin: string, o: TokenizerOptions): TokenizerDefinition {
  const addedTokens = new Map<number, AddedToken>();
  for (const [content, id] of Object.entries(o.specialTokens ?? {})) addedTokens.set(id, { content, special: true });
  const def: TokenizerDefinition = {
    source,
    origin,
    addedTokens,
    bosToken: o.bosToken,
    eosToken: o.eosTokens?.[0],
    addBos: o.addBos ?? false,
    extraEosTokenIds: [],
    extraEosTokens: o.eosTokens?.slice(1) ?? [],
    chatTemplate: o.chatTemplate,
    modelVocabSize: o.vocabSize,
  };
  return def;
}

function specialTextRegExp(texts: readonly string[]): RegExp | null {
  if (texts.length === 0) return null;
  return new RegExp(texts.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"));
}
