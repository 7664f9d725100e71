// The api's error catalogue: every code the api puts on the wire (OpenAI's `error.code`, snake_case, in HTTP
// error bodies and SSE error events), each with its HTTP status and OpenAI error `type`, in one table. The
// typed errors below only pick a code; status and type come from the table, and app.onError turns any of them
// into OpenAI error JSON. docs/design/serving.md shows the same table (a test keeps the two equal).

/** OpenAI's error `type` field. */
export type OpenAIErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "server_error";

/** HTTP statuses the api answers errors with. */
export type ApiErrorStatus = 400 | 401 | 404 | 413 | 500 | 502 | 503 | 504;

export const ApiErrorCodes = {
  /** The body is not a JSON object, a required field is missing, or Content-Type is not application/json. */
  invalidRequest: "invalid_request",
  /** A field has the wrong type or is out of range (also client input the tokenizer refuses: bad token ids, special-token text). */
  invalidValue: "invalid_value",
  unknownField: "unknown_field",
  /** A known OpenAI field (or value) this server does not implement. */
  unsupported: "unsupported_parameter",
  /** The prompt, or prompt + max_tokens, does not fit the context or --max-prompt-tokens. */
  contextLengthExceeded: "context_length_exceeded",
  /** The body is not valid UTF-8 or not valid JSON. */
  invalidJson: "invalid_json",
  /** The body is larger than --max-body-bytes (413; the connection is closed after the answer). */
  requestTooLarge: "request_too_large",
  invalidApiKey: "invalid_api_key",
  modelNotFound: "model_not_found",
  /** No such route. */
  notFound: "not_found",
  noWorkers: "no_workers_available",
  overloaded: "overloaded",
  workerGone: "worker_gone",
  workerFailed: "worker_failed",
  deadlineExceeded: "deadline_exceeded",
  /** The tokenizer failed for a reason that is not the client's input (encode worker crashed, timed out, freed). */
  tokenizerFailed: "tokenizer_failed",
  internal: "internal_error",
} as const;
export type ApiErrorCode = (typeof ApiErrorCodes)[keyof typeof ApiErrorCodes];

export interface ApiErrorKind {
  readonly status: ApiErrorStatus;
  readonly type: OpenAIErrorType;
}

const client = (status: 400 | 413 = 400): ApiErrorKind => ({ status, type: "invalid_request_error" });
const server = (status: 500 | 502 | 503 | 504): ApiErrorKind => ({ status, type: "server_error" });

/** The one table: each wire code's HTTP status and OpenAI error type. */
export const API_ERROR_CATALOGUE: Readonly<Record<ApiErrorCode, ApiErrorKind>> = {
  invalid_request: client(),
  invalid_value: client(),
  unknown_field: client(),
  unsupported_parameter: client(),
  context_length_exceeded: client(),
  invalid_json: client(),
  request_too_large: client(413),
  invalid_api_key: { status: 401, type: "authentication_error" },
  model_not_found: { status: 404, type: "not_found_error" },
  not_found: { status: 404, type: "not_found_error" },
  no_workers_available: server(503),
  overloaded: server(503),
  worker_gone: server(503),
  worker_failed: server(502),
  deadline_exceeded: server(504),
  tokenizer_failed: server(500),
  internal_error: server(500),
};

export interface OpenAIErrorBody {
  error: { message: string; type: OpenAIErrorType; param: string | null; code: ApiErrorCode };
}

/** Base class of the api's errors: a wire code (status and type from {@link API_ERROR_CATALOGUE}), a message, the field. */
export abstract class ApiError extends Error {
  constructor(
    message: string,
    readonly code: ApiErrorCode,
    readonly param: string | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  get status(): ApiErrorStatus {
    return API_ERROR_CATALOGUE[this.code].status;
  }
  get type(): OpenAIErrorType {
    return API_ERROR_CATALOGUE[this.code].type;
  }
  toJSON(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** The client's request is wrong: a 4xx. `code` picks which (default invalid_value); `param` names the field as sent. */
export class InvalidRequestError extends ApiError {
  constructor(message: string, param: string | null = null, code: ApiErrorCode = ApiErrorCodes.invalidValue, options?: ErrorOptions) {
    super(message, code, param, options);
    this.name = "InvalidRequestError";
  }
}

/** The body is larger than the configured limit: 413, answered with `Connection: close` (the rest of the body is not read). */
export class RequestTooLargeError extends ApiError {
  readonly limitBytes: number;
  constructor(limitBytes: number) {
    super(`request body is larger than ${limitBytes} bytes`, ApiErrorCodes.requestTooLarge);
    this.name = "RequestTooLargeError";
    this.limitBytes = limitBytes;
  }
}

export class AuthenticationError extends ApiError {
  constructor(message = "missing or invalid API key (send Authorization: Bearer <key>)") {
    super(message, ApiErrorCodes.invalidApiKey);
    this.name = "AuthenticationError";
  }
}

export class NotFoundError extends ApiError {
  constructor(message: string, code: typeof ApiErrorCodes.notFound | typeof ApiErrorCodes.modelNotFound = ApiErrorCodes.notFound, param: string | null = null) {
    super(message, code, param);
    this.name = "NotFoundError";
  }
}

/** No decode worker is registered (or all are draining). */
export class NoWorkersError extends ApiError {
  constructor(message = "no decode worker is available") {
    super(message, ApiErrorCodes.noWorkers);
    this.name = "NoWorkersError";
  }
}

/** Every decode worker is at its request limit: refused at once rather than queued without bound. */
export class OverloadedError extends ApiError {
  constructor(limit: number) {
    super(`every decode worker has ${limit} or more requests outstanding (--max-requests-per-worker); retry later`, ApiErrorCodes.overloaded);
    this.name = "OverloadedError";
  }
}

/** The chosen worker vanished (no responders, or its heartbeats stopped): another one may take the request. */
export class WorkerGoneError extends ApiError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ApiErrorCodes.workerGone, null, options);
    this.name = "WorkerGoneError";
  }
}

/** A worker failed the request (its error message is passed on). */
export class WorkerFailedError extends ApiError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ApiErrorCodes.workerFailed, null, options);
    this.name = "WorkerFailedError";
  }
}

export class DeadlineExceededError extends ApiError {
  constructor(message = "the request ran past its deadline", options?: ErrorOptions) {
    super(message, ApiErrorCodes.deadlineExceeded, null, options);
    this.name = "DeadlineExceededError";
  }
}

/** The tokenizer failed on the server's side (not because of the client's input): 500, logged. */
export class TokenizerFailedError extends ApiError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ApiErrorCodes.tokenizerFailed, null, options);
    this.name = "TokenizerFailedError";
  }
}

export class InternalError extends ApiError {
  constructor(message = "internal error", options?: ErrorOptions) {
    super(message, ApiErrorCodes.internal, null, options);
    this.name = "InternalError";
  }
}

/** Anything thrown becomes an ApiError; unknown errors become InternalError (their message is kept). */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  return new InternalError(err instanceof Error ? err.message : String(err), { cause: err });
}
