import type { KvSink, KvSource } from "./segments.js";

/** What this package needs from an @trtd/trtllm KvExport (structural: no dependency). */
export interface ExecutorKvExport {
  numTokens: number;
  bytes: number;
  segments(): Uint8Array[];
  release(): void;
  /** Device descriptor of the export (CUDA executor); undefined when the executor has none. */
  deviceDescriptor?(): Uint8Array | undefined;
}

/** What this package needs from an @trtd/trtllm Executor on the offering side (structural: no dependency). */
export interface ExportingExecutor {
  /** Throws an error with code "ENGINE_NATIVE_TRANSFER" on an engine that moves KV itself (the TensorRT-LLM shim). */
  exportKv(requestId: number): ExecutorKvExport;
  /** Engine-native context state (TensorRT-LLM shim); empty for the reference executor. */
  contextPhaseState?(requestId: number): Uint8Array;
  /** Drops the context state of a request whose KV the engine moves itself (its release path: no export exists). */
  releaseContextPhaseState?(requestId: number): void;
  /** The device holding the KV pool ("GPU-" + UUID); undefined for a host-memory executor. */
  deviceUuid?(): string | undefined;
}

/** What this package needs from an @trtd/trtllm KvImport (structural: no dependency). */
export interface ExecutorKvImport {
  readonly numTokens: number;
  readonly bytes: number;
  segments(): Uint8Array[];
  abort(): void;
  /** Device-to-device fill from another executor's device descriptor (CUDA executor); throws when it cannot. */
  fillFromDevice?(descriptor: Uint8Array): void | Promise<void>;
}

/** What this package needs from an @trtd/trtllm Executor on the pulling side (structural: no dependency). */
export interface ImportingExecutor {
  reserveKvImport(numTokens: number): ExecutorKvImport;
  /** The device holding the KV pool ("GPU-" + UUID); undefined for a host-memory executor. */
  deviceUuid?(): string | undefined;
}

/** @trtd/trtllm's ExecutorErrorCode.EngineNativeTransfer: exportKv's answer on an engine that moves KV itself. */
const ENGINE_NATIVE_TRANSFER = "ENGINE_NATIVE_TRANSFER";

/**
 * The KV of a finished context-only request as a KvSource (the prefill worker's offer, and what the fault tests
 * offer): its pinned export plus, when the engine has one, its opaque context state (which adds the "engine"
 * transport to the handle), and, when the executor keeps its KV on a device and can describe the export, its
 * device descriptor (which adds "cuda-ipc"). On an engine that moves KV itself (exportKv answers
 * ENGINE_NATIVE_TRANSFER) it is the context state alone, with no bytes: `numTokens` (the prompt length) is then
 * required, since there is no export to count them. `release()` frees the export or the context state, once.
 */
export function executorKvSource(ex: ExportingExecutor, requestId: number, numTokens?: number): KvSource {
  let kv: ExecutorKvExport;
  try {
    kv = ex.exportKv(requestId);
  } catch (err) {
    if ((err as { code?: unknown })?.code !== ENGINE_NATIVE_TRANSFER || numTokens === undefined) throw err;
    return engineStateSource(ex, requestId, numTokens);
  }
  let state: Uint8Array | undefined;
  let deviceUuid: string | undefined;
  try {
    state = ex.contextPhaseState?.(requestId);
    deviceUuid = ex.deviceUuid?.();
  } catch (err) {
    kv.release();
    throw err;
  }
  const device = deviceUuid !== undefined && typeof kv.deviceDescriptor === "function";
  return {
    numTokens: kv.numTokens,
    bytes: kv.bytes,
    segments: () => kv.segments(),
    release: () => kv.release(),
    ...(state && state.byteLength > 0 ? { engineState: () => state } : {}),
    ...(device ? { deviceUuid, deviceDescriptor: () => kv.deviceDescriptor!() } : {}),
  };
}

/** No KV bytes travel through kv-transfer: the engine pulls them when the decode side passes the state on. */
function engineStateSource(ex: ExportingExecutor, requestId: number, numTokens: number): KvSource {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    try {
      ex.releaseContextPhaseState?.(requestId);
    } catch {
      // already dropped (the engine's transfer timeout) or the executor is closed: nothing is left to free
    }
  };
  let state: Uint8Array;
  try {
    if (!ex.contextPhaseState) throw new TypeError("the executor moves KV itself but has no contextPhaseState()");
    state = ex.contextPhaseState(requestId);
  } catch (err) {
    release();
    throw err;
  }
  return { numTokens, bytes: 0, segments: () => [], engineState: () => state, release };
}

/**
 * An executor's reserved import as a KvSink for `KvPuller.pull`: its segments, plus device-to-device import
 * ("cuda-ipc") when the executor has a device and the import can be filled from a device descriptor. Pass the
 * import itself (not this wrapper) to the executor's generation-only request afterwards; `pull` aborts the import
 * on failure.
 */
export function executorKvSink(ex: ImportingExecutor, kvImport: ExecutorKvImport): KvSink {
  const deviceUuid = ex.deviceUuid?.();
  const device = deviceUuid !== undefined && typeof kvImport.fillFromDevice === "function";
  return {
    numTokens: kvImport.numTokens,
    bytes: kvImport.bytes,
    segments: () => kvImport.segments(),
    abort: () => kvImport.abort(),
    ...(device ? { deviceUuid, importDevice: (descriptor: Uint8Array) => kvImport.fillFromDevice!(descriptor) } : {}),
  };
}
