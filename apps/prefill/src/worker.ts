// A prefill worker: an executor, a KV offer server, the prefill endpoint on the request plane, published load.
import { networkInterfaces } from "node:os";
import { executorOpenOptions, KvEventPublisher, serveWorker, WorkerGrammars, workerIdentity, workerLoadFromStats, type ExecutorFlags, type RunningWorker } from "@trtd/apps-common";
import { KvOfferServer, layoutFromExecutor } from "@trtd/kv-transfer";
import type { RequestPlane } from "@trtd/request-plane";
import { ABI_VERSION, cudaKvBudget, Executor } from "@trtd/trtllm";
import { kvFaultFromEnv, startKvFaultInjector, type KvFaultInjector } from "./fault-injection.js";
import { createPrefillHandler } from "./handler.js";

export interface PrefillWorkerOptions {
  plane: RequestPlane;
  executor: ExecutorFlags;
  namespace?: string;
  /** KV offer server listen address and the address put in handles. */
  kvHost?: string;
  kvAdvertiseHost?: string;
  /** KV offer server port (default 0: any free port). */
  kvPort?: number;
  /** An unpulled offer is released after this long (default kv-transfer's, 30 s). */
  kvOfferTtlMs?: number;
  /** Running requests and no engine iteration for this long: reported stalled (default apps-common's). */
  stallTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface RunningPrefillWorker extends RunningWorker {
  readonly executor: Executor;
  /** Constrained requests' grammars (stats().liveMatchers is 0 when idle). */
  readonly grammars: WorkerGrammars;
  readonly offers: KvOfferServer;
}

export async function startPrefillWorker(o: PrefillWorkerOptions): Promise<RunningPrefillWorker> {
  const { modelDir } = o.executor;
  const executor = Executor.open(modelDir, executorOpenOptions(o.executor, (fraction, deviceId) => kvBytesOfFraction(modelDir, fraction, deviceId, o.log)));
  let offers: KvOfferServer | undefined;
  let faults: KvFaultInjector | undefined;
  const grammars = new WorkerGrammars(modelDir, executor.model.vocabSize);
  try {
    const fault = kvFaultFromEnv();
    if (fault) {
      faults = await startKvFaultInjector(fault);
      o.log?.(`FAULT INJECTION: every KV offer is made to fail (${fault}); for tests only`);
    }
    offers = await KvOfferServer.start({
      layout: layoutFromExecutor(executor.kvLayout()),
      host: o.kvHost ?? "127.0.0.1",
      port: o.kvPort ?? 0,
      advertiseHost: o.kvAdvertiseHost ?? defaultAdvertiseHost(o.kvHost ?? "127.0.0.1"),
      ...(o.kvOfferTtlMs ? { ttlMs: o.kvOfferTtlMs } : {}),
      nats: { requestPlane: o.plane }, // the small-KV fallback rides the request plane, NATS or in-process
      // The KV is copied into its shared-memory segment after the answer (with the first token) has left, not before.
      deferStaging: true,
      // The corrupt fault flips a byte of the export after the offer is made; a single-copy shm offer has already
      // copied (and checksummed) it into its segment by then, so the fault would never reach the puller.
      ...(faults?.fault === "corrupt" ? { shm: { staging: false } } : {}),
    });
    const off = offers;
    let events: KvEventPublisher | undefined; // the prefix cache's events, polled by KV-aware routers
    const worker = await serveWorker({
      role: "prefill",
      plane: o.plane,
      namespace: o.namespace,
      handler: createPrefillHandler({ executor, grammars, offers: off, faults }),
      load: () => ({ ...workerLoadFromStats(executor.stats()), kvPullsRefused: off.stats().refused }),
      meta: { model: executor.model.fingerprint, kvLayout: executor.kvLayout().fingerprint, identity: workerIdentity(modelDir, executor, ABI_VERSION), kv: off.address },
      progress: () => executor.stats(),
      stallTimeoutMs: o.stallTimeoutMs,
      release: async () => {
        events?.close();
        await off.close(); // releases every offer (their pinned blocks) before the executor goes
        await faults?.close();
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
    return Object.assign(worker, { executor, offers: off, grammars });
  } catch (err) {
    await offers?.close();
    await faults?.close();
    await executor.close();
    await grammars.close();
    throw err;
  }
}

/** Listening on a wildcard address, decode workers on other hosts (or containers) need a reachable address:
 * the first external IPv4 address, rather than a hostname other hosts may not resolve. */
function defaultAdvertiseHost(host: string): string | undefined {
  if (host !== "0.0.0.0" && host !== "::") return undefined;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

/** --gpu-memory-fraction: weights + KV within that share of the GPU; the KV budget is what is left after the weights. */
function kvBytesOfFraction(modelDir: string, fraction: number, deviceId: number, log?: (line: string) => void): number {
  const b = cudaKvBudget(modelDir, { deviceId, fraction });
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
  log?.(`GPU ${deviceId}: ${fraction} of ${gib(b.totalBytes)} for weights (${gib(b.weightBytes)}) + KV pool (${gib(b.kvMemoryBytes)})`);
  return b.kvMemoryBytes;
}
