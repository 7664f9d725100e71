// Grammars compiled once per tokenizer vocabulary and cached by spec; one matcher per constrained sequence.
import type { CompiledGrammar as XCompiledGrammar, GrammarCompiler as XGrammarCompiler, GrammarMatcher as XGrammarMatcher, TokenizerInfo } from "@mlc-ai/web-xgrammar";
import { CompilerFreedError, InvalidGrammarError, MatcherFreedError, VocabularyError } from "./errors.js";
import { grammarKey, JSON_OBJECT_SCHEMA, jsonSchemaArgs, type GrammarSpec, type JsonGrammarOptions, type JsonSchema } from "./spec.js";
import { byteLevelVocabulary, type VocabularySource } from "./vocabulary.js";
import { xgrammar, xgrammarCall } from "./xgrammar.js";

export interface GrammarCompilerOptions extends JsonGrammarOptions {
  /** Logit rows of the model, which the masks cover (default: the tokenizer's vocabSize). */
  vocabSize?: number;
  /** Tokens that end a sequence; a matcher allows them once its grammar is complete (default: the tokenizer's EOS ids). */
  stopTokenIds?: readonly number[];
  /** Compiled grammars kept, least recently used dropped first (default 64). */
  cacheSize?: number;
}

export interface GrammarCacheStats {
  entries: number;
  hits: number;
  misses: number;
  /** Matchers created and not yet freed. */
  liveMatchers: number;
}

/** A grammar compiled for the compiler's vocabulary. Shared: freed when evicted and its last matcher is freed. */
export class CompiledGrammar {
  readonly key: string;
  readonly #owner: GrammarCompiler;
  #handle: XCompiledGrammar | undefined;
  #matchers = 0;
  #cached = true;

  /** @internal */
  constructor(owner: GrammarCompiler, key: string, handle: XCompiledGrammar) {
    this.#owner = owner;
    this.key = key;
    this.#handle = handle;
  }

  /** A new matcher at the grammar's start. The caller owns it: free() it when its sequence ends. */
  async matcher(): Promise<GrammarMatcher> {
    if (!this.#handle) throw new CompilerFreedError();
    const { GrammarMatcher: XMatcher } = xgrammar();
    const m = await XMatcher.createGrammarMatcher(this.#handle, [...this.#owner.stopTokenIds]);
    this.#matchers++;
    this.#owner._matcherCreated();
    return new GrammarMatcher(m, this.#owner.vocabSize, () => {
      this.#matchers--;
      this.#owner._matcherFreed();
      this.#disposeIfUnused();
    });
  }

  /** @internal the cache dropped it */
  _evict(): void {
    this.#cached = false;
    this.#disposeIfUnused();
  }

  #disposeIfUnused(): void {
    if (this.#cached || this.#matchers > 0 || !this.#handle) return;
    this.#handle.dispose();
    this.#handle = undefined;
  }
}

/**
 * The state of one constrained sequence: accepts its tokens and gives the mask of the next one. It is the
 * TokenConstraint of @trtd/trtllm's `generate({ constraint })`.
 */
export class GrammarMatcher {
  readonly vocabSize: number;
  #m: XGrammarMatcher | undefined;
  readonly #onFree: () => void;

  /** @internal */
  constructor(m: XGrammarMatcher, vocabSize: number, onFree: () => void) {
    this.#m = m;
    this.vocabSize = vocabSize;
    this.#onFree = onFree;
  }

  #live(): XGrammarMatcher {
    if (!this.#m) throw new MatcherFreedError();
    return this.#m;
  }

  /** Advances past a token; false (state unchanged) when the grammar does not allow it here. */
  acceptToken(token: number): boolean {
    return this.#live().acceptToken(token);
  }

  /** The next token's mask: ceil(vocabSize / 32) words, bit t % 32 of word t / 32 set when token t is allowed. */
  async nextTokenMask(): Promise<Int32Array> {
    return this.#live().getNextTokenBitmask();
  }

  /** True once a stop token was accepted at the grammar's end. */
  isTerminated(): boolean {
    return this.#live().isTerminated();
  }

  get freed(): boolean {
    return this.#m === undefined;
  }

  /** Frees the matcher's WASM memory; idempotent. Later calls throw MatcherFreedError. */
  free(): void {
    if (!this.#m) return;
    this.#m.dispose();
    this.#m = undefined;
    this.#onFree();
  }
}

// web-xgrammar 0.1.27 writes a string with maxLength as characters of [^"\\\r\n], which lets raw control characters
// (a tab, U+0000..U+001F) into the string: not JSON. Its unbounded strings exclude them; the bounded ones get the
// same class here, in the grammar's EBNF text, before it is compiled. (A string with maxLength then has no escapes.)
const BOUNDED_STRING_CHAR = '[^\\"\\\\\\r\\n]';
const JSON_STRING_CHAR = '[^\\0-\\x1f\\"\\\\\\r\\n]';

async function compileJsonSchema(compiler: XGrammarCompiler, schema: JsonSchema, strict: boolean, options: JsonGrammarOptions): Promise<XCompiledGrammar> {
  const { Grammar } = xgrammar();
  const grammar = await Grammar.fromJSONSchema(...jsonSchemaArgs(schema, strict, options));
  const text = grammar.toString();
  grammar.dispose();
  return compiler.compileGrammar(text.split(BOUNDED_STRING_CHAR).join(JSON_STRING_CHAR), "root");
}

/** Compiles grammars for one tokenizer vocabulary (xgrammar's GrammarCompiler) and caches them by spec. */
export class GrammarCompiler {
  readonly vocabSize: number;
  readonly stopTokenIds: readonly number[];
  readonly #options: JsonGrammarOptions;
  readonly #cacheSize: number;
  #info: TokenizerInfo | undefined;
  #compiler: XGrammarCompiler | undefined;
  readonly #cache = new Map<string, CompiledGrammar>(); // insertion order = recency
  readonly #pending = new Map<string, Promise<CompiledGrammar>>();
  #hits = 0;
  #misses = 0;
  #liveMatchers = 0;

