// koffi declarations of trtd_executor.h. Types are registered once per process (koffi type names are global);
// functions are bound per library path, so the reference executor and another implementation can coexist.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import koffi from "koffi";
import { AbiMismatchError, InvalidArgumentError, LibraryLoadError } from "./errors.js";
import type { ExecutorName, FinishReason, MemoryKind, RequestType } from "./types.js";

/** TRTD_ABI_VERSION this binding was written for. */
export const ABI_VERSION = 5;
/** TRTD_MAX_TOP_LOGPROBS: most alternatives per token in trtd_token_logprobs. */
export const MAX_TOP_LOGPROBS = 20;

export const T = {
  executor: koffi.opaque("trtd_executor"),
  config: koffi.struct("trtd_executor_config", {
    kv_memory_bytes: "int64_t",
    max_batch_size: "int32_t",
    max_tokens_per_iteration: "int32_t",
    kv_tokens_per_block: "int32_t",
    kv_block_count: "int32_t",
    num_threads: "int32_t",
    max_context_length: "int32_t",
    device_id: "int32_t",
    max_queued_requests: "int32_t",
    enable_prefix_cache: "bool", // ABI 4
    kv_host_cache_bytes: "int64_t", // ABI 5
  }),
  modelInfo: koffi.struct("trtd_model_info", {
    vocab_size: "int32_t",
    num_layers: "int32_t",
    hidden_size: "int32_t",
    num_heads: "int32_t",
    num_kv_heads: "int32_t",
    head_dim: "int32_t",
    max_context_length: "int32_t",
    num_eos_token_ids: "int32_t",
    eos_token_ids: koffi.array("int32_t", 8),
    fingerprint: koffi.array("char", 32),
  }),
  sampling: koffi.struct("trtd_sampling_params", {
    seed: "uint64_t",
    temperature: "float",
    top_p: "float",
    top_k: "int32_t",
    repetition_penalty: "float", // ABI 4
    frequency_penalty: "float",
    presence_penalty: "float",
    min_p: "float",
  }),
  contextPhase: koffi.struct("trtd_context_phase_params", {
    opaque_state: "const void *",
    opaque_state_size: "uint64_t",
    kv_import_id: "uint64_t",
    first_token: "int32_t",
  }),
  response: koffi.struct("trtd_response", {
    request_id: "uint64_t",
    token_offset: "int32_t",
    num_tokens: "int32_t",
    finish_reason: "int32_t",
    error_status: "int32_t",
    error_message: koffi.array("char", 200),
    is_final: "bool",
  }),
  tokenLogprobs: koffi.struct("trtd_token_logprobs", {
    logprob: "float",
    num_top: "int32_t",
    top_ids: koffi.array("int32_t", MAX_TOP_LOGPROBS),
    top_logprobs: koffi.array("float", MAX_TOP_LOGPROBS),
  }),
  stats: koffi.struct("trtd_executor_stats", {
    iterations: "uint64_t",
    generated_tokens: "uint64_t",
    prompt_tokens: "uint64_t",
    active_requests: "int32_t",
    queued_requests: "int32_t",
    kv_blocks_total: "int32_t",
    kv_blocks_used: "int32_t",
    kv_blocks_free: "int32_t",
    pinned_exports: "int32_t",
    pending_imports: "int32_t",
    kv_blocks_cached: "int32_t", // ABI 4
    prefix_cache_hit_tokens: "uint64_t",
    prefix_cache_miss_tokens: "uint64_t",
    prefix_cache_evicted_blocks: "uint64_t",
    kv_host_stored_blocks: "uint64_t", // ABI 5
    kv_host_hit_blocks: "uint64_t",
    kv_host_evicted_blocks: "uint64_t",
    kv_host_blocks_total: "int32_t",
    kv_host_blocks_held: "int32_t",
  }),
  kvLayout: koffi.struct("trtd_kv_layout", {
    bytes_per_block: "uint64_t",
    num_layers: "int32_t",
    num_kv_heads: "int32_t",
    head_dim: "int32_t",
    tokens_per_block: "int32_t",
    dtype: "int32_t",
    memory_kind: "int32_t",
    fingerprint: koffi.array("char", 32),
  }),
  segment: koffi.struct("trtd_kv_segment", {
    data: "void *",
    size: "uint64_t",
    memory_kind: "int32_t",
    device_id: "int32_t",
  }),
  kvEvent: koffi.struct("trtd_kv_event", {
    block_hash: "uint64_t",
    type: "int32_t",
    reserved: "int32_t",
  }),
  exportInfo: koffi.struct("trtd_kv_export_info", {
    bytes: "uint64_t",
    num_tokens: "int32_t",
    num_blocks: "int32_t",
    memory_kind: "int32_t",
  }),
};
// Declared after its member types exist.
const requestType = koffi.struct("trtd_request", {
  prompt: "const int32_t *",
  stop_token_ids: "const int32_t *",
  context_phase: "const trtd_context_phase_params *",
  sampling: "trtd_sampling_params",
  prompt_len: "int32_t",
  max_new_tokens: "int32_t",
  end_id: "int32_t",
  num_stop_token_ids: "int32_t",
  type: "int32_t",
  generated_offset: "int32_t", // ABI 2
  constrained: "bool", // ABI 4
  logit_bias_ids: "const int32_t *", // ABI 4
  logit_bias_values: "const float *",
  num_logit_bias: "int32_t",
  min_new_tokens: "int32_t",
  num_top_logprobs: "int32_t",
  logprobs: "bool",
});
export const RESPONSE_SIZE = koffi.sizeof(T.response);
export const SEGMENT_SIZE = koffi.sizeof(T.segment);
export const TOKEN_LOGPROBS_SIZE = koffi.sizeof(T.tokenLogprobs);
export const KV_EVENT_SIZE = koffi.sizeof(T.kvEvent);
void requestType;

