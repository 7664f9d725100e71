// Typed errors of the HTTP layer. Each maps to one HTTP status and one OpenAI error JSON body in app.onError.

export const ApiErrorCodes = {
  invalidRequest: "invalid_request",
  invalidValue: "invalid_value",
  unknownField: "unknown_field",
  unsupported: "unsupported_parameter",
  contextLengthExceeded: "context_length_exceeded",
  requestTooLarge: "request_too_large",
  invalidJson: "invalid_json",
  invalidApiKey: "invalid_api_key",
  modelNotFound: "model_not_found",
  notFound: "not_found",
  noWorkers: "no_workers_available",
  overloaded: "overloaded",
  workerGone: "worker_gone",
  workerFailed: "worker_failed",
  deadlineExceeded: "deadline_exceeded",
  internal: "internal_error",
} as const;
export type ApiErrorCode = (typeof ApiErrorCodes)[keyof typeof ApiErrorCodes];

/** OpenAI's error `type` field. */
export type OpenAIErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "server_error";

export interface OpenAIErrorBody {
  error: { message: string; type: OpenAIErrorType; param: string | null; code: ApiErrorCode };
}

export abstract class ApiError extends Error {
  abstract readonly status: 400 | 401 | 404 | 500 | 502 | 503 | 504;
  abstract readonly type: OpenAIErrorType;
  constructor(
    message: string,
    readonly code: ApiErrorCode,
    readonly param: string | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  toJSON(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** The body is malformed or a field is out of range, unknown or unsupported. */
export class InvalidRequestError extends ApiError {
  readonly status = 400;
  readonly type = "invalid_request_error";
  constructor(message: string, param: string | null = null, code: ApiErrorCode = ApiErrorCodes.invalidValue, options?: ErrorOptions) {
    super(message, code, param, options);
    this.name = "InvalidRequestError";
  }
}

/** The body is larger than the configured limit. A 400 like every other invalid request (as the issue asks and
 * OpenAI does), with its own code. */
export class RequestTooLargeError extends ApiError {
  readonly status = 400;
  readonly type = "invalid_request_error";
  constructor(limitBytes: number) {
    super(`request body is larger than ${limitBytes} bytes`, ApiErrorCodes.requestTooLarge);
    this.name = "RequestTooLargeError";
  }
}

export class AuthenticationError extends ApiError {
  readonly status = 401;
  readonly type = "authentication_error";
  constructor(message = "missing or invalid API key (send Authorization: Bearer <key>)") {
    super(message, ApiErrorCodes.invalidApiKey);
    this.name = "AuthenticationError";
  }
}

export class NotFoundError extends ApiError {
  readonly status = 404;
  readonly type = "not_found_error";
  constructor(message: string, code: ApiErrorCode = ApiErrorCodes.notFound, param: string | null = null) {
    super(message, code, param);
    this.name = "NotFoundError";
  }
}

/** No decode worker is registered (or all are draining). */
export class NoWorkersError extends ApiError {
  readonly status = 503;
  readonly type = "server_error";
  constructor(message = "no decode worker is available") {
    super(message, ApiErrorCodes.noWorkers);
    this.name = "NoWorkersError";
  }
}

/** Every decode worker is at its request limit: refused at once rather than queued without bound. */
export class OverloadedError extends ApiError {
  readonly status = 503;
  readonly type = "server_error";
  constructor(limit: number) {
    super(`every decode worker has ${limit} or more requests outstanding (--max-requests-per-worker); retry later`, ApiErrorCodes.overloaded);
    this.name = "OverloadedError";
  }
}

/** The chosen worker vanished (no responders, or its heartbeats stopped): another one may take the request. */
export class WorkerGoneError extends ApiError {
  readonly status = 503;
  readonly type = "server_error";
  constructor(message: string, options?: ErrorOptions) {
    super(message, ApiErrorCodes.workerGone, null, options);
    this.name = "WorkerGoneError";
  }
}

/** A worker failed the request (its error message is passed on). */
export class WorkerFailedError extends ApiError {
  readonly status = 502;
  readonly type = "server_error";
  constructor(message: string, options?: ErrorOptions) {
    super(message, ApiErrorCodes.workerFailed, null, options);
    this.name = "WorkerFailedError";
  }
}

export class DeadlineExceededError extends ApiError {
  readonly status = 504;
  readonly type = "server_error";
  constructor(message = "the request ran past its deadline", options?: ErrorOptions) {
    super(message, ApiErrorCodes.deadlineExceeded, null, options);
    this.name = "DeadlineExceededError";
  }
}

export class InternalError extends ApiError {
  readonly status = 500;
  readonly type = "server_error";
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
