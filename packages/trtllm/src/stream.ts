// The per-request chunk queue behind Executor.generate: filled by the executor's drain, consumed by one
// async iterator. Bounded by the request itself (maxNewTokens chunks at most).
import type { GenerateChunk } from "./types.js";

export class GenerationStream implements AsyncIterable<GenerateChunk> {
  readonly requestId: number;
  #chunks: GenerateChunk[] = [];
  #waiters: (() => void)[] = [];
  #ended = false;
  #iterating = false;
  #onEarlyExit: () => void;

  /** @internal */
  constructor(requestId: number, onEarlyExit: () => void) {
    this.requestId = requestId;
    this.#onEarlyExit = onEarlyExit;
  }

  /** True once the final chunk arrived. */
  get ended(): boolean {
    return this.#ended;
  }

  /** @internal */
  push(chunk: GenerateChunk): void {
    if (this.#ended) return;
    this.#chunks.push(chunk);
    if (chunk.final) this.#ended = true;
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Collects every chunk: the tokens, the finish reason and the error, if any. */
  async collect(): Promise<{
    tokens: number[];
    finishReason: GenerateChunk["finishReason"];
    error?: GenerateChunk["error"];
    /** With `logprobs`: one entry per token (see GenerateChunk.logprobs). */
    logprobs?: NonNullable<GenerateChunk["logprobs"]>;
  }> {
    const tokens: number[] = [];
    const logprobs: NonNullable<GenerateChunk["logprobs"]> = [];
    let sawLogprobs = false;
    let last: GenerateChunk | undefined;
    for await (const c of this) {
      tokens.push(...c.tokens);
      if (c.logprobs) {
        sawLogprobs = true;
        logprobs.push(...c.logprobs);
      }
      last = c;
    }
    return { tokens, finishReason: last?.finishReason, error: last?.error, ...(sawLogprobs ? { logprobs } : {}) };
  }

  [Symbol.asyncIterator](): AsyncIterator<GenerateChunk> {
    if (this.#iterating) throw new Error(`request ${this.requestId}: a generation stream can be iterated once`);
    this.#iterating = true;
    let done = false;
    return {
      next: async (): Promise<IteratorResult<GenerateChunk>> => {
        while (!done) {
          const c = this.#chunks.shift();
          if (c) {
            if (c.final) done = true;
            return { value: c, done: false };
          }
          if (this.#ended && this.#chunks.length === 0) break;
          await new Promise<void>((resolve) => this.#waiters.push(resolve));
        }
        return { value: undefined, done: true };
      },
      // break / throw in a for-await loop: cancel the request (its KV is freed by the engine).
      return: async (): Promise<IteratorResult<GenerateChunk>> => {
        if (!done && !this.#ended) this.#onEarlyExit();
        done = true;
        return { value: undefined, done: true };
      },
    };
  }
}
