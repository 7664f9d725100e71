// The grammars of a worker's constrained requests (response_format): the model directory's tokenizer and one
// @trtd/grammar compiler for the executor's vocabulary, made on the first constrained request (a deployment that
// never gets one pays nothing), a compiled-grammar cache shared by all requests, and one matcher per request that
// runs next to the executor (a mask never crosses the request plane). Prefill and decode workers both use it.
import { GrammarCompiler, type GrammarMatcher, type GrammarSpec } from "@trtd/grammar";
import { Tokenizer } from "@trtd/tokenizer";

export interface WorkerGrammarStats {
  /** Matchers of requests in flight (0 when idle: the leak check). */
  liveMatchers: number;
  cachedGrammars: number;
  hits: number;
  misses: number;
}

export class WorkerGrammars {
  readonly #modelDir: string;
  readonly #vocabSize: number;
  #ready: Promise<{ tok: Tokenizer; compiler: GrammarCompiler }> | undefined;
  #made: { tok: Tokenizer; compiler: GrammarCompiler } | undefined;
  #closed = false;

  /** @param vocabSize the executor's logit rows (`executor.model.vocabSize`), which the masks cover */
  constructor(modelDir: string, vocabSize: number) {
    this.#modelDir = modelDir;
    this.#vocabSize = vocabSize;
  }

  #compiler(): Promise<GrammarCompiler> {
    if (this.#closed) return Promise.reject(new Error("the worker's grammars are closed"));
    this.#ready ??= (async () => {
      const tok = Tokenizer.fromModelDir(this.#modelDir);
      try {
        return (this.#made = { tok, compiler: await GrammarCompiler.create(tok, { vocabSize: this.#vocabSize }) });
      } catch (err) {
        tok.free();
        throw err;
      }
    })();
    this.#ready.catch(() => (this.#ready = undefined)); // a failed start is retried by the next request
    return this.#ready.then((r) => r.compiler);
  }

  /**
   * A matcher for a request's grammar, advanced past `generated` (the tokens a migrated request already produced).
   * The caller frees it when the request's stream ends.
   * @throws InvalidGrammarError (the spec cannot be compiled, or `generated` does not fit it)
   */
  async matcher(spec: GrammarSpec, generated: readonly number[] = []): Promise<GrammarMatcher> {
    const m = await (await this.#compiler()).matcher(spec);
    for (const t of generated) {
      if (!m.acceptToken(t)) {
        m.free();
        throw new Error(`grammar: the tokens generated before migration do not match it (token ${t})`);
      }
    }
    return m;
  }

  stats(): WorkerGrammarStats {
    const c = this.#made?.compiler.cacheStats;
    return { liveMatchers: c?.liveMatchers ?? 0, cachedGrammars: c?.entries ?? 0, hits: c?.hits ?? 0, misses: c?.misses ?? 0 };
  }

  /** Frees the compiler and the tokenizer (after the executor stopped: no matcher is in use then). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#ready?.catch(() => undefined);
    this.#ready = undefined;
    this.#made?.compiler.free();
    this.#made?.tok.free();
    this.#made = undefined;
  }
}
