import { RanksFormatError } from "./errors.js";

/** What a validated ranks text holds (the text itself is passed to tiktoken unchanged). */
export interface RanksInfo {
  /** Number of BPE ranks. */
  count: number;
  /** Largest rank + 1. Equals `count` when ranks are contiguous from 0. */
  end: number;
  /** Ranks present, when they are not exactly 0..count-1 (otherwise undefined). */
  sparse: Set<number> | undefined;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const RANK = /^(0|[1-9][0-9]{0,9})$/;

/**
 * Validates Llama-3-style tiktoken ranks text (`<base64> <rank>` per line) before it reaches the tiktoken WASM
 * module, which aborts with an opaque `RuntimeError: unreachable` on malformed input or on vocabularies it cannot
 * encode with. Checks: line shape, canonical base64, integer ranks, no duplicate ranks or byte strings, and all
 * 256 single bytes present (BPE starts from single bytes; a missing one panics at encode time).
 */
export function validateRanksText(text: string, source = "ranks file"): RanksInfo {
  if (text.length === 0) throw new RanksFormatError(`${source} is empty`);
  const seenRanks = new Set<number>();
  const seenBytes = new Set<string>();
  const singleBytes = new Uint8Array(256);
  let count = 0;
  let end = 0;
  let lineNo = 0;
  let start = 0;
  while (start <= text.length) {
    let nl = text.indexOf("\n", start);
    if (nl < 0) nl = text.length;
    lineNo++;
    let line = text.slice(start, nl);
    start = nl + 1;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line.length === 0) {
      if (start > text.length) break; // trailing newline
      throw new RanksFormatError(`${source}: empty line`, lineNo);
    }
    const sp = line.indexOf(" ");
    if (sp <= 0 || line.indexOf(" ", sp + 1) >= 0) {
      throw new RanksFormatError(`${source}: expected "<base64> <rank>", got ${JSON.stringify(line.slice(0, 60))}`, lineNo);
    }
    const b64 = line.slice(0, sp);
    const rankText = line.slice(sp + 1);
    if (!BASE64.test(b64) || b64.length % 4 !== 0) {
      throw new RanksFormatError(`${source}: invalid base64 token ${JSON.stringify(b64.slice(0, 60))}`, lineNo);
    }
    if (!RANK.test(rankText)) {
      throw new RanksFormatError(`${source}: rank is not a non-negative integer: ${JSON.stringify(rankText.slice(0, 30))}`, lineNo);
    }
    const rank = Number(rankText);
    if (rank > 0x7fffffff) throw new RanksFormatError(`${source}: rank ${rank} is too large`, lineNo);
    const bytes = Buffer.from(b64, "base64");
    // Buffer.from ignores bad padding bits; re-encoding catches non-canonical base64.
    if (bytes.length === 0 || bytes.toString("base64") !== b64) {
      throw new RanksFormatError(`${source}: non-canonical base64 ${JSON.stringify(b64.slice(0, 60))}`, lineNo);
    }
    if (seenRanks.has(rank)) throw new RanksFormatError(`${source}: duplicate rank ${rank}`, lineNo);
    const key = bytes.toString("latin1");
    if (seenBytes.has(key)) throw new RanksFormatError(`${source}: duplicate token bytes ${b64}`, lineNo);
    seenRanks.add(rank);
    seenBytes.add(key);
    if (bytes.length === 1) singleBytes[bytes[0]!] = 1;
    count++;
    if (rank + 1 > end) end = rank + 1;
  }
  const missing = singleBytes.indexOf(0);
  if (missing >= 0) {
    throw new RanksFormatError(`${source}: single byte 0x${missing.toString(16).padStart(2, "0")} has no rank (all 256 bytes must)`);
  }
  return { count, end, sparse: end === count ? undefined : seenRanks };
}
