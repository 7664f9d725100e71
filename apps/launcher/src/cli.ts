// The launcher's command line: the seed's deploy flags, the api's flags, executor flags passed to workers; parsed
// by apps/common's cli.ts. Flags it passes on (--kv-*, --stall-timeout-ms, --disagg-min-prompt-tokens) have no
// default here: unset, they are not passed, and the worker's or the api's own default holds.
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { REASONING_PARSER_MODES, ROUTER_MODES, TOOL_CALL_PARSER_MODES, type ReasoningParserMode, type RouterMode, type ToolCallParserMode } from "@trtd/api";
import {
  checkNatsAuth,
  checkReadable,
  DEFAULT_NAMESPACE,
  DIRECT_DATA_PATH_USAGE,
  directDataPathArgv,
  executorArgv,
  executorFlagOptions,
  executorFlags,
  intFlag,
  NATS_AUTH_ENV,
  optionalIntFlag,
  parseFlags,
  portFlag,
  readNatsCredentials,
  requestPlaneFlagOptions,
  requestPlaneFlags,
  stringFlag,
  UsageError,
  type ExecutorFlags,
  type NatsAuthEnv,
} from "@trtd/apps-common";
import type { DirectLinkOptions } from "@trtd/request-plane";
import { API_PROBE_INTERVAL_MS, DEFAULT_WEDGED, type WedgedOptions } from "./supervisor.js";

/**
 * The api's V8 old-space bound by default, MB (--api-heap-mb). Under V8's own limit (4,345 MB on the 23 GiB
 * development VM) the api's RSS crept over a 100k soak as V8 let its heap reservation grow; with 512 MB it stayed in
 * a 10 MB band over 40k requests, as with 96 MB (docs/benchmarks/reliability.md, *The api's heap bound*). 512
 * rather than 96 leaves room above the api's ~40 MB live heap for prompts in flight and larger tokenizers.
 */
export const DEFAULT_API_HEAP_MB = 512;
/** Workers keep V8's limit by default (--worker-heap-mb 0): their RSS was flat over 100k requests without a bound. */
export const DEFAULT_WORKER_HEAP_MB = 0;
/** Smallest heap bound a flag takes (MB): below it a process may not even start. */
export const MIN_HEAP_MB = 64;

