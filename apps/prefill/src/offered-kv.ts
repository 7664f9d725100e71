// What a prefill worker offers for a finished context-only request: the pinned KV export (with its device
// descriptor on a device executor, for kv-transfer's "cuda-ipc" transport), or, on an engine that moves KV itself
// (the TensorRT-LLM shim), its context phase state for kv-transfer's "engine" transport.
import { executorKvSource, type KvSource } from "@trtd/kv-transfer";
import { EngineNativeTransferError, type Executor } from "@trtd/trtllm";

export function offeredKv(executor: Executor, requestId: number, numTokens: number): KvSource {
  try {
    return executorKvSource(executor, requestId);
  } catch (err) {
    if (!(err instanceof EngineNativeTransferError)) throw err;
  }
  const release = () => {
    try {
      executor.releaseContextPhaseState(requestId);
    } catch {
      // already dropped (transfer timeout) or the executor is closed: nothing is left to free
    }
  };
  let state: Uint8Array;
  try {
    state = executor.contextPhaseState(requestId);
  } catch (err) {
    release();
    throw err;
  }
  // No KV bytes travel through kv-transfer: the engine pulls them when the decode side passes the state on.
  let released = false;
  return {
    numTokens,
    bytes: 0,
    segments: () => [],
    engineState: () => state,
    release: () => {
      if (released) return;
      released = true;
      release();
    },
  };
}
