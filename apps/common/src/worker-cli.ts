// The command line both workers share: the seed's flags plus executor options (parsed by cli.ts).
import { resolve } from "node:path";
import { DIRECT_DATA_PATH_USAGE, executorFlagOptions, executorFlags, intFlag, optionalIntFlag, parseFlags, portFlag, requestPlaneFlagOptions, requestPlaneFlags, stringFlag, valueFlags, type ExecutorFlags } from "./cli.js";
import type { DirectLinkOptions } from "@trtd/request-plane";
import { DEFAULT_STALL_TIMEOUT_MS } from "./progress.js";
import { DEFAULT_GRACE_MS, DEFAULT_NAMESPACE } from "./worker-runtime.js";

export const workerFlagOptions = {
  ...requestPlaneFlagOptions,
  ...valueFlags("grace-ms", "kv-host", "kv-advertise-host", "kv-port", "kv-offer-ttl-ms", "kv-pull-timeout-ms", "stall-timeout-ms"),
  help: { type: "boolean" },
  ...executorFlagOptions,
} as const;

export interface WorkerCli {
  namespace: string;
  requestPlaneUri: string;
  /** The request plane's direct data path (--direct-data-path, --direct-data-path-host, --advertise-host). */
  directLink: DirectLinkOptions;
  graceMs: number;
  /** Where a prefill worker's KV offer server listens, and the address it puts in handles. */
  kvHost: string;
  kvAdvertiseHost?: string;
  /** Prefill: the KV offer server's port (0 = any free port; fix it where a firewall must let decode hosts in). */
  kvPort: number;
  /** Prefill: how long an unpulled KV offer holds its blocks. */
  kvOfferTtlMs: number;
  /** Decode: bound on one KV pull (default: kv-transfer's, scaled by size); past it the prompt is recomputed. */
  kvPullTimeoutMs?: number;
  /** Running requests and no engine iteration for this long: the worker reports itself stalled. */
  stallTimeoutMs: number;
  executor: ExecutorFlags;
  help: boolean;
}

export const DEFAULT_KV_OFFER_TTL_MS = 30_000;

export function workerUsage(role: string): string {
  return `usage: ${role} --worker-name NAME --request-plane-uri HOST:PORT [options]
  --worker-name NAME            the deployment's namespace on the request plane (default ${DEFAULT_NAMESPACE})
  --request-plane-uri URI       NATS server, nats://HOST:PORT or HOST:PORT (default 127.0.0.1:4222)
${DIRECT_DATA_PATH_USAGE}
  --grace-ms N                  on SIGTERM, how long held requests may finish (default ${DEFAULT_GRACE_MS})
  --kv-host HOST                prefill: KV offer server listen address (default 127.0.0.1)
  --kv-advertise-host HOST      prefill: address decode workers use to reach it (default: --kv-host)
  --kv-port N                   prefill: KV offer server port (default 0 = any free port)
  --kv-offer-ttl-ms N           prefill: an unpulled KV offer is released after this long (default ${DEFAULT_KV_OFFER_TTL_MS})
  --kv-pull-timeout-ms N        decode: bound on one KV pull, then recompute locally (default: kv-transfer's, size-scaled)
  --stall-timeout-ms N          running requests and no engine iteration for N ms: the worker reports itself stalled
                                (not routed to; its requests move to other workers) until it progresses (default ${DEFAULT_STALL_TIMEOUT_MS})
  --executor NAME               reference (CPU) or cuda (build/libtrtd_executor_cuda.so, built where nvcc is);
                                default: $TRTD_EXECUTOR_LIB, else reference
  --device N                    GPU ordinal for --executor cuda (default 0)
  --gpu-memory-fraction F       --executor cuda: weights + KV pool take at most F (0 < F <= 1) of the GPU's total
                                memory; the KV pool gets F x total - weights (instead of --kv-block-count)
  --model-dir DIR               model directory (default models/tiny)
  --kv-host-cache-gb N          host KV tier: GiB of host memory (pinned with --executor cuda) that keeps cached
                                blocks evicted from the KV pool for later prefix hits (default 0 = off)
  --prefix-cache on|off         keep full KV blocks across requests for prompts that share a prefix (default on)
  --max-batch-size N  --max-tokens-per-iteration N  --kv-tokens-per-block N  --kv-block-count N  --threads N`;
}

export function parseWorkerCli(argv: string[], defaultModelDir: string): WorkerCli {
  const v = parseFlags(argv, workerFlagOptions);
  const ex = executorFlags(v, defaultModelDir);
  return {
    ...requestPlaneFlags(v),
    graceMs: intFlag(v["grace-ms"], "grace-ms", { min: 0, fallback: DEFAULT_GRACE_MS }),
    kvHost: stringFlag(v, "kv-host") ?? "127.0.0.1",
    kvAdvertiseHost: stringFlag(v, "kv-advertise-host"),
    kvPort: portFlag(v["kv-port"], "kv-port", { fallback: 0 }),
    kvOfferTtlMs: intFlag(v["kv-offer-ttl-ms"], "kv-offer-ttl-ms", { min: 1, fallback: DEFAULT_KV_OFFER_TTL_MS }),
    kvPullTimeoutMs: optionalIntFlag(v["kv-pull-timeout-ms"], "kv-pull-timeout-ms"),
    stallTimeoutMs: intFlag(v["stall-timeout-ms"], "stall-timeout-ms", { min: 1, fallback: DEFAULT_STALL_TIMEOUT_MS }),
    executor: { ...ex, modelDir: resolve(ex.modelDir) },
    help: v.help === true,
  };
}