export const LAUNCHER_USAGE = `usage: launcher [--context-worker-count N] [--generate-worker-count M] [--worker-name NAME]
                [--initialize-request-plane] [--request-plane-uri HOST:PORT] [options]
  --context-worker-count N       prefill workers (default 1; 0 = aggregated only)
  --generate-worker-count M      decode workers (default 1; 0 = none on this host, for multi-host deployments)
  --worker-name NAME             the deployment's namespace on the request plane (default ${DEFAULT_NAMESPACE})
  --initialize-request-plane     start nats-server (JetStream on) at --request-plane-uri
  --request-plane-uri URI        NATS server, or a NATS cluster as a comma-separated list (default 127.0.0.1:4222)
${DIRECT_DATA_PATH_USAGE.replaceAll("\n                                ", "\n                                 ")}
                                 (passed to the api and every worker)
  --no-api                       run no api on this host (workers only; multi-host, see docs/design/multi-host.md)
  --kv-host HOST                 prefill workers' KV offer server listen address (worker default 127.0.0.1)
  --kv-advertise-host HOST       address decode workers on other hosts use to reach it (worker default: --kv-host)
  --kv-port N                    prefill worker i's KV offer server port is N+i (default: any free port)
  --kv-offer-ttl-ms N            prefill workers: an unpulled KV offer is released after this long (worker default)
  --in-process                   one process, in-process request plane (no nats-server)
  --in-process-fallback          with --initialize-request-plane: go in-process when nats-server is not installed
  --use-running-request-plane    with --initialize-request-plane: when a NATS server already answers at
                                 --request-plane-uri, use it (anonymous clients) instead of starting one
  --request-plane-credentials FILE  with --initialize-request-plane: also write the api role's NATS account to FILE
                                 (mode 0600, TRTD_NATS_USER/TRTD_NATS_PASS lines) for other clients on this host.
                                 With an external NATS: read the credentials every role uses from FILE (mode 0600):
                                 a NATS .creds file, or TRTD_NATS_USER/PASS, TOKEN, NKEY_SEED or CREDS_FILE lines
  --request-plane-tls-ca FILE    external NATS over TLS: the CA that signed its certificate
  --request-plane-tls-cert FILE  --request-plane-tls-key FILE   external NATS: a TLS client certificate and its key
  --api-server-host HOST         (default 127.0.0.1)   --api-server-port PORT (default 8000, 0 = any free port)
  --model-dir DIR                model for workers and tokenizer (default models/tiny)
  --executor NAME                workers' executor: reference (CPU) or cuda (default: $TRTD_EXECUTOR_LIB, else reference)
  --device N                     workers' GPU ordinal for --executor cuda (default 0)
  --prefill-devices LIST         --executor cuda: GPU ordinals of prefill workers, comma-separated; worker i gets
                                 LIST[i % length] (default: --device)
  --decode-devices LIST          --executor cuda: the same for decode workers (e.g. --prefill-devices 0 --decode-devices 1)
  --gpu-memory-fraction F        --executor cuda: each worker's weights + KV pool take at most F (0 < F <= 1) of its
                                 GPU's memory (default: 0.9 / N for N workers sharing a GPU, e.g. 0.45 for prefill +
                                 decode on one; a GPU with one worker keeps --kv-block-count)
  --kv-host-cache-gb N           each worker's host KV tier: GiB of host memory (pinned with --executor cuda) that
                                 keeps cached blocks evicted from its KV pool for later prefix hits (default 0 = off)
  --prefix-cache on|off          each worker keeps full KV blocks across requests for shared prefixes (default on)
  --model-name NAME              model id clients send (default: the model directory's name)
  --api-key KEY                  require Bearer KEY on /v1 (default: $TRTD_API_KEY)
  --disagg-min-prompt-tokens N   shorter prompts run aggregated (api default)
  --router-mode kv|load|round-robin  how the api chooses decode workers (api default: load)
  --reasoning-parser auto|none|think, --tool-call-parser auto|none|llama3_json|hermes
                                 passed to the api (api default: auto, from the chat template)
  --max-restarts N               restarts of a crashed or wedged child before the launcher gives up (default 3)
  --stall-timeout-ms N           workers: running requests and no engine iteration for N ms = stalled (worker default)
  --stalled-restart-ms N         a worker reporting its engine stalled for N ms more is restarted (default ${DEFAULT_WEDGED.stalledRestartMs}; 0 = never)
  --worker-liveness-timeout-ms N a worker whose health reports stop for N ms (SIGSTOP, a hung process) is restarted
                                 (default ${DEFAULT_WEDGED.livenessTimeoutMs}; 0 = never)
  --api-liveness-timeout-ms N    the launcher probes the api's /health every ${API_PROBE_INTERVAL_MS} ms; no answer for N ms (SIGSTOP, a
                                 hung process) and it is restarted (default ${DEFAULT_WEDGED.apiLivenessTimeoutMs}; 0 = never, else >= ${2 * API_PROBE_INTERVAL_MS})
  --startup-timeout-ms N         a worker with no health report, or an api with no answer to /health, N ms after its
                                 start is restarted (default: --ready-timeout-ms; 0 = never)
  --api-heap-mb N                the api's V8 old space, MB (default ${DEFAULT_API_HEAP_MB}; 0 = V8's default, about a quarter of RAM)
  --worker-heap-mb N             the same for prefill and decode workers (default ${DEFAULT_WORKER_HEAP_MB} = V8's default)
  --ready-timeout-ms N           bound on bring-up (default 180000)
  --prefill-env KEY=VALUE        environment for prefill workers only (repeatable; e.g. TRTD_TRTLLM_DEVICE_ID=0)
  --decode-env KEY=VALUE         environment for decode workers only (repeatable)
  --max-batch-size N  --max-tokens-per-iteration N  --kv-tokens-per-block N  --kv-block-count N  --threads N`;