  private constructor(info: TokenizerInfo, compiler: XGrammarCompiler, vocabSize: number, stop: readonly number[], options: GrammarCompilerOptions) {
    this.#info = info;
    this.#compiler = compiler;
    this.vocabSize = vocabSize;
    this.stopTokenIds = stop;
    this.#options = { whitespace: options.whitespace, maxWhitespace: options.maxWhitespace };
    this.#cacheSize = options.cacheSize ?? 64;
  }

  /**
   * Reads the vocabulary (for a 100k vocabulary about 0.5 s) and makes the compiler. One per tokenizer per process.
   * @throws VocabularyError
   */
  static async create(tokenizer: VocabularySource, options: GrammarCompilerOptions = {}): Promise<GrammarCompiler> {
    const vocabSize = options.vocabSize ?? tokenizer.vocabSize;
    const stop = [...(options.stopTokenIds ?? tokenizer.eosTokenIds)];
    if (stop.length === 0) throw new VocabularyError("no stop tokens: give stopTokenIds (the model's EOS ids)");
    for (const t of stop) {
      if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new VocabularyError(`stop token ${t} is outside the vocabulary [0, ${vocabSize})`);
    }
    if (options.cacheSize !== undefined && (!Number.isInteger(options.cacheSize) || options.cacheSize < 1)) {
      throw new VocabularyError(`cacheSize must be a positive integer, got ${options.cacheSize}`);
    }
    const vocab = byteLevelVocabulary(tokenizer, vocabSize);
    const { TokenizerInfo: XInfo, GrammarCompiler: XCompiler } = xgrammar();
    const info = await xgrammarCall(() => XInfo.createTokenizerInfo(vocab, "byte_level", false, vocabSize, stop));
    const compiler = await xgrammarCall(() => XCompiler.createGrammarCompiler(info, false)); // the cache is ours
    return new GrammarCompiler(info, compiler, vocabSize, stop, options);
  }

  /**
   * The compiled grammar of a spec: from the cache, or compiled now (tens of ms for a small schema; runs on the
   * calling thread). Specs are not re-checked here: pass what checkGrammarSpec returned, or trusted specs.
   * @throws InvalidGrammarError (xgrammar cannot build it), CompilerFreedError
   */
  compile(spec: GrammarSpec): Promise<CompiledGrammar> {
    if (!this.#compiler) return Promise.reject(new CompilerFreedError());
    const compiler = this.#compiler;
    const key = grammarKey(spec, this.#options);
    const hit = this.#cache.get(key);
    if (hit) {
      this.#hits++;
      this.#cache.delete(key);
      this.#cache.set(key, hit);
      return Promise.resolve(hit);
    }
    const pending = this.#pending.get(key);
    if (pending) {
      this.#hits++;
      return pending;
    }
    this.#misses++;
    const job = (async () => {
      try {
        const handle = await xgrammarCall(() => this.#compileWith(compiler, spec));
        const compiled = new CompiledGrammar(this, key, handle);
        if (!this.#compiler) {
          compiled._evict(); // freed meanwhile
          throw new CompilerFreedError();
        }
        this.#cache.set(key, compiled);
        while (this.#cache.size > this.#cacheSize) {
          const [oldest, old] = this.#cache.entries().next().value!;
          this.#cache.delete(oldest);
          old._evict();
        }
        return compiled;
      } catch (cause) {
        if (cause instanceof CompilerFreedError) throw cause;
        throw new InvalidGrammarError("grammar", `cannot be compiled: ${(cause as Error).message}`, { cause });
      } finally {
        this.#pending.delete(key);
      }
    })();
    this.#pending.set(key, job);
    return job;
  }

  #compileWith(compiler: XGrammarCompiler, spec: GrammarSpec): Promise<XCompiledGrammar> {
    switch (spec.type) {
      case "json_object":
        return compiler.compileJSONSchema(...jsonSchemaArgs(JSON_OBJECT_SCHEMA, false, this.#options));
      case "json_schema":
        return compileJsonSchema(compiler, spec.schema, spec.strict ?? false, this.#options);
      case "structural_tag":
        return compiler.compileStructuralTag(JSON.stringify(spec.structuralTag));
    }
  }

  /** Compiles (or finds) the spec's grammar and makes a matcher at its start; the caller frees the matcher. */
  async matcher(spec: GrammarSpec): Promise<GrammarMatcher> {
    return (await this.compile(spec)).matcher();
  }

  get cacheStats(): GrammarCacheStats {
    return { entries: this.#cache.size, hits: this.#hits, misses: this.#misses, liveMatchers: this.#liveMatchers };
  }

  /** @internal */
  _matcherCreated(): void {
    this.#liveMatchers++;
  }

  /** @internal */
  _matcherFreed(): void {
    this.#liveMatchers--;
  }

  /**
   * Frees the compiler, its vocabulary and the cached grammars; grammars still used by matchers are freed with
   * their last matcher. Idempotent; compile() afterwards throws CompilerFreedError.
   */
  free(): void {
    if (!this.#compiler) return;
    for (const c of this.#cache.values()) c._evict();
    this.#cache.clear();
    this.#compiler.dispose();
    this.#compiler = undefined;
    this.#info?.dispose();
    this.#info = undefined;
  }
}
