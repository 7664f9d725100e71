// The decode side of kv-transfer: pull a prefill worker's offer into a fresh import of this executor.
import { executorKvSink, KvPuller, layoutFromExecutor, parseKvHandle, type KvHandle, type KvSink } from "@trtd/kv-transfer";
import type { RequestPlane } from "@trtd/request-plane";
import { EngineNativeTransferError, type Executor } from "@trtd/trtllm";
import type { KvDeclineFn, KvPullFn } from "./handler.js";

export interface KvPullerHandle {
  pull: KvPullFn;
  decline: KvDeclineFn;
  close(): Promise<void>;
}

export async function createKvPuller(executor: Executor, plane: RequestPlane, opts: { timeoutMs?: number } = {}): Promise<KvPullerHandle> {
  // Device to device (cuda-ipc) on the same GPU always; from another GPU of this host it is tried, since the CUDA
  // executor checks peer access itself and answers UNSUPPORTED without it: the pull then falls back to the
  // host-staged path (shm), /metrics counts trtd_kv_transfer_fallbacks_total{path="cuda-ipc"}, and that pair of
  // GPUs is not tried again.
  const unreachable = new Set<string>();
  const pair = (local: string, remote: string) => `${local} ${remote}`;
  const puller = new KvPuller({
    layout: layoutFromExecutor(executor.kvLayout()),
    requestPlane: plane,
    canReachDevice: (local, remote) => local === remote || !unreachable.has(pair(local, remote)),
  });
  const notePeerFailure = (handle: KvHandle, fallbacks: Array<{ transport: string }>) => {
    if (!fallbacks.some((f) => f.transport === "cuda-ipc")) return;
    const local = executor.deviceUuid();
    const ep = handle.endpoints.find((e) => e.transport === "cuda-ipc");
    if (local && ep && "deviceUuid" in ep && ep.deviceUuid !== local) {
      unreachable.add(pair(local, ep.deviceUuid));
    }
  };
  // An engine that moves KV itself (the TensorRT-LLM shim) takes the offer's engine state instead of bytes.
  const pullEngineState = async (handle: KvHandle, signal: AbortSignal) => {
    let state: Uint8Array | undefined;
    const sink: KvSink = {
      numTokens: handle.numTokens,
      bytes: 0,
      segments: () => [],
      abort: () => {
        state = undefined;
      },
      importEngineState: (s) => {
        state = s;
      },
    };
    const r = await puller.pull(handle, sink, { signal, timeoutMs: opts.timeoutMs });
    if (!state) throw new EngineNativeTransferError("the KV offer carried no engine state for this executor");
    return { opaqueState: state, bytes: r.bytes, transferMs: r.ms, path: r.transport, fallbacks: r.fallbacks.map((f) => f.transport) };
  };
  const pull: KvPullFn = async (kvHandle, signal) => {
    const handle = parseKvHandle(kvHandle);
    let kvImport: ReturnType<Executor["reserveKvImport"]>;
    try {
      kvImport = executor.reserveKvImport(handle.numTokens);
    } catch (err) {
      if (err instanceof EngineNativeTransferError) return pullEngineState(handle, signal);
      throw err;
    }
    // On failure the puller aborts the import (it owns the sink then); on success the executor consumes it. On a
    // device executor the sink also imports device to device ("cuda-ipc") when the offer's GPU is this one.
    const r = await puller.pull(handle, executorKvSink(executor, kvImport), { signal, timeoutMs: opts.timeoutMs });
    notePeerFailure(handle, r.fallbacks);
    return { kvImport, bytes: r.bytes, transferMs: r.ms, path: r.transport, fallbacks: r.fallbacks.map((f) => f.transport) };
  };
  return {
    pull,
    // A NACK: the prefill worker releases the offer now instead of holding its blocks until it expires.
    decline: (kvHandle) => puller.decline(parseKvHandle(kvHandle)),
    close: async () => puller.close(),
  };
}
