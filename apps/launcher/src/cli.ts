// The launcher's command line: the seed's deploy flags, the api's flags, executor flags passed to workers.
import { basename, resolve } from "node:path";
import { DEFAULT_NAMESPACE, executorArgv, executorFlagOptions, executorFlags, intFlag, natsUriOf, parseFlags, UsageError, type ExecutorFlags } from "@trtd/apps-common";

export const LAUNCHER_USAGE = `usage: launcher [--context-worker-count N] [--generate-worker-count M] [--worker-name NAME]
                [--initialize-request-plane] [--request-plane-uri HOST:PORT] [options]
  --context-worker-count N       prefill workers (default 1; 0 = aggregated only)
  --generate-worker-count M      decode workers (default 1; 0 = none on this host, for multi-host deployments)
  --worker-name NAME             the deployment's namespace on the request plane (default ${DEFAULT_NAMESPACE})
  --initialize-request-plane     start nats-server (JetStream on) at --request-plane-uri
  --request-plane-uri URI        NATS server, or a NATS cluster as a comma-separated list (default 127.0.0.1:4222)
  --no-api                       run no api on this host (workers only; multi-host, see docs/design/multi-host.md)
  --kv-host HOST                 prefill workers' KV offer server listen address (worker default 127.0.0.1)
  --kv-advertise-host HOST       address decode workers on other hosts use to reach it (worker default: --kv-host)
  --kv-port N                    prefill worker i's KV offer server port is N+i (default: any free port)
  --kv-offer-ttl-ms N            prefill workers: an unpulled KV offer is released after this long (worker default)
  --in-process                   one process, in-process request plane (no nats-server)
  --in-process-fallback          with --initialize-request-plane: go in-process when nats-server is not installed
  --api-server-host HOST         (default 127.0.0.1)   --api-server-port PORT (default 8000, 0 = any free port)
  --model-dir DIR                model for workers and tokenizer (default models/tiny)
  --executor NAME                workers' executor: reference (CPU) or cuda (default: $TRTD_EXECUTOR_LIB, else reference)
  --device N                     workers' GPU ordinal for --executor cuda (default 0; every worker on it for now)
  --model-name NAME              model id clients send (default: the model directory's name)
  --api-key KEY                  require Bearer KEY on /v1 (default: $TRTD_API_KEY)
  --disagg-min-prompt-tokens N   shorter prompts run aggregated (api default)
  --max-restarts N               restarts of a crashed child before the launcher gives up (default 3)
  --ready-timeout-ms N           bound on bring-up (default 180000)
  --prefill-env KEY=VALUE        environment for prefill workers only (repeatable; e.g. TRTD_TRTLLM_DEVICE_ID=0)
  --decode-env KEY=VALUE         environment for decode workers only (repeatable)
  --max-batch-size N  --max-tokens-per-iteration N  --kv-tokens-per-block N  --kv-block-count N  --threads N`;

export const launcherFlagOptions = {
  "context-worker-count": { type: "string" },
  "generate-worker-count": { type: "string" },
  "worker-name": { type: "string" },
  "initialize-request-plane": { type: "boolean" },
  "request-plane-uri": { type: "string" },
  "in-process": { type: "boolean" },
  "in-process-fallback": { type: "boolean" },
  "no-api": { type: "boolean" },
  "kv-host": { type: "string" },
  "kv-advertise-host": { type: "string" },
  "kv-offer-ttl-ms": { type: "string" },
  "kv-port": { type: "string" },
  "api-server-host": { type: "string" },
  "api-server-port": { type: "string" },
  "model-name": { type: "string" },
  "api-key": { type: "string" },
  "disagg-min-prompt-tokens": { type: "string" },
  "max-restarts": { type: "string" },
  "ready-timeout-ms": { type: "string" },
  "prefill-env": { type: "string", multiple: true },
  "decode-env": { type: "string", multiple: true },
  help: { type: "boolean" },
  ...executorFlagOptions,
} as const;

export interface LauncherCli {
  contextWorkers: number;
  generateWorkers: number;
  namespace: string;
  initializeRequestPlane: boolean;
  /** nats://host:port */
  requestPlaneUri: string;
  inProcess: boolean;
  inProcessFallback: boolean;
  /** Workers only: the api runs on another host. */
  noApi: boolean;
  /** Passed to prefill workers: KV offer server listen and advertised addresses. */
  kvHost?: string;
  kvAdvertiseHost?: string;
  kvOfferTtlMs?: number;
  /** First KV offer server port; prefill worker i listens on kvPort + i. */
  kvPort?: number;
  apiHost: string;
  apiPort: number;
  /** The model id clients send (default: the model directory's name). */
  modelName: string;
  apiKey?: string;
  disaggMinPromptTokens?: number;
  maxRestarts: number;
  readyTimeoutMs: number;
  /** Extra environment per worker role (e.g. a device per role). */
  roleEnv: { prefill: Record<string, string>; decode: Record<string, string> };
  executor: ExecutorFlags;
  help: boolean;
}