/** trtd_executor_config as koffi reads and writes it. */
export interface ExecutorConfigFields {
  kv_memory_bytes: number;
  max_batch_size: number;
  max_tokens_per_iteration: number;
  kv_tokens_per_block: number;
  kv_block_count: number;
  num_threads: number;
  max_context_length: number;
  device_id: number;
  max_queued_requests: number;
  enable_prefix_cache: boolean; // ABI 4
  kv_host_cache_bytes: number; // ABI 5
}

/** The native functions of one executor library. Pointers (handles, segment data) are BigInt (koffi 3). */
export interface NativeLib {
  path: string;
  version: string;
  abiVersion: number;
  lastError(): string;
  defaultConfig(): ExecutorConfigFields;
  create(modelDir: string, config: ExecutorConfigFields, out: unknown[]): number;
  destroy(ex: bigint): void;
  modelInfo(ex: bigint, out: Record<string, unknown>): number;
  enqueue(ex: bigint, request: Record<string, unknown>, idOut: unknown[]): number;
  cancel(ex: bigint, id: number): number;
  // ABI 4: constrained decoding
  setTokenMask(ex: bigint, id: number, mask: Uint32Array, numWords: number): number;
  awaitResponses(ex: bigint, timeoutMs: number, responses: Buffer, maxResponses: number, tokens: Int32Array, maxTokens: number, nOut: Int32Array): number;
  /** ABI 4: with each token's logprobs (a buffer of maxTokens trtd_token_logprobs, or null). */
  awaitResponsesExt(
    ex: bigint, timeoutMs: number, responses: Buffer, maxResponses: number, tokens: Int32Array, maxTokens: number, logprobs: Buffer | null, nOut: Int32Array,
  ): number;
  notifyFd(ex: bigint, take: boolean, fdOut: Int32Array): number;
  contextPhaseState(ex: bigint, id: number, buffer: Uint8Array | null, size: number, sizeOut: unknown[]): number;
  stats(ex: bigint, out: Record<string, unknown>): number;
  kvLayout(ex: bigint, out: Record<string, unknown>): number;
  kvExportInfo(ex: bigint, id: number, out: Record<string, unknown>): number;
  kvExportSegments(ex: bigint, id: number, segments: Buffer | null, max: number, nOut: Int32Array): number;
  kvExportCopy(ex: bigint, id: number, buffer: Uint8Array, size: number): number;
  kvExportRelease(ex: bigint, id: number): number;
  kvImportReserve(ex: bigint, numTokens: number, idOut: unknown[]): number;
  kvImportSegments(ex: bigint, id: number, segments: Buffer | null, max: number, nOut: Int32Array): number;
  kvImportAbort(ex: bigint, id: number): number;
  computeLogits(ex: bigint, tokens: Int32Array, n: number, logits: Float32Array, max: number): number;
  // ABI 3: device KV transfer
  deviceUuid(ex: bigint, buf: Buffer, size: number): number;
  kvExportDevice(ex: bigint, id: number, buffer: Uint8Array | null, size: number, sizeOut: unknown[]): number;
  kvImportDevice(ex: bigint, id: number, descriptor: Uint8Array, size: number): number;
  // ABI 4: prefix-cache events
  kvEvents(ex: bigint, events: Buffer, max: number, nOut: Int32Array, lostOut: Uint8Array): number;
  kvCacheSnapshot(ex: bigint, hashes: BigUint64Array | null, max: number, nOut: Int32Array): number;
}

/** The built reference executor: packages/trtllm/build/libtrtd_ref.so (same path from src/ and dist/). */
export const defaultLibraryPath = fileURLToPath(new URL("../build/libtrtd_ref.so", import.meta.url));

