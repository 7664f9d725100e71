// A decode worker: an executor, a KV puller, the decode endpoint on the request plane, published load.
import { DECODE_FEATURES, executorOpenOptions, KvEventPublisher, serveWorker, WorkerGrammars, workerIdentity, workerLoadFromStats, type ExecutorFlags, type RunningWorker } from "@trtd/apps-common";
import type { RequestPlane } from "@trtd/request-plane";
import { ABI_VERSION, cudaKvBudget, Executor } from "@trtd/trtllm";
import { KvPullFailureReasons, type KvPullFailureReason } from "@trtd/kv-transfer";
import { createDecodeHandler } from "./handler.js";
import { createKvPuller } from "./kv-pull.js";

export interface DecodeWorkerOptions {
  plane: RequestPlane;
  executor: ExecutorFlags;
  namespace?: string;
  /** Bound on one KV pull (default: kv-transfer's, scaled by size); past it the prompt is recomputed here. */
  kvPullTimeoutMs?: number;
  /** Running requests and no engine iteration for this long: reported stalled (default apps-common's). */
  stallTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface RunningDecodeWorker extends RunningWorker {
  readonly executor: Executor;
  /** Constrained requests' grammars (stats().liveMatchers is 0 when idle). */
  readonly grammars: WorkerGrammars;
  /** Failed KV pulls by reason since start (each one recomputed), as published in the load. */
  kvPullFailures(): Record<KvPullFailureReason, number>;
}

export async function startDecodeWorker(o: DecodeWorkerOptions): Promise<RunningDecodeWorker> {
  const { modelDir } = o.executor;
  const executor = Executor.open(modelDir, executorOpenOptions(o.executor, (fraction, deviceId) => kvBytesOfFraction(modelDir, fraction, deviceId, o.log)));
  let puller: Awaited<ReturnType<typeof createKvPuller>> | undefined;
  const grammars = new WorkerGrammars(modelDir, executor.model.vocabSize);
  try {
    puller = await createKvPuller(executor, o.plane, { timeoutMs: o.kvPullTimeoutMs });
    const p = puller;
    // Failed KV pulls (each recomputed here) by reason, published with the load: the api's /metrics shows them.
    const pullFailures = Object.fromEntries(KvPullFailureReasons.map((r) => [r, 0])) as Record<KvPullFailureReason, number>;
    let events: KvEventPublisher | undefined; // the prefix cache's events, polled by KV-aware routers
    const worker = await serveWorker({
      role: "decode",
      plane: o.plane,
      namespace: o.namespace,
      handler: createDecodeHandler({ executor, grammars, pullKv: p.pull, declineKv: p.decline, onPullFailure: (r) => pullFailures[r]++, log: o.log }),
      load: () => ({ ...workerLoadFromStats(executor.stats()), kvPullFailures: { ...pullFailures } }),
      meta: { model: executor.model.fingerprint, kvLayout: executor.kvLayout().fingerprint, identity: workerIdentity(modelDir, executor, ABI_VERSION), features: DECODE_FEATURES },
      progress: () => executor.stats(),
      stallTimeoutMs: o.stallTimeoutMs,
      release: async () => {
        events?.close();
        await p.close();
        await executor.close();
        await grammars.close();
      },
      log: o.log,
    });
    try {
      events = await KvEventPublisher.start(o.plane, worker.instanceId, executor);
    } catch (err) {
      await worker.stop(0);
      throw err;
    }
    return Object.assign(worker, { executor, grammars, kvPullFailures: () => ({ ...pullFailures }) });
  } catch (err) {
    await puller?.close();
    await executor.close();
    await grammars.close();
    throw err;
  }
}

/** --gpu-memory-fraction: weights + KV within that share of the GPU; the KV budget is what is left after the weights. */
function kvBytesOfFraction(modelDir: string, fraction: number, deviceId: number, log?: (line: string) => void): number {
  const b = cudaKvBudget(modelDir, { deviceId, fraction });
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
  log?.(`GPU ${deviceId}: ${fraction} of ${gib(b.totalBytes)} for weights (${gib(b.weightBytes)}) + KV pool (${gib(b.kvMemoryBytes)})`);
  return b.kvMemoryBytes;
}
