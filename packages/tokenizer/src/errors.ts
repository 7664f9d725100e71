/** Error codes of @trtd/tokenizer, one per failure. */
export const TokenizerErrorCode = {
  /** The model directory lacks a usable tokenizer, or a config file is not valid JSON / has wrong types. */
  MODEL_DIR_INVALID: "MODEL_DIR_INVALID",
  /** A tiktoken ranks file (`tokenizer.model`) is malformed. */
  RANKS_MALFORMED: "RANKS_MALFORMED",
  /** `tiktoken_encoding` / `fromEncoding` names an encoding the tiktoken package does not ship. */
  UNKNOWN_ENCODING: "UNKNOWN_ENCODING",
  /** Special tokens conflict (id used twice, id collides with a BPE rank, bad id). */
  SPECIAL_TOKENS_INVALID: "SPECIAL_TOKENS_INVALID",
  /** The text contains special-token text that the caller did not allow. */
  SPECIAL_TOKEN_NOT_ALLOWED: "SPECIAL_TOKEN_NOT_ALLOWED",
  /** A token id is not an integer in [0, vocabSize). */
  INVALID_TOKEN_ID: "INVALID_TOKEN_ID",
  /** The chat template failed to parse or render (or raised an exception itself). */
  CHAT_TEMPLATE_FAILED: "CHAT_TEMPLATE_FAILED",
  /** The messages given to `applyChatTemplate` are not `{role, content}` objects. */
  INVALID_MESSAGES: "INVALID_MESSAGES",
  /** Options are out of range (e.g. empty stop strings). */
  INVALID_OPTIONS: "INVALID_OPTIONS",
  /** The tokenizer was used after `free()`. */
  TOKENIZER_FREED: "TOKENIZER_FREED",
  /** `encodeAsync` did not finish within its timeout, or was aborted. */
  ENCODE_TIMEOUT: "ENCODE_TIMEOUT",
  ENCODE_ABORTED: "ENCODE_ABORTED",
  /** The encode worker thread failed (crashed, exited). */
  ENCODE_WORKER_FAILED: "ENCODE_WORKER_FAILED",
  /** The detokenizer was pushed to after it stopped or was flushed. */
  DETOKENIZER_FINISHED: "DETOKENIZER_FINISHED",
} as const;
export type TokenizerErrorCode = (typeof TokenizerErrorCode)[keyof typeof TokenizerErrorCode];

/** Base class: every error thrown by this package is a TokenizerError with a `code`. */
export class TokenizerError extends Error {
  readonly code: TokenizerErrorCode;
  constructor(code: TokenizerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TokenizerError";
    this.code = code;
  }
}

export class ModelDirError extends TokenizerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(TokenizerErrorCode.MODEL_DIR_INVALID, message, options);
    this.name = "ModelDirError";
  }
}

export class RanksFormatError extends TokenizerError {
  /** 1-based line number of the first bad line, when one line is to blame. */
  readonly line: number | undefined;
  constructor(message: string, line?: number, options?: { cause?: unknown }) {
    super(TokenizerErrorCode.RANKS_MALFORMED, line === undefined ? message : `line ${line}: ${message}`, options);
    this.name = "RanksFormatError";
    this.line = line;
  }
}

export class UnknownEncodingError extends TokenizerError {
  readonly encoding: string;
  constructor(encoding: string, known: readonly string[]) {
    super(TokenizerErrorCode.UNKNOWN_ENCODING, `unknown tiktoken encoding "${encoding}" (known: ${known.join(", ")})`);
    this.name = "UnknownEncodingError";
    this.encoding = encoding;
  }
}

export class SpecialTokensError extends TokenizerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(TokenizerErrorCode.SPECIAL_TOKENS_INVALID, message, options);
    this.name = "SpecialTokensError";
  }
}

export class SpecialTokenNotAllowedError extends TokenizerError {
  /** The special token text found in the input, when known. */
  readonly token: string | undefined;
  constructor(token: string | undefined, options?: { cause?: unknown }) {
    super(
      TokenizerErrorCode.SPECIAL_TOKEN_NOT_ALLOWED,
      `text contains special token ${token ?? "(unknown)"} that is not allowed here`,
      options,
    );
    this.name = "SpecialTokenNotAllowedError";
    this.token = token;
  }
}

export class InvalidTokenIdError extends TokenizerError {
  readonly tokenId: unknown;
  constructor(tokenId: unknown, vocabSize: number) {
    super(TokenizerErrorCode.INVALID_TOKEN_ID, `token id ${String(tokenId)} is not an integer in [0, ${vocabSize})`);
    this.name = "InvalidTokenIdError";
    this.tokenId = tokenId;
  }
}

export class ChatTemplateError extends TokenizerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(TokenizerErrorCode.CHAT_TEMPLATE_FAILED, message, options);
    this.name = "ChatTemplateError";
  }
}

export class InvalidMessagesError extends TokenizerError {
  constructor(message: string) {
    super(TokenizerErrorCode.INVALID_MESSAGES, message);
    this.name = "InvalidMessagesError";
  }
}

export class InvalidOptionsError extends TokenizerError {
  constructor(message: string) {
    super(TokenizerErrorCode.INVALID_OPTIONS, message);
    this.name = "InvalidOptionsError";
  }
}

export class TokenizerFreedError extends TokenizerError {
  constructor() {
    super(TokenizerErrorCode.TOKENIZER_FREED, "tokenizer was used after free()");
    this.name = "TokenizerFreedError";
  }
}

export class EncodeTimeoutError extends TokenizerError {
  constructor(timeoutMs: number) {
    super(TokenizerErrorCode.ENCODE_TIMEOUT, `encodeAsync did not finish within ${timeoutMs} ms`);
    this.name = "EncodeTimeoutError";
  }
}

export class EncodeAbortedError extends TokenizerError {
  constructor(options?: { cause?: unknown }) {
    super(TokenizerErrorCode.ENCODE_ABORTED, "encodeAsync was aborted", options);
    this.name = "EncodeAbortedError";
  }
}

export class EncodeWorkerError extends TokenizerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(TokenizerErrorCode.ENCODE_WORKER_FAILED, message, options);
    this.name = "EncodeWorkerError";
  }
}

export class DetokenizerFinishedError extends TokenizerError {
  constructor(state: "stopped" | "flushed") {
    super(TokenizerErrorCode.DETOKENIZER_FINISHED, `detokenizer already ${state}; create a new one per sequence`);
    this.name = "DetokenizerFinishedError";
  }
}

const CLIENT_CODES: ReadonlySet<TokenizerErrorCode> = new Set([
  TokenizerErrorCode.SPECIAL_TOKEN_NOT_ALLOWED,
  TokenizerErrorCode.INVALID_TOKEN_ID,
  TokenizerErrorCode.CHAT_TEMPLATE_FAILED,
  TokenizerErrorCode.INVALID_MESSAGES,
  TokenizerErrorCode.INVALID_OPTIONS,
]);

/**
 * Whether an error was caused by the caller's input (bad ids, messages the template refuses, special-token text)
 * rather than by the model files or the server (timeouts, worker failure, use after free). For mapping to HTTP 400.
 */
export function isClientInputError(err: unknown): err is TokenizerError {
  return err instanceof TokenizerError && CLIENT_CODES.has(err.code);
}