/**
 * The executor implementations this repository builds, by name (ExecutorOptions.executor): the reference
 * executor, and the CUDA executor (built by `npm run build:native` where nvcc is on PATH).
 */
export const executorLibraries: Readonly<Record<ExecutorName, string>> = {
  reference: defaultLibraryPath,
  cuda: fileURLToPath(new URL("../build/libtrtd_executor_cuda.so", import.meta.url)),
};

/**
 * The functions of trtd_executor.h this binding calls, by NativeLib key (`version` and `abiVersion` are called once
 * at load). test/abi-header.test.ts checks the names and parameter counts against the header.
 */
export const ABI_FUNCTIONS = {
  abiVersion: "int32_t trtd_abi_version(void)",
  version: "const char *trtd_version(void)",
  lastError: "const char *trtd_last_error(void)",
  defaultConfig: "trtd_executor_config trtd_executor_default_config(void)",
  create: "int trtd_executor_create(const char *dir, const trtd_executor_config *cfg, _Out_ trtd_executor **out)",
  destroy: "void trtd_executor_destroy(trtd_executor *ex)",
  modelInfo: "int trtd_executor_model_info(trtd_executor *ex, _Out_ trtd_model_info *out)",
  enqueue: "int trtd_executor_enqueue(trtd_executor *ex, const trtd_request *req, _Out_ uint64_t *id)",
  cancel: "int trtd_executor_cancel(trtd_executor *ex, uint64_t id)",
  // ABI 4: constrained decoding
  setTokenMask: "int trtd_executor_set_token_mask(trtd_executor *ex, uint64_t id, const uint32_t *mask, int32_t numWords)",
  awaitResponses:
    "int trtd_executor_await_responses(trtd_executor *ex, int32_t timeout, void *resp, int32_t maxResp, void *tokens, int32_t maxTokens, void *nOut)",
  awaitResponsesExt:
    "int trtd_executor_await_responses_ext(trtd_executor *ex, int32_t timeout, void *resp, int32_t maxResp, void *tokens, int32_t maxTokens, void *logprobs, void *nOut)",
  notifyFd: "int trtd_executor_notify_fd(trtd_executor *ex, bool take, void *fdOut)",
  contextPhaseState: "int trtd_executor_context_phase_state(trtd_executor *ex, uint64_t id, void *buf, uint64_t size, _Out_ uint64_t *sizeOut)",
  stats: "int trtd_executor_get_stats(trtd_executor *ex, _Out_ trtd_executor_stats *out)",
  kvLayout: "int trtd_executor_kv_layout(trtd_executor *ex, _Out_ trtd_kv_layout *out)",
  kvExportInfo: "int trtd_executor_kv_export_info(trtd_executor *ex, uint64_t id, _Out_ trtd_kv_export_info *out)",
  kvExportSegments: "int trtd_executor_kv_export_segments(trtd_executor *ex, uint64_t id, void *segs, int32_t max, void *nOut)",
  kvExportCopy: "int trtd_executor_kv_export_copy(trtd_executor *ex, uint64_t id, void *buf, uint64_t size)",
  kvExportRelease: "int trtd_executor_kv_export_release(trtd_executor *ex, uint64_t id)",
  kvImportReserve: "int trtd_executor_kv_import_reserve(trtd_executor *ex, int32_t n, _Out_ uint64_t *id)",
  kvImportSegments: "int trtd_executor_kv_import_segments(trtd_executor *ex, uint64_t id, void *segs, int32_t max, void *nOut)",
  kvImportAbort: "int trtd_executor_kv_import_abort(trtd_executor *ex, uint64_t id)",
  computeLogits: "int trtd_executor_compute_logits(trtd_executor *ex, const void *tokens, int32_t n, void *logits, int64_t max)",
  // ABI 3: device KV transfer
  deviceUuid: "int trtd_executor_device_uuid(const trtd_executor *ex, void *buf, int32_t size)",
  kvExportDevice: "int trtd_executor_kv_export_device(trtd_executor *ex, uint64_t id, void *buf, uint64_t size, _Out_ uint64_t *sizeOut)",
  kvImportDevice: "int trtd_executor_kv_import_device(trtd_executor *ex, uint64_t id, const void *desc, uint64_t size)",
  // ABI 4: prefix-cache events
  kvEvents: "int trtd_executor_kv_events(trtd_executor *ex, void *events, int32_t max, void *nOut, void *lostOut)",
  kvCacheSnapshot: "int trtd_executor_kv_cache_snapshot(trtd_executor *ex, void *hashes, int32_t max, void *nOut)",
} as const satisfies Record<Exclude<keyof NativeLib, "path">, string>;