export const launcherFlagOptions = {
  "context-worker-count": { type: "string" },
  "generate-worker-count": { type: "string" },
  ...requestPlaneFlagOptions,
  "initialize-request-plane": { type: "boolean" },
  "in-process": { type: "boolean" },
  "in-process-fallback": { type: "boolean" },
  "use-running-request-plane": { type: "boolean" },
  "request-plane-credentials": { type: "string" },
  "request-plane-tls-ca": { type: "string" },
  "request-plane-tls-cert": { type: "string" },
  "request-plane-tls-key": { type: "string" },
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
  "router-mode": { type: "string" },
  "reasoning-parser": { type: "string" },
  "tool-call-parser": { type: "string" },
  "max-restarts": { type: "string" },
  "stall-timeout-ms": { type: "string" },
  "stalled-restart-ms": { type: "string" },
  "worker-liveness-timeout-ms": { type: "string" },
  "api-liveness-timeout-ms": { type: "string" },
  "startup-timeout-ms": { type: "string" },
  "api-heap-mb": { type: "string" },
  "worker-heap-mb": { type: "string" },
  "ready-timeout-ms": { type: "string" },
  "prefill-env": { type: "string", multiple: true },
  "decode-env": { type: "string", multiple: true },
  "prefill-devices": { type: "string" },
  "decode-devices": { type: "string" },
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
  /** With initializeRequestPlane: a NATS already answering at requestPlaneUri is used instead (npm start). */
  useRunningRequestPlane: boolean;
  /** Where to write the api role's account of a launcher-started nats-server (0600), for other local clients. */
  requestPlaneCredentialsFile?: string;
  /**
   * External NATS: the `TRTD_NATS_*` settings every role gets through its environment (never argv), from
   * --request-plane-credentials and the --request-plane-tls-* flags.
   */
  requestPlaneAuth?: NatsAuthEnv;
  /** Workers only: the api runs on another host. */
  noApi: boolean;
  /** --direct-data-path, --direct-data-path-host, --advertise-host: passed to the api and every worker. */
  directLink: DirectLinkOptions;
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
  /** The api's --router-mode; unset: the api's default. */
  routerMode?: RouterMode;
  /** The api's --reasoning-parser and --tool-call-parser; unset: the api's defaults. */
  reasoningParser?: ReasoningParserMode;
  toolCallParser?: ToolCallParserMode;
  maxRestarts: number;
  /** Passed to workers: their progress watchdog's bound. */
  stallTimeoutMs?: number;
  /** When the supervisor restarts a wedged worker or api. */
  wedged: WedgedOptions;
  /** The api's V8 old-space bound, MB (`--max-old-space-size`); 0 = V8's default. */
  apiHeapMb: number;
  /** The same for prefill and decode workers. */
  workerHeapMb: number;
  readyTimeoutMs: number;
  /** Extra environment per worker role (e.g. a device per role). */
  roleEnv: { prefill: Record<string, string>; decode: Record<string, string> };
  executor: ExecutorFlags;
  /**
   * GPU ordinals per role (executor "cuda" only): worker i of a role runs on list[i % length]. Default: every
   * worker on --device (0).
   */
  devices?: { prefill: number[]; decode: number[] };
  /** Per GPU ordinal, the --gpu-memory-fraction each worker on it gets (an explicit flag, else the split default). */
  gpuMemoryFractions?: Map<number, number>;
  help: boolean;
}

/** Weights + KV of the workers sharing a GPU take this much of it by default; the rest is for CUDA contexts,
 * activations and workspaces. */
export const SHARED_GPU_MEMORY_BUDGET = 0.9;

