import { DetokenizerFinishedError, InvalidOptionsError } from "./errors.js";

/** What the detokenizer needs from a tokenizer. */
export interface TokenSource {
  tokenBytes(id: number): Uint8Array;
  /** The token's text when its bytes are complete UTF-8 on their own, else null (cached by the tokenizer). */
  tokenText(id: number): string | null;
  isSpecialToken(id: number): boolean;
}

export interface DetokenizerOptions {
  /** Stop strings: output ends before the first occurrence of any of them. At most 16, none empty. */
  stop?: readonly string[];
  /** Leave special tokens (EOS, ChatML markers...) out of the text. Default true (as vLLM and HF pipelines do). */
  skipSpecialTokens?: boolean;
}

export interface DetokenizerOutput {
  /** New text, safe to send: complete characters only, never part of a possible stop string. */
  text: string;
  /** Set once, on the call where a stop string was found; `text` ends right before it. */
  stopped?: { stop: string };
}

export const MAX_STOP_STRINGS = 16;
/** Longest stop string accepted, in UTF-16 code units. */
export const MAX_STOP_LENGTH = 1024;

/**
 * Turns a stream of token ids into text for streaming responses. UTF-8 characters split across tokens are held
 * until complete (WHATWG streaming TextDecoder, so the concatenated output equals decoding all ids at once);
 * text that could be the start of a stop string is held until it is known not to be one.
 */
export class IncrementalDetokenizer {
  readonly #source: TokenSource;
  readonly #stops: readonly string[];
  /** Proper prefixes of the stop strings, keyed by their last UTF-16 code unit, longest first. */
  readonly #prefixesByLastUnit = new Map<number, string[]>();
  readonly #skipSpecial: boolean;
  readonly #decoder = new TextDecoder("utf-8");
  /** Mirrors whether #decoder holds bytes of an incomplete character. */
  readonly #utf8 = new Utf8Tracker();
  /** Decoded text not yet emitted: a suffix that may begin a stop string. */
  #held = "";
  #state: "open" | "stopped" | "flushed" = "open";
  #stoppedBy: string | undefined;
  #tokens = 0;