export function parseLauncherCli(argv: string[], defaultModelDir: string): LauncherCli {
  const v = parseFlags(argv, launcherFlagOptions);
  const str = (k: string) => (typeof v[k] === "string" ? (v[k] as string) : undefined);
  const ex = executorFlags(v, defaultModelDir);
  const generateWorkers = intFlag(v["generate-worker-count"], "generate-worker-count", { min: 0, fallback: 1 });
  const contextWorkers = intFlag(v["context-worker-count"], "context-worker-count", { min: 0, fallback: 1 });
  const noApi = v["no-api"] === true;
  const apiPort = intFlag(v["api-server-port"], "api-server-port", { min: 0, fallback: 8000 });
  if (apiPort > 65535) throw new UsageError("--api-server-port must be <= 65535");
  if (v["in-process"] && v["initialize-request-plane"]) throw new UsageError("--in-process needs no request plane: drop --initialize-request-plane");
  if (v["initialize-request-plane"] && str("request-plane-uri")?.includes(",")) {
    throw new UsageError("--initialize-request-plane starts one nats-server: start a NATS cluster yourself (docs/design/multi-host.md)");
  }
  const kvPort = v["kv-port"] === undefined ? undefined : intFlag(v["kv-port"], "kv-port", { min: 1, fallback: 0 });
  if (kvPort !== undefined && kvPort + Math.max(0, contextWorkers - 1) > 65535) throw new UsageError("--kv-port + context workers must stay <= 65535");
  if (noApi && contextWorkers + generateWorkers === 0) throw new UsageError("--no-api with no workers: nothing to run");
  if (v["in-process"] && (noApi || generateWorkers === 0)) {
    throw new UsageError("--in-process runs a whole deployment in one process: it needs the api and at least one decode worker");
  }
  return {
    contextWorkers,
    generateWorkers,
    namespace: str("worker-name") ?? DEFAULT_NAMESPACE,
    initializeRequestPlane: v["initialize-request-plane"] === true,
    requestPlaneUri: natsUriOf(str("request-plane-uri") ?? "127.0.0.1:4222"),
    inProcess: v["in-process"] === true,
    inProcessFallback: v["in-process-fallback"] === true,
    noApi,
    kvHost: str("kv-host"),
    kvAdvertiseHost: str("kv-advertise-host"),
    kvPort,
    kvOfferTtlMs: v["kv-offer-ttl-ms"] === undefined ? undefined : intFlag(v["kv-offer-ttl-ms"], "kv-offer-ttl-ms", { min: 1, fallback: 0 }),
    apiHost: str("api-server-host") ?? "127.0.0.1",
    apiPort,
    modelName: str("model-name") ?? basename(resolve(ex.modelDir)),
    apiKey: str("api-key"),
    disaggMinPromptTokens:
      v["disagg-min-prompt-tokens"] === undefined ? undefined : intFlag(v["disagg-min-prompt-tokens"], "disagg-min-prompt-tokens", { min: 0, fallback: 0 }),
    maxRestarts: intFlag(v["max-restarts"], "max-restarts", { min: 0, fallback: 3 }),
    readyTimeoutMs: intFlag(v["ready-timeout-ms"], "ready-timeout-ms", { min: 1, fallback: 180_000 }),
    roleEnv: { prefill: envPairs(v["prefill-env"], "prefill-env"), decode: envPairs(v["decode-env"], "decode-env") },
    executor: { ...ex, modelDir: resolve(ex.modelDir) },
    help: v.help === true,
  };
}

/** argv for a worker child. */
export function workerArgv(cli: LauncherCli, requestPlaneUri: string): string[] {
  return ["--worker-name", cli.namespace, "--request-plane-uri", requestPlaneUri, ...executorArgv(cli.executor)];
}

/** argv for a prefill worker child: the worker flags plus where its KV offer server listens and what it advertises. */
export function prefillArgv(cli: LauncherCli, requestPlaneUri: string, index = 0): string[] {
  const a = workerArgv(cli, requestPlaneUri);
  if (cli.kvHost) a.push("--kv-host", cli.kvHost);
  if (cli.kvAdvertiseHost) a.push("--kv-advertise-host", cli.kvAdvertiseHost);
  if (cli.kvPort) a.push("--kv-port", String(cli.kvPort + index));
  if (cli.kvOfferTtlMs) a.push("--kv-offer-ttl-ms", String(cli.kvOfferTtlMs));
  return a;
}

/** argv for the api child. */
export function apiArgv(cli: LauncherCli, requestPlaneUri: string): string[] {
  const a = [
    "--tokenizer", cli.executor.modelDir,
    "--request-plane-uri", requestPlaneUri,
    "--api-server-host", cli.apiHost,
    "--api-server-port", String(cli.apiPort),
    "--worker-name", cli.namespace,
  ];
  a.push("--model-name", cli.modelName);
  if (cli.apiKey) a.push("--api-key", cli.apiKey);
  if (cli.disaggMinPromptTokens !== undefined) a.push("--disagg-min-prompt-tokens", String(cli.disaggMinPromptTokens));
  return a;
}

function envPairs(v: unknown, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (v as string[] | undefined) ?? []) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair);
    if (!m) throw new UsageError(`--${flag} takes KEY=VALUE, got ${pair}`);
    out[m[1]] = m[2];
  }
  return out;
}
