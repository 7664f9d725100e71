// Typed errors of @trtd/trtllm: one class per failure, each with `name`, `code`, `cause` and, for errors that
// come from the native library, the trtd_status value.

export const ExecutorErrorCode = {
  InvalidArgument: "INVALID_ARGUMENT",
  NotFound: "NOT_FOUND",
  InvalidState: "INVALID_STATE",
  KvCapacity: "KV_CAPACITY",
  KvExhausted: "KV_EXHAUSTED",
  BufferTooSmall: "BUFFER_TOO_SMALL",
  ModelLoad: "MODEL_LOAD",
  ShutDown: "SHUT_DOWN",
  Unsupported: "UNSUPPORTED",
  EngineNativeTransfer: "ENGINE_NATIVE_TRANSFER",
  OutOfMemory: "OUT_OF_MEMORY",
  QueueFull: "QUEUE_FULL",
  Internal: "INTERNAL",
  LibraryLoad: "LIBRARY_LOAD",
  AbiMismatch: "ABI_MISMATCH",
  Closed: "CLOSED",
  RequestFailed: "REQUEST_FAILED",
} as const;
export type ExecutorErrorCode = (typeof ExecutorErrorCode)[keyof typeof ExecutorErrorCode];

/** trtd_status values of trtd_executor.h. */
export const NativeStatus = {
  OK: 0,
  INVALID_ARGUMENT: -1,
  NOT_FOUND: -2,
  INVALID_STATE: -3,
  KV_CAPACITY: -4,
  KV_EXHAUSTED: -5,
  BUFFER_TOO_SMALL: -6,
  MODEL_LOAD: -7,
  SHUT_DOWN: -8,
  UNSUPPORTED: -9,
  ENGINE_NATIVE_TRANSFER: -10,
  OUT_OF_MEMORY: -11,
  QUEUE_FULL: -12,
  INTERNAL: -100,
} as const;

export interface ExecutorErrorOptions {
  cause?: unknown;
  /** The native trtd_status, when the error came from the library. */
  status?: number;
}

/** Base class of every error this package throws. */
export class ExecutorError extends Error {
  readonly code: ExecutorErrorCode;
  readonly status: number | undefined;
  constructor(code: ExecutorErrorCode, message: string, options: ExecutorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ExecutorError";
    this.code = code;
    this.status = options.status;
  }
}

function errorClass<N extends string>(name: N, code: ExecutorErrorCode) {
  const cls = class extends ExecutorError {
    constructor(message: string, options: ExecutorErrorOptions = {}) {
      super(code, message, options);
      this.name = name;
    }
  };
  Object.defineProperty(cls, "name", { value: name });
  return cls;
}

/** Bad input: token ids outside the vocabulary, prompt too long, zero max tokens, invalid sampling, bad config. */
export class InvalidArgumentError extends errorClass("InvalidArgumentError", ExecutorErrorCode.InvalidArgument) {}
/** Unknown or no longer live request / import id. */
export class NotFoundError extends errorClass("NotFoundError", ExecutorErrorCode.NotFound) {}
/** The call does not fit the object's state (e.g. export of a request that is not a finished context-only one). */
export class InvalidStateError extends errorClass("InvalidStateError", ExecutorErrorCode.InvalidState) {}
/** The request needs more KV blocks than the whole pool: it can never run here. */
export class KvCapacityError extends errorClass("KvCapacityError", ExecutorErrorCode.KvCapacity) {}
/** Not enough free KV blocks right now (KV import reservation); retry later. */
export class KvExhaustedError extends errorClass("KvExhaustedError", ExecutorErrorCode.KvExhausted) {}
/** A destination buffer is smaller than the data. */
export class BufferTooSmallError extends errorClass("BufferTooSmallError", ExecutorErrorCode.BufferTooSmall) {}
/** The model directory is missing, unreadable or malformed. */
export class ModelLoadError extends errorClass("ModelLoadError", ExecutorErrorCode.ModelLoad) {}
/** The native executor is shutting down. */
export class ShutDownError extends errorClass("ShutDownError", ExecutorErrorCode.ShutDown) {}
/** The executor implementation does not offer this call. */
export class UnsupportedError extends errorClass("UnsupportedError", ExecutorErrorCode.Unsupported) {}
/** The engine moves KV itself (TensorRT-LLM cache transceiver): carry the context phase state instead. */
export class EngineNativeTransferError extends errorClass("EngineNativeTransferError", ExecutorErrorCode.EngineNativeTransfer) {}
export class OutOfMemoryError extends errorClass("OutOfMemoryError", ExecutorErrorCode.OutOfMemory) {}
/** The executor's request queue is full (maxQueuedRequests); retry later. */
export class QueueFullError extends errorClass("QueueFullError", ExecutorErrorCode.QueueFull) {}
/** A bug or an unexpected native failure. */
export class InternalError extends errorClass("InternalError", ExecutorErrorCode.Internal) {}
/** The native library could not be loaded. */
export class LibraryLoadError extends errorClass("LibraryLoadError", ExecutorErrorCode.LibraryLoad) {}
/** The native library implements another version of trtd_executor.h. */
export class AbiMismatchError extends errorClass("AbiMismatchError", ExecutorErrorCode.AbiMismatch) {}
/** The executor (or the KV handle's executor) was closed. */
export class ExecutorClosedError extends errorClass("ExecutorClosedError", ExecutorErrorCode.Closed) {}
/** A request failed inside the engine after it was accepted (carried by its final chunk). */
export class RequestFailedError extends errorClass("RequestFailedError", ExecutorErrorCode.RequestFailed) {}

const byStatus = new Map<number, new (message: string, options?: ExecutorErrorOptions) => ExecutorError>([
  [NativeStatus.INVALID_ARGUMENT, InvalidArgumentError],
  [NativeStatus.NOT_FOUND, NotFoundError],
  [NativeStatus.INVALID_STATE, InvalidStateError],
  [NativeStatus.KV_CAPACITY, KvCapacityError],
  [NativeStatus.KV_EXHAUSTED, KvExhaustedError],
  [NativeStatus.BUFFER_TOO_SMALL, BufferTooSmallError],
  [NativeStatus.MODEL_LOAD, ModelLoadError],
  [NativeStatus.SHUT_DOWN, ShutDownError],
  [NativeStatus.UNSUPPORTED, UnsupportedError],
  [NativeStatus.ENGINE_NATIVE_TRANSFER, EngineNativeTransferError],
  [NativeStatus.OUT_OF_MEMORY, OutOfMemoryError],
  [NativeStatus.QUEUE_FULL, QueueFullError],
  [NativeStatus.INTERNAL, InternalError],
]);

/** Maps a native status and message to the matching error class. */
export function errorFromStatus(status: number, message: string): ExecutorError {
  const cls = byStatus.get(status) ?? InternalError;
  return new cls(message || `native status ${status}`, { status });
}