  constructor(source: TokenSource, options: DetokenizerOptions = {}) {
    const stops = options.stop ?? [];
    if (!Array.isArray(stops) || stops.length > MAX_STOP_STRINGS) {
      throw new InvalidOptionsError(`stop must be an array of at most ${MAX_STOP_STRINGS} strings`);
    }
    for (const s of stops) {
      if (typeof s !== "string" || s.length === 0 || s.length > MAX_STOP_LENGTH) {
        throw new InvalidOptionsError(`stop strings must be non-empty strings of at most ${MAX_STOP_LENGTH} characters`);
      }
    }
    this.#source = source;
    this.#stops = [...stops];
    for (const stop of new Set(stops)) {
      for (let n = 1; n < stop.length; n++) {
        const unit = stop.charCodeAt(n - 1);
        const list = this.#prefixesByLastUnit.get(unit) ?? [];
        list.push(stop.slice(0, n));
        this.#prefixesByLastUnit.set(unit, list);
      }
    }
    for (const list of this.#prefixesByLastUnit.values()) list.sort((a, b) => b.length - a.length);
    this.#skipSpecial = options.skipSpecialTokens ?? true;
  }

  /** The stop string that ended the output, if one did. */
  get stoppedBy(): string | undefined {
    return this.#stoppedBy;
  }

  /** Number of token ids pushed so far. */
  get tokenCount(): number {
    return this.#tokens;
  }

  /**
   * Adds generated ids; returns the text that became final. After a stop string was found, further pushes return
   * empty text (tokens already in flight are ignored); pushing after `flush()` throws.
   */
  push(ids: ArrayLike<number>): DetokenizerOutput {
    if (this.#state === "flushed") throw new DetokenizerFinishedError("flushed");
    if (typeof ids !== "object" || ids === null || typeof ids.length !== "number") {
      throw new InvalidOptionsError("push() takes an array of token ids");
    }
    if (this.#state === "stopped") return { text: "" };
    // Look every id up before changing state, so a bad id leaves the detokenizer as it was.
    for (let i = 0; i < ids.length; i++) this.#source.tokenBytes(ids[i]!); // throws InvalidTokenIdError
    this.#tokens += ids.length;
    let text = "";
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (this.#skipSpecial && this.#source.isSpecialToken(id)) continue;
      // Fast path: no partial character pending and the token is whole UTF-8 — its cached text is exactly what
      // the streaming decoder would produce.
      const whole = this.#utf8.clean ? this.#source.tokenText(id) : null;
      if (whole !== null) {
        text += whole;
        continue;
      }
      const bytes = this.#source.tokenBytes(id);
      if (bytes.length === 0) continue;
      text += this.#decoder.decode(bytes, { stream: true });
      this.#utf8.feed(bytes);
    }
    return this.#emit(text, false);
  }

  /** Ends the sequence: emits held text (an incomplete trailing character becomes U+FFFD). Idempotent. */
  flush(): DetokenizerOutput {
    if (this.#state !== "open") return { text: "" };
    const out = this.#emit(this.#decoder.decode(), true);
    if (this.#state === "open") this.#state = "flushed";
    return out;
  }

  #emit(newText: string, final: boolean): DetokenizerOutput {
    if (this.#stops.length === 0) return { text: this.#held + newText };
    const text = this.#held + newText;
    this.#held = "";
    // Earliest occurrence of any stop string; the emitted part never contains one (it would have been found).
    let at = -1;
    let which = "";
    for (const s of this.#stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (at < 0 || i < at || (i === at && s.length > which.length))) {
        at = i;
        which = s;
      }
    }
    if (at >= 0) {
      this.#state = "stopped";
      this.#stoppedBy = which;
      return { text: text.slice(0, at), stopped: { stop: which } };
    }
    if (final) return { text };
    const keep = this.#holdBack(text);
    this.#held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep) };
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  #holdBack(text: string): number {
    if (text.length === 0) return 0;
    // Only prefixes ending in text's last code unit can match; they are indexed by that unit, longest first.
    const candidates = this.#prefixesByLastUnit.get(text.charCodeAt(text.length - 1));
    if (candidates === undefined) return 0;
    for (const prefix of candidates) if (text.endsWith(prefix)) return prefix.length;
    return 0;
  }
}

/**
 * The byte-sequence state of the WHATWG UTF-8 decoder (encoding.spec.whatwg.org, "UTF-8 decoder"), without the
 * output: `clean` is true exactly when a streaming TextDecoder fed the same bytes holds no pending bytes.
 */
class Utf8Tracker {
  #needed = 0;
  #seen = 0;
  #lower = 0x80;
  #upper = 0xbf;

  get clean(): boolean {
    return this.#needed === 0;
  }

  feed(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (this.#needed === 0) {
        if (b >= 0xc2 && b <= 0xdf) this.#needed = 1;
        else if (b >= 0xe0 && b <= 0xef) {
          if (b === 0xe0) this.#lower = 0xa0;
          if (b === 0xed) this.#upper = 0x9f;
          this.#needed = 2;
        } else if (b >= 0xf0 && b <= 0xf4) {
          if (b === 0xf0) this.#lower = 0x90;
          if (b === 0xf4) this.#upper = 0x8f;
          this.#needed = 3;
        }
        // ASCII, or an invalid lead byte (one U+FFFD): nothing pending
        continue;
      }
      if (b < this.#lower || b > this.#upper) {
        // error: the pending sequence becomes U+FFFD and this byte is processed again from the start state
        this.#reset();
        i--;
        continue;
      }
      this.#lower = 0x80;
      this.#upper = 0xbf;
      if (++this.#seen === this.#needed) this.#reset();
    }
  }

  #reset(): void {
    this.#needed = 0;
    this.#seen = 0;
    this.#lower = 0x80;
    this.#upper = 0xbf;
  }
}