/**
 * The binding's reading of trtd_executor.h's enums (trtd_status is NativeStatus in errors.ts; trtd_kv_dtype is
 * KV_DTYPES of @trtd/model, index = value). test/abi-header.test.ts compares them with the compiled header.
 */
export const REQUEST_TYPES = { context_and_generation: 0, context_only: 1, generation_only: 2 } as const satisfies Record<RequestType, number>;
/** trtd_finish_reason of a final response; TRTD_FINISH_NOT_FINISHED (0) marks a response that is not final. */
export const FINISH_REASONS: Readonly<Record<number, FinishReason>> = { 1: "length", 2: "end_id", 3: "stop_token", 4: "cancelled", 5: "error" };
/** trtd_memory_kind, index = value. */
export const MEMORY_KINDS = ["host", "host_pinned", "cuda_device", "engine_handle"] as const satisfies readonly MemoryKind[];
/** trtd_kv_event_type, index = value. */
export const KV_EVENT_TYPES = ["stored", "removed"] as const;

const loaded = new Map<string, NativeLib>();

/**
 * Resolves the library: an explicit path, else an implementation by name, else $TRTD_EXECUTOR_LIB, else the
 * reference executor. @throws InvalidArgumentError (unknown name, or both a path and a name)
 */
export function resolveLibraryPath(explicit?: string, executor?: ExecutorName): string {
  if (executor === undefined) return explicit ?? process.env.TRTD_EXECUTOR_LIB ?? defaultLibraryPath;
  if (explicit !== undefined) throw new InvalidArgumentError(`give library or executor, not both (library ${explicit}, executor ${executor})`);
  if (typeof executor !== "string" || !Object.hasOwn(executorLibraries, executor)) {
    throw new InvalidArgumentError(`unknown executor ${String(executor)}: one of ${Object.keys(executorLibraries).join(", ")}`);
  }
  return executorLibraries[executor];
}

export function loadLibrary(path: string): NativeLib {
  const cached = loaded.get(path);
  if (cached) return cached;
  if (!existsSync(path)) {
    const where = path === executorLibraries.cuda ? " on a machine with nvcc on PATH" : "";
    throw new LibraryLoadError(
      `executor library not found: ${path} (build it with "npm run build:native"${where}, or set TRTD_EXECUTOR_LIB)`,
    );
  }
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(path);
  } catch (cause) {
    throw new LibraryLoadError(`cannot load executor library ${path}: ${(cause as Error).message}`, { cause });
  }
  const f = (sig: string) => lib.func(sig);
  const abi = f(ABI_FUNCTIONS.abiVersion)() as number;
  if (abi !== ABI_VERSION) {
    throw new AbiMismatchError(`${path} implements trtd_executor ABI ${abi}; this binding needs ${ABI_VERSION}`);
  }
  const { abiVersion: _a, version, ...calls } = ABI_FUNCTIONS;
  const native = {
    path,
    abiVersion: abi,
    version: f(version)() as string,
    ...Object.fromEntries(Object.entries(calls).map(([k, sig]) => [k, f(sig)])),
  } as unknown as NativeLib;
  loaded.set(path, native);
  return native;
}

/** Reads segment structs written by the library into zero-copy views. */
export function decodeSegments(buf: Buffer, n: number): { data: bigint; size: number; memoryKind: number }[] {
  const out: { data: bigint; size: number; memoryKind: number }[] = [];
  for (let i = 0; i < n; i++) {
    const s = koffi.decode(buf, i * SEGMENT_SIZE, T.segment) as { data: bigint | null; size: number | bigint; memory_kind: number };
    out.push({ data: BigInt(s.data ?? 0), size: Number(s.size), memoryKind: s.memory_kind });
  }
  return out;
}

export function decodeResponse(buf: Buffer, index: number): {
  request_id: number | bigint; token_offset: number; num_tokens: number; finish_reason: number; error_status: number; error_message: string; is_final: boolean;
} {
  return koffi.decode(buf, index * RESPONSE_SIZE, T.response);
}


/** The logprobs entry of token `index` in a buffer filled by awaitResponsesExt; undefined when not recorded. */
export function decodeTokenLogprobs(buf: Buffer, index: number): { logprob: number; top: { id: number; logprob: number }[] } | undefined {
  const off = index * TOKEN_LOGPROBS_SIZE;
  const numTop = buf.readInt32LE(off + 4);
  if (numTop < 0) return undefined;
  const top: { id: number; logprob: number }[] = [];
  for (let i = 0; i < numTop; i++) top.push({ id: buf.readInt32LE(off + 8 + 4 * i), logprob: buf.readFloatLE(off + 8 + 4 * MAX_TOP_LOGPROBS + 4 * i) });
  return { logprob: buf.readFloatLE(off), top };
}
