// The decode side of kv-transfer: pull a prefill worker's offer into a fresh import of this executor.
import { KvPuller, layoutFromExecutor, parseKvHandle } from "@trtd/kv-transfer";
import type { RequestPlane } from "@trtd/request-plane";
import type { Executor } from "@trtd/trtllm";
import type { KvDeclineFn, KvPullFn } from "./handler.js";

export interface KvPullerHandle {
  pull: KvPullFn;
  decline: KvDeclineFn;
  close(): Promise<void>;
}

export async function createKvPuller(executor: Executor, plane: RequestPlane): Promise<KvPullerHandle> {
  const puller = new KvPuller({ layout: layoutFromExecutor(executor.kvLayout()), nats: plane.nats });
  const pull: KvPullFn = async (kvHandle, signal) => {
    const handle = parseKvHandle(kvHandle);
    const kvImport = executor.reserveKvImport(handle.numTokens);
    // On failure the puller aborts the import (it owns the sink then); on success the executor consumes it.
    const r = await puller.pull(handle, kvImport, { signal });
    return { kvImport, bytes: r.bytes, transferMs: r.ms };
  };
  return {
    pull,
    // kv-transfer has no "decline" yet (see contracts.md, Requests from apps): pulling and dropping the import
    // releases the offer now instead of holding the prefill worker's blocks until the offer expires.
    decline: async (kvHandle) => {
      const { kvImport } = await pull(kvHandle, AbortSignal.timeout(10_000));
      kvImport.abort();
    },
    close: async () => puller.close(),
  };
}
