// Token logprobs in OpenAI's two shapes: chat's `logprobs.content` entries and the legacy completions' parallel
// lists. The workers send, per token, the executor's logprobs of the raw model distribution (before penalties,
// logit bias and temperature; docs/design/serving.md#logprobs) as ids; this file turns ids into token text.
import type { WireTokenLogprobs } from "@trtd/apps-common";
import { WorkerFailedError } from "../errors.js";
import type { TextCodec } from "../text-codec.js";

/** One output token's logprobs with the token text and bytes, ready for either shape. */
export interface TokenLogprob {
  token: string;
  bytes: number[];
  logprob: number;
  top: { token: string; bytes: number[]; logprob: number }[];
}

const lossy = new TextDecoder("utf-8");
/** JSON has no -Infinity: an impossible token's logprob is reported as -9999 (vLLM's convention). */
const MIN_LOGPROB = -9999;

/**
 * Collects the logprobs of a request's tokens as the chunks arrive: `take()` hands out those not yet sent (for a
 * stream chunk, including tokens whose text the detokenizer still holds back), `all()` every one (a whole response).
 * Every token of a stop-string hit's chunk is counted, also those after the stop string.
 */
export class LogprobsCollector {
  readonly #codec: Pick<TextCodec, "tokenBytes">;
  readonly #entries: TokenLogprob[] = [];
  #sent = 0;
  #textOffset = 0;

  constructor(codec: Pick<TextCodec, "tokenBytes">) {
    this.#codec = codec;
  }

  #piece(id: number, logprob: number) {
    const b = this.#codec.tokenBytes(id);
    return { token: lossy.decode(b), bytes: [...b], logprob: Math.max(logprob, MIN_LOGPROB) };
  }

  /** The logprobs of a chunk's tokens. @throws WorkerFailedError when the worker sent none for a token */
  push(tokens: readonly number[], logprobs: readonly (WireTokenLogprobs | null)[] | undefined): void {
    if (tokens.length === 0) return;
    if (!logprobs || logprobs.length !== tokens.length) throw new WorkerFailedError("the worker sent tokens without their logprobs");
    tokens.forEach((id, i) => {
      const lp = logprobs[i];
      if (!lp) throw new WorkerFailedError(`the worker sent token ${id} without its logprobs`);
      this.#entries.push({ ...this.#piece(id, lp.logprob), top: lp.top.map((t) => this.#piece(t.id, t.logprob)) });
    });
  }

  /** The entries not taken yet. */
  take(): TokenLogprob[] {
    const out = this.#entries.slice(this.#sent);
    this.#sent = this.#entries.length;
    return out;
  }

  all(): TokenLogprob[] {
    return this.#entries;
  }

  /** Completions' `text_offset` of the next taken entries: characters of the token texts before them. */
  advanceTextOffset(entries: readonly TokenLogprob[]): number[] {
    return entries.map((e) => {
      const at = this.#textOffset;
      this.#textOffset += e.token.length;
      return at;
    });
  }
}

/** Chat's `choices[].logprobs`: `{ content: [{ token, logprob, bytes, top_logprobs }], refusal: null }`. */
export function chatLogprobs(entries: readonly TokenLogprob[]) {
  return {
    content: entries.map((e) => ({
      token: e.token,
      logprob: e.logprob,
      bytes: e.bytes,
      top_logprobs: e.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes })),
    })),
    refusal: null,
  };
}

/**
 * Legacy completions' `choices[].logprobs`: parallel `tokens`, `token_logprobs`, `top_logprobs` (token text →
 * logprob; two ids with the same text keep the better) and `text_offset` (into the completion's text).
 */
export function completionLogprobs(entries: readonly TokenLogprob[], textOffsets: readonly number[]) {
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => {
      const m: Record<string, number> = {};
      for (const t of e.top) if (!(t.token in m)) m[t.token] = t.logprob;
      return m;
    }),
    text_offset: [...textOffsets],
  };
}
