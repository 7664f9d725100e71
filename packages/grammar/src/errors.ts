// Typed errors of @trtd/grammar: one class per failure, with `name`, `code` and `cause`.
export const GrammarErrorCode = {
  InvalidGrammar: "INVALID_GRAMMAR",
  MatcherFreed: "MATCHER_FREED",
  CompilerFreed: "COMPILER_FREED",
  Vocabulary: "VOCABULARY_INVALID",
} as const;
export type GrammarErrorCode = (typeof GrammarErrorCode)[keyof typeof GrammarErrorCode];

export class GrammarError extends Error {
  readonly code: GrammarErrorCode;
  constructor(code: GrammarErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "GrammarError";
  }
}

/** The grammar spec is malformed or names something the grammar engine cannot build (message says what). */
export class InvalidGrammarError extends GrammarError {
  /** The field of the spec at fault, as the client sent it (e.g. "response_format.json_schema.schema"). */
  readonly field: string;
  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super(GrammarErrorCode.InvalidGrammar, `${field}: ${message}`, options);
    this.name = "InvalidGrammarError";
    this.field = field;
  }
}

/** A matcher used after free(). */
export class MatcherFreedError extends GrammarError {
  constructor() {
    super(GrammarErrorCode.MatcherFreed, "the grammar matcher was freed");
    this.name = "MatcherFreedError";
  }
}

/** A compiler used after free(). */
export class CompilerFreedError extends GrammarError {
  constructor() {
    super(GrammarErrorCode.CompilerFreed, "the grammar compiler was freed");
    this.name = "CompilerFreedError";
  }
}

/** The tokenizer's vocabulary cannot be given to the grammar engine (e.g. a vocabulary size below its ids). */
export class VocabularyError extends GrammarError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(GrammarErrorCode.Vocabulary, message, options);
    this.name = "VocabularyError";
  }
}
