import type { KvSource } from "./segments.js";

/** What this package needs from an @trtd/trtllm Executor on the offering side (structural: no dependency). */
export interface ExportingExecutor {
  exportKv(requestId: number): { numTokens: number; bytes: number; segments(): Uint8Array[]; release(): void };
  /** Engine-native context state (TensorRT-LLM shim); empty for the reference executor. */
  contextPhaseState?(requestId: number): Uint8Array;
}

/**
 * The KV of a finished context-only request as a KvSource: its pinned export plus, when the engine has one,
 * its opaque context state (which adds the "engine" transport to the handle).
 */
export function executorKvSource(ex: ExportingExecutor, requestId: number): KvSource {
  const kv = ex.exportKv(requestId);
  let state: Uint8Array | undefined;
  try {
    state = ex.contextPhaseState?.(requestId);
  } catch (err) {
    kv.release();
    throw err;
  }
  return {
    numTokens: kv.numTokens,
    bytes: kv.bytes,
    segments: () => kv.segments(),
    release: () => kv.release(),
    ...(state && state.byteLength > 0 ? { engineState: () => state } : {}),
  };
}