export function parseLauncherCli(argv: string[], defaultModelDir: string): LauncherCli {
  const v = parseFlags(argv, launcherFlagOptions);
  const str = (k: string) => stringFlag(v, k);
  const ex = executorFlags(v, defaultModelDir);
  const generateWorkers = intFlag(v["generate-worker-count"], "generate-worker-count", { min: 0, fallback: 1 });
  const contextWorkers = intFlag(v["context-worker-count"], "context-worker-count", { min: 0, fallback: 1 });
  const noApi = v["no-api"] === true;
  const apiPort = portFlag(v["api-server-port"], "api-server-port", { fallback: 8000 });
  if (v["in-process"] && v["initialize-request-plane"]) throw new UsageError("--in-process needs no request plane: drop --initialize-request-plane");
  const requestPlaneAuth = externalNatsAuth(v);
  if (v["initialize-request-plane"] && str("request-plane-uri")?.includes(",")) {
    throw new UsageError("--initialize-request-plane starts one nats-server: start a NATS cluster yourself (docs/design/multi-host.md)");
  }
  const kvPort = optionalIntFlag(v["kv-port"], "kv-port");
  if (kvPort !== undefined && kvPort + Math.max(0, contextWorkers - 1) > 65535) throw new UsageError("--kv-port + context workers must stay <= 65535");
  if (noApi && contextWorkers + generateWorkers === 0) throw new UsageError("--no-api with no workers: nothing to run");
  if (v["in-process"] && (noApi || generateWorkers === 0)) {
    throw new UsageError("--in-process runs a whole deployment in one process: it needs the api and at least one decode worker");
  }
  const placement = gpuPlacement(v, ex, contextWorkers, generateWorkers);
  if (v.help !== true && !existsSync(join(resolve(ex.modelDir), "config.json"))) {
    throw new UsageError(`--model-dir ${resolve(ex.modelDir)} has no config.json: give a Hugging Face model directory (npm start makes models/tiny)`);
  }
  if (v["use-running-request-plane"] && !v["initialize-request-plane"]) {
    throw new UsageError("--use-running-request-plane chooses between a running NATS and starting one: it needs --initialize-request-plane");
  }
  const apiHeapMb = heapFlag(v["api-heap-mb"], "api-heap-mb", DEFAULT_API_HEAP_MB);
  const workerHeapMb = heapFlag(v["worker-heap-mb"], "worker-heap-mb", DEFAULT_WORKER_HEAP_MB);
  if (v["in-process"]) {
    const given = ["api-heap-mb", "worker-heap-mb"].find((f) => v[f] !== undefined);
    if (given) throw new UsageError(`--${given} bounds a child process's heap: with --in-process run node --max-old-space-size=N yourself`);
  }
  const readyTimeoutMs = intFlag(v["ready-timeout-ms"], "ready-timeout-ms", { min: 1, fallback: 180_000 });
  const apiLivenessTimeoutMs = intFlag(v["api-liveness-timeout-ms"], "api-liveness-timeout-ms", { min: 0, fallback: DEFAULT_WEDGED.apiLivenessTimeoutMs });
  if (apiLivenessTimeoutMs > 0 && apiLivenessTimeoutMs < 2 * API_PROBE_INTERVAL_MS) {
    throw new UsageError(`--api-liveness-timeout-ms must be 0 (off) or at least ${2 * API_PROBE_INTERVAL_MS} (two probes), got ${String(v["api-liveness-timeout-ms"])}`);
  }
  return {
    contextWorkers,
    generateWorkers,
    ...requestPlaneFlags(v),
    initializeRequestPlane: v["initialize-request-plane"] === true,
    inProcess: v["in-process"] === true,
    inProcessFallback: v["in-process-fallback"] === true,
    useRunningRequestPlane: v["use-running-request-plane"] === true,
    ...(str("request-plane-credentials") && v["initialize-request-plane"] ? { requestPlaneCredentialsFile: str("request-plane-credentials") } : {}),
    ...(requestPlaneAuth ? { requestPlaneAuth } : {}),
    noApi,
    kvHost: str("kv-host"),
    kvAdvertiseHost: str("kv-advertise-host"),
    kvPort,
    kvOfferTtlMs: optionalIntFlag(v["kv-offer-ttl-ms"], "kv-offer-ttl-ms"),
    apiHost: str("api-server-host") ?? "127.0.0.1",
    apiPort,
    modelName: str("model-name") ?? basename(resolve(ex.modelDir)),
    apiKey: str("api-key"),
    disaggMinPromptTokens: optionalIntFlag(v["disagg-min-prompt-tokens"], "disagg-min-prompt-tokens", 0),
    routerMode: oneOf(str("router-mode"), ROUTER_MODES, "router-mode"),
    reasoningParser: oneOf(str("reasoning-parser"), REASONING_PARSER_MODES, "reasoning-parser"),
    toolCallParser: oneOf(str("tool-call-parser"), TOOL_CALL_PARSER_MODES, "tool-call-parser"),
    maxRestarts: intFlag(v["max-restarts"], "max-restarts", { min: 0, fallback: 3 }),
    stallTimeoutMs: optionalIntFlag(v["stall-timeout-ms"], "stall-timeout-ms"),
    wedged: {
      ...DEFAULT_WEDGED,
      livenessTimeoutMs: intFlag(v["worker-liveness-timeout-ms"], "worker-liveness-timeout-ms", { min: 0, fallback: DEFAULT_WEDGED.livenessTimeoutMs }),
      stalledRestartMs: intFlag(v["stalled-restart-ms"], "stalled-restart-ms", { min: 0, fallback: DEFAULT_WEDGED.stalledRestartMs }),
      startupTimeoutMs: intFlag(v["startup-timeout-ms"], "startup-timeout-ms", { min: 0, fallback: readyTimeoutMs }),
      apiLivenessTimeoutMs,
    },
    apiHeapMb,
    workerHeapMb,
    readyTimeoutMs,
    roleEnv: { prefill: envPairs(v["prefill-env"], "prefill-env"), decode: envPairs(v["decode-env"], "decode-env") },
    executor: { ...ex, modelDir: resolve(ex.modelDir) },
    ...placement,
    help: v.help === true,
  };
}

