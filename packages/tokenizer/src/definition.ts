import type { EncodingName } from "./encodings.js";
import type { RanksInfo } from "./ranks-file.js";

/** A token added on top of the BPE ranks (HF `added_tokens_decoder`). */
export interface AddedToken {
  content: string;
  /** HF's `special` flag: special tokens are refused in user text unless allowed and skipped by `skipSpecialTokens`. */
  special: boolean;
}

/** Everything a Tokenizer is built from; produced by readModelDir or the fromEncoding/fromRanks factories. */
export interface TokenizerDefinition {
  source:
    | { kind: "named"; name: EncodingName }
    | { kind: "ranks"; ranksText: string; pattern: string; info: RanksInfo };
  /** Where it came from, for messages. */
  origin: string;
  addedTokens: Map<number, AddedToken>;
  bosToken: string | undefined;
  eosToken: string | undefined;
  /** Other special-token variables templates may use (`pad_token`, `unk_token`). */
  templateTokens?: Record<string, string>;
  addBos: boolean;
  /** EOS ids named by generation_config.json / config.json, besides `eosToken`. */
  extraEosTokenIds: number[];
  /** More EOS tokens by text. */
  extraEosTokens: string[];
  chatTemplate: string | undefined;
  /** config.json `vocab_size` (may exceed the tokenizer's ids: padded embeddings). */
  modelVocabSize: number | undefined;
  /** Unicode normalization of text before encoding (tokenizer.json's normalizer); none when undefined. */
  normalization?: "NFC" | "NFKC";
}
