// Special tokens in text, with tiktoken's rules (its wasm `encode(text, allowed, disallowed)` and core
// `_encode_native`), so that both encoders (native and WASM) only ever see ordinary text:
// 1. disallowed specials: the leftmost match of any of them anywhere in the text is an error naming it;
// 2. split: the leftmost match of any special; an allowed one becomes its id, a match that is not allowed is
//    skipped (the search resumes one character after where it started), the text between is ordinary text.
// tiktoken joins the specials into one regex in hash-map order, so when one special is a prefix of another
// which wins is unspecified there; here the longest wins.
import { SpecialTokenNotAllowedError } from "./errors.js";

/** Ordinary text to encode, or a special token's id. */
export type Part = string | number;

const MAX_CACHED_REGEXPS = 16;

function alternation(texts: readonly string[]): RegExp | null {
  if (texts.length === 0) return null;
  const sorted = [...texts].sort((a, b) => b.length - a.length || (a < b ? -1 : a > b ? 1 : 0));
  return new RegExp(sorted.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g");
}

export class SpecialSplitter {
  readonly #ids: ReadonlyMap<string, number>;
  readonly #all: RegExp | null;
  /** Regexps of disallowed sets, by their sorted texts. */
  readonly #disallowed = new Map<string, RegExp | null>();

  /** `specials`: text → id of every special and added token. */
  constructor(specials: ReadonlyMap<string, number>) {
    this.#ids = specials;
    this.#all = alternation([...specials.keys()]);
  }

  /**
   * Splits `text` into ordinary text and special-token ids. `allowed`: "all" or texts; `disallowed`: "all" (every
   * special not allowed) or texts. Throws SpecialTokenNotAllowedError on a disallowed special.
   */
  split(text: string, allowed: "all" | readonly string[], disallowed: "all" | readonly string[]): Part[] {
    const all = this.#all;
    if (all === null) return [text];
    all.lastIndex = 0;
    if (all.exec(text) === null) return [text]; // no special text at all: the common case, one scan
    const allowedSet = allowed === "all" ? null : new Set(allowed);
    const isAllowed = (t: string): boolean => allowedSet === null || allowedSet.has(t);
    const bad = this.#disallowedRegExp(disallowed === "all" ? [...this.#ids.keys()].filter((t) => !isAllowed(t)) : disallowed);
    if (bad) {
      bad.lastIndex = 0;
      const m = bad.exec(text);
      if (m) throw new SpecialTokenNotAllowedError(m[0]);
    }
    const parts: Part[] = [];
    let start = 0;
    for (;;) {
      let m: RegExpExecArray | null;
      let from = start;
      for (;;) {
        all.lastIndex = from;
        m = all.exec(text);
        if (m === null || isAllowed(m[0])) break;
        from = m.index + 1;
      }
      if (m === null) break;
      if (m.index > start) parts.push(text.slice(start, m.index));
      parts.push(this.#ids.get(m[0])!);
      start = m.index + m[0].length;
    }
    if (start < text.length) parts.push(start === 0 ? text : text.slice(start));
    return parts;
  }

  #disallowedRegExp(texts: readonly string[]): RegExp | null {
    if (texts.length === 0) return null;
    const key = [...texts].sort().join("\u0000");
    let re = this.#disallowed.get(key);
    if (re === undefined) {
      re = alternation(texts);
      if (this.#disallowed.size >= MAX_CACHED_REGEXPS) this.#disallowed.delete(this.#disallowed.keys().next().value!);
      this.#disallowed.set(key, re);
    }
    return re;
  }
}
