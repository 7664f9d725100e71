// @trtd/trtllm: the executor C ABI (include/trtd_executor.h), its koffi binding and the reference executor.
export { Executor } from "./executor.js";
export { GenerationStream } from "./stream.js";
export { KvExport, KvImport } from "./kv.js";
export { ABI_VERSION, MAX_TOP_LOGPROBS, defaultLibraryPath, executorLibraries, resolveLibraryPath } from "./native.js";
export { deviceTotalMemory, cudaWeightBytes, kvBudgetFromFraction, cudaKvBudget, CUDA_WEIGHT_BYTES_PER_PARAMETER } from "./device.js";
export {
  ExecutorErrorCode,
  NativeStatus,
  ExecutorError,
  InvalidArgumentError,
  NotFoundError,
  InvalidStateError,
  KvCapacityError,
  KvExhaustedError,
  BufferTooSmallError,
  ModelLoadError,
  ShutDownError,
  UnsupportedError,
  EngineNativeTransferError,
  OutOfMemoryError,
  QueueFullError,
  InternalError,
  LibraryLoadError,
  AbiMismatchError,
  ExecutorClosedError,
  RequestFailedError,
  errorFromStatus,
} from "./errors.js";

export type { GpuMemoryBudget } from "./device.js";
export type {
  ExecutorName,
  ExecutorOptions,
  ModelInfo,
  ExecutorKvLayout,
  MemoryKind,
  SamplingOptions,
  TokenLogprobs,
  RequestType,
  ContextPhase,
  GenerateRequest,
  TokenConstraint,
  TokenMask,
  GenerateChunk,
  GenerateOptions,
  FinishReason,
  ExecutorStats,
  KvEvents,
} from "./types.js";
export type { ExecutorErrorOptions } from "./errors.js";