const TLS_FLAGS = { "request-plane-tls-ca": NATS_AUTH_ENV.tlsCaFile, "request-plane-tls-cert": NATS_AUTH_ENV.tlsCertFile, "request-plane-tls-key": NATS_AUTH_ENV.tlsKeyFile } as const;

/**
 * Credentials and TLS files for an external NATS (undefined when none are given): checked here, before anything
 * starts. With --initialize-request-plane the launcher makes the accounts itself, and --request-plane-credentials
 * names where it writes the api's.
 */
function externalNatsAuth(v: Record<string, unknown>): NatsAuthEnv | undefined {
  const credentials = typeof v["request-plane-credentials"] === "string" ? (v["request-plane-credentials"] as string) : undefined;
  const tlsGiven = (Object.keys(TLS_FLAGS) as Array<keyof typeof TLS_FLAGS>).filter((f) => typeof v[f] === "string");
  if (v["in-process"] && (credentials !== undefined || tlsGiven.length > 0)) {
    throw new UsageError(`--in-process has no request plane to authenticate to: drop --${credentials !== undefined ? "request-plane-credentials" : tlsGiven[0]}`);
  }
  if (v["initialize-request-plane"]) {
    if (tlsGiven.length > 0) throw new UsageError(`--${tlsGiven[0]} is for an external NATS: the nats-server --initialize-request-plane starts has no TLS`);
    return undefined;
  }
  if (credentials === undefined && tlsGiven.length === 0) return undefined;
  const env: NatsAuthEnv = credentials !== undefined ? readNatsCredentials(credentials) : {};
  for (const f of tlsGiven) {
    const file = resolve(v[f] as string);
    if (env[TLS_FLAGS[f]]) throw new UsageError(`--${f} and ${TLS_FLAGS[f]} in ${credentials}: give it once`);
    checkReadable(file, `--${f}`);
    env[TLS_FLAGS[f]] = file;
  }
  checkNatsAuth(env, "--request-plane-credentials and --request-plane-tls-*");
  return env;
}

/** A V8 old-space bound in MB: 0 (V8's default) or at least MIN_HEAP_MB. */
function heapFlag(value: unknown, name: string, fallback: number): number {
  const n = intFlag(value, name, { min: 0, fallback });
  if (n > 0 && n < MIN_HEAP_MB) throw new UsageError(`--${name} must be 0 (V8's default) or at least ${MIN_HEAP_MB} (MB), got ${String(value)}`);
  return n;
}

/** Node options for a child whose old space is bounded to `heapMb` MB (none for 0: V8's default). */
export function heapNodeArgs(heapMb: number): string[] {
  return heapMb > 0 ? [`--max-old-space-size=${heapMb}`] : [];
}

/** Comma-separated GPU ordinals, each an integer >= 0. */
function deviceListFlag(value: unknown, name: string): number[] | undefined {
  if (value === undefined) return undefined;
  const items = String(value).split(",");
  const out = items.map((s) => (/^\d+$/.test(s.trim()) ? Number(s.trim()) : NaN));
  if (out.some((n) => !Number.isSafeInteger(n))) {
    throw new UsageError(`--${name} takes comma-separated GPU ordinals (integers >= 0), got ${String(value)}`);
  }
  return out;
}

