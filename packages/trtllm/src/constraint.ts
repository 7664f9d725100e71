// Drives one constrained request (trtd_executor_set_token_mask): feeds each output token to the request's
// TokenConstraint and hands the engine the mask of the next sampled token. The engine runs the request's next
// forward pass meanwhile and waits only with its sampling, so the mask work overlaps the step (C ABI 4,
// "Constrained decoding" in trtd_executor.h).
import { InvalidArgumentError, RequestFailedError } from "./errors.js";
import type { TokenConstraint, TokenMask } from "./types.js";

export interface ConstraintHost {
  /** trtd_executor_set_token_mask; returns the native status. */
  setTokenMask(requestId: number, mask: Uint32Array): number;
  cancel(requestId: number): boolean;
  /** The native status as a typed error. */
  statusError(status: number): Error;
}

const NOT_FOUND = -2;

export class ConstraintDriver {
  readonly #host: ConstraintHost;
  readonly #constraint: TokenConstraint;
  readonly #words: number;
  #id = 0;
  /** Output tokens already accepted before they arrive as output (a generation-only request's first token). */
  #skip = 0;
  #busy: Promise<void> = Promise.resolve();
  #done = false;
  /** Why the driver cancelled the request; the final chunk carries it instead of "cancelled". */
  error: RequestFailedError | undefined;

  constructor(host: ConstraintHost, constraint: TokenConstraint, vocabSize: number) {
    if (typeof constraint?.acceptToken !== "function" || typeof constraint?.nextTokenMask !== "function") {
      throw new InvalidArgumentError("constraint must have acceptToken(token) and nextTokenMask()");
    }
    this.#host = host;
    this.#constraint = constraint;
    this.#words = Math.ceil(vocabSize / 32);
  }

  /**
   * After enqueue: the first sampled token's mask. A generation-only request's first output token is the context
   * phase's, not sampled: the constraint accepts it here and the mask is for the second token.
   */
  start(requestId: number, contextFirstToken: number | undefined): void {
    this.#id = requestId;
    if (contextFirstToken !== undefined) {
      this.#skip = 1;
      this.#enqueueStep([contextFirstToken]);
    } else {
      this.#enqueueStep([]);
    }
  }

  /**
   * Output tokens of a chunk, in order; after a non-final chunk the next mask goes to the engine. After the final
   * chunk the constraint is never touched again (its owner may free it as soon as the stream ends).
   */
  onTokens(tokens: readonly number[], final: boolean): void {
    if (this.#done) return;
    if (final) {
      this.#done = true;
      return;
    }
    const fresh = tokens.slice(Math.min(this.#skip, tokens.length));
    this.#skip -= tokens.length - fresh.length;
    if (fresh.length > 0) this.#enqueueStep(fresh); // the re-emitted context-phase token already has its mask out
  }

  // Steps run one after another: a mask may be a promise (xgrammar fills it asynchronously).
  #enqueueStep(tokens: readonly number[]): void {
    this.#busy = this.#busy.then(() => this.#step(tokens)).catch((cause) => this.#fail(`the token constraint failed: ${(cause as Error).message}`, cause));
  }

  async #step(tokens: readonly number[]): Promise<void> {
    if (this.error || this.#done) return;
    for (const t of tokens) {
      if (!this.#constraint.acceptToken(t)) return this.#fail(`the token constraint rejected token ${t}`);
    }
    if (this.#done) return;
    if (this.#constraint.isTerminated?.()) {
      // The grammar is complete, yet the engine goes on: its stop tokens do not include the constraint's.
      return this.#fail("the token constraint is complete but the request did not stop (its stop tokens differ from the constraint's)");
    }
    const mask = toWords(await this.#constraint.nextTokenMask(), this.#words);
    if (this.#done) return;
    const status = this.#host.setTokenMask(this.#id, mask);
    if (status === NOT_FOUND) return; // finished or cancelled meanwhile
    if (status !== 0) throw this.#host.statusError(status);
  }

  #fail(message: string, cause?: unknown): void {
    if (this.error || this.#done) return;
    this.error = new RequestFailedError(message, cause === undefined ? {} : { cause });
    this.#host.cancel(this.#id);
  }
}

function toWords(mask: TokenMask, words: number): Uint32Array {
  if (!(mask instanceof Uint32Array || mask instanceof Int32Array)) {
    throw new InvalidArgumentError("nextTokenMask() must give a Uint32Array or Int32Array");
  }
  if (mask.length !== words) {
    throw new InvalidArgumentError(`the token mask has ${mask.length} words; the vocabulary needs ${words}`);
  }
  return mask instanceof Uint32Array ? mask : new Uint32Array(mask.buffer, mask.byteOffset, mask.length);
}
