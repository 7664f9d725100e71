// The tokenizer's vocabulary as xgrammar reads it: every id's bytes, written in the GPT-2 byte-to-unicode alphabet
// ("byte_level"), so xgrammar decodes each token to its exact bytes (partial UTF-8 included). Special tokens and
// ids no token owns (padded embedding rows) become "": xgrammar treats empty tokens as special and never allows
// them inside a grammar; the stop tokens are allowed where the grammar may end.
import { VocabularyError } from "./errors.js";

/** What the compiler needs of a tokenizer; @trtd/tokenizer's Tokenizer has it. */
export interface VocabularySource {
  readonly vocabSize: number;
  readonly eosTokenIds: readonly number[];
  tokenBytes(id: number): Uint8Array;
  isSpecialToken(id: number): boolean;
}

/** GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to U+0100 upwards in byte order. */
function byteAlphabet(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) out.push(String.fromCharCode(printable(b) ? b : next++));
  return out;
}

/** The encoded vocabulary, one string per id in [0, vocabSize). */
export function byteLevelVocabulary(source: VocabularySource, vocabSize: number): string[] {
  if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new VocabularyError(`vocabSize must be a positive integer, got ${vocabSize}`);
  const alphabet = byteAlphabet();
  const out = new Array<string>(vocabSize);
  for (let id = 0; id < vocabSize; id++) {
    let text = "";
    if (id < source.vocabSize && !source.isSpecialToken(id)) {
      let bytes: Uint8Array;
      try {
        bytes = source.tokenBytes(id);
      } catch {
        bytes = new Uint8Array(0); // an id no token owns
      }
      for (const b of bytes) text += alphabet[b];
    }
    out[id] = text;
  }
  return out;
}