/** Where each worker runs with --executor cuda, and the share of its GPU's memory it may take. */
function gpuPlacement(v: Record<string, unknown>, ex: ExecutorFlags, contextWorkers: number, generateWorkers: number): Pick<LauncherCli, "devices" | "gpuMemoryFractions"> {
  const prefill = deviceListFlag(v["prefill-devices"], "prefill-devices");
  const decode = deviceListFlag(v["decode-devices"], "decode-devices");
  if (ex.executor !== "cuda") {
    const given = prefill ? "--prefill-devices" : decode ? "--decode-devices" : undefined;
    if (given) throw new UsageError(`${given} needs --executor cuda: the reference executor runs on the CPU`);
    return {};
  }
  const fallback = [ex.deviceId ?? 0];
  const devices = { prefill: prefill ?? fallback, decode: decode ?? fallback };
  const perGpu = new Map<number, number>();
  for (let i = 0; i < contextWorkers; i++) perGpu.set(deviceOf(devices.prefill, i), (perGpu.get(deviceOf(devices.prefill, i)) ?? 0) + 1);
  for (let i = 0; i < generateWorkers; i++) perGpu.set(deviceOf(devices.decode, i), (perGpu.get(deviceOf(devices.decode, i)) ?? 0) + 1);
  const gpuMemoryFractions = new Map<number, number>();
  for (const [gpu, n] of perGpu) {
    if (ex.gpuMemoryFraction !== undefined) gpuMemoryFractions.set(gpu, ex.gpuMemoryFraction);
    // An explicit --kv-block-count sizes every pool itself; otherwise workers sharing a GPU split it.
    else if (n > 1 && v["kv-block-count"] === undefined) gpuMemoryFractions.set(gpu, Math.floor((SHARED_GPU_MEMORY_BUDGET / n) * 100) / 100);
  }
  return { devices, gpuMemoryFractions };
}

const deviceOf = (list: number[], i: number) => list[i % list.length]!;

/** The executor flags of worker `index` of `role`: its GPU and share of that GPU's memory (executor "cuda"). */
export function workerExecutor(cli: LauncherCli, role: "prefill" | "decode", index: number): ExecutorFlags {
  if (!cli.devices) return cli.executor;
  const deviceId = deviceOf(cli.devices[role], index);
  const fraction = cli.gpuMemoryFractions?.get(deviceId);
  const { gpuMemoryFraction: _f, ...rest } = cli.executor;
  return fraction === undefined ? { ...rest, deviceId } : { ...rest, deviceId, gpuMemoryFraction: fraction, kvBlockCount: 0 };
}

/** argv for worker `index` of `role` (its GPU and memory share with --executor cuda). */
export function workerArgv(cli: LauncherCli, requestPlaneUri: string, role: "prefill" | "decode" = "decode", index = 0): string[] {
  const a = ["--worker-name", cli.namespace, "--request-plane-uri", requestPlaneUri, ...directDataPathArgv(cli.directLink), ...executorArgv(workerExecutor(cli, role, index))];
  if (cli.stallTimeoutMs !== undefined) a.push("--stall-timeout-ms", String(cli.stallTimeoutMs));
  return a;
}

/** argv for a prefill worker child: the worker flags plus where its KV offer server listens and what it advertises. */
export function prefillArgv(cli: LauncherCli, requestPlaneUri: string, index = 0): string[] {
  const a = workerArgv(cli, requestPlaneUri, "prefill", index);
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
    ...directDataPathArgv(cli.directLink),
  ];
  a.push("--model-name", cli.modelName);
  if (cli.apiKey) a.push("--api-key", cli.apiKey);
  if (cli.disaggMinPromptTokens !== undefined) a.push("--disagg-min-prompt-tokens", String(cli.disaggMinPromptTokens));
  if (cli.routerMode !== undefined) a.push("--router-mode", cli.routerMode);
  if (cli.reasoningParser !== undefined) a.push("--reasoning-parser", cli.reasoningParser);
  if (cli.toolCallParser !== undefined) a.push("--tool-call-parser", cli.toolCallParser);
  return a;
}

/** An api flag the launcher passes on, checked against the api's own list of values; unset stays unset. */
function oneOf<T extends string>(v: string | undefined, values: readonly T[], flag: string): T | undefined {
  if (v === undefined) return undefined;
  const found = values.find((m) => m === v);
  if (!found) throw new UsageError(`--${flag} must be one of ${values.join(", ")}, got ${v}`);
  return found;
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
