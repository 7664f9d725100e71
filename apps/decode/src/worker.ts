// A decode worker: an executor, a KV puller, the decode endpoint on the request plane, published load.
import { serveWorker, workerLoadFromStats, type ExecutorFlags, type RunningWorker } from "@trtd/apps-common";
import type { RequestPlane } from "@trtd/request-plane";
import { Executor } from "@trtd/trtllm";
import { createDecodeHandler } from "./handler.js";
import { createKvPuller } from "./kv-pull.js";

export interface DecodeWorkerOptions {
  plane: RequestPlane;
  executor: ExecutorFlags;
  namespace?: string;
  /** Bound on one KV pull (default: kv-transfer's, scaled by size); past it the prompt is recomputed here. */
  kvPullTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface RunningDecodeWorker extends RunningWorker {
  readonly executor: Executor;
}

export async function startDecodeWorker(o: DecodeWorkerOptions): Promise<RunningDecodeWorker> {
  const { modelDir, ...exOpts } = o.executor;
  const executor = Executor.open(modelDir, exOpts);
  let puller: Awaited<ReturnType<typeof createKvPuller>> | undefined;
  try {
    puller = await createKvPuller(executor, o.plane, { timeoutMs: o.kvPullTimeoutMs });
    const p = puller;
    const worker = await serveWorker({
      role: "decode",
      plane: o.plane,
      namespace: o.namespace,
      handler: createDecodeHandler({ executor, pullKv: p.pull, declineKv: p.decline, log: o.log }),
      load: () => workerLoadFromStats(executor.stats()),
      meta: { model: executor.model.fingerprint, kvLayout: executor.kvLayout().fingerprint },
      release: async () => {
        await p.close();
        await executor.close();
      },
      log: o.log,
    });
    return Object.assign(worker, { executor });
  } catch (err) {
    await puller?.close();
    await executor.close();
    throw err;
  }
}
