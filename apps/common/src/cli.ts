// Flag parsing shared by the apps. Flags follow the seed's names (--request-plane-uri, --worker-name, ...).
import { parseArgs, type ParseArgsConfig } from "node:util";

export class UsageError extends Error {
  readonly code = "usage" as const;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

type Options = NonNullable<ParseArgsConfig["options"]>;

export type FlagValues = Record<string, string | boolean | Array<string | boolean> | undefined>;

/** parseArgs with strict checking, turning its errors into a one-line UsageError. */
export function parseFlags(argv: string[], options: Options): FlagValues {
  try {
    return parseArgs({ args: joinNegativeValues(argv, options), options, strict: true, allowPositionals: false }).values as FlagValues;
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n").join(" "), { cause: err });
  }
}

/**
 * `--flag -1` as `--flag=-1`: a negative number is a value, never a flag, so the flag's own check can name the
 * rule (parseArgs would call it ambiguous).
 */
function joinNegativeValues(argv: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = /^--([^=]+)$/.exec(argv[i]);
    if (flag && options[flag[1]]?.type === "string" && /^-\d/.test(argv[i + 1] ?? "")) out.push(`${argv[i]}=${argv[++i]}`);
    else out.push(argv[i]);
  }
  return out;
}

export function intFlag(value: unknown, name: string, { min = 0, fallback }: { min?: number; fallback: number }): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got ${String(value)}`);
  return n;
}

/** The executor implementations a worker can run (@trtd/trtllm's ExecutorOptions.executor, kept structural). */
export const EXECUTOR_NAMES = ["reference", "cuda"] as const;
export type ExecutorName = (typeof EXECUTOR_NAMES)[number];

/** Executor flags shared by prefill and decode workers. */
export const executorFlagOptions = {
  executor: { type: "string" },
  device: { type: "string" },
  "model-dir": { type: "string" },
  "max-batch-size": { type: "string" },
  "max-tokens-per-iteration": { type: "string" },
  "kv-tokens-per-block": { type: "string" },
  "kv-block-count": { type: "string" },
  "gpu-memory-fraction": { type: "string" },
  threads: { type: "string" },
} as const satisfies Options;

export interface ExecutorFlags {
  /** --executor: "reference" or "cuda"; unset, the binding's default ($TRTD_EXECUTOR_LIB, else the reference executor). */
  executor?: ExecutorName;
  /** --device: the GPU ordinal; unset, the executor's default (0 for cuda). Other than 0 only with executor "cuda". */
  deviceId?: number;
  modelDir: string;
  maxBatchSize: number;
  maxTokensPerIteration: number;
  kvTokensPerBlock: number;
  /** KV blocks in the pool; 0 = sized from --gpu-memory-fraction. */
  kvBlockCount: number;
  /**
   * --gpu-memory-fraction (executor "cuda" only): weights + KV pool of this worker may take this fraction of the
   * GPU's total memory; the worker turns it into the KV byte budget (trtd_executor_config.kv_memory_bytes) at start.
   */
  gpuMemoryFraction?: number;
  threads: number;
}

export const EXECUTOR_DEFAULTS = {
  maxBatchSize: 64,
  // Long prompts are chunked to this per iteration, so running streams (and cancellations) are not held up long.
  maxTokensPerIteration: 512,
  kvTokensPerBlock: 16,
  kvBlockCount: 2048,
  threads: 1,
} as const;

function executorNameFlag(value: unknown): ExecutorName | undefined {
  if (value === undefined) return undefined;
  const name = EXECUTOR_NAMES.find((n) => n === value);
  if (!name) throw new UsageError(`--executor must be one of ${EXECUTOR_NAMES.join(", ")}, got ${String(value)}`);
  return name;
}

/** --gpu-memory-fraction F: a number in (0, 1]. */
export function fractionFlag(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  const f = typeof value === "string" && /^\s*$/.test(value) ? NaN : Number(value);
  if (!(f > 0 && f <= 1)) throw new UsageError(`--${name} must be a number in (0, 1], got ${String(value)}`);
  return f;
}

export function executorFlags(values: Record<string, unknown>, defaultModelDir: string): ExecutorFlags {
  const executor = executorNameFlag(values.executor);
  const deviceId = values.device === undefined ? undefined : intFlag(values.device, "device", { min: 0, fallback: 0 });
  if (deviceId && executor !== "cuda") {
    throw new UsageError(`--device ${deviceId} needs --executor cuda: the reference executor runs on the CPU`);
  }
  const gpuMemoryFraction = fractionFlag(values["gpu-memory-fraction"], "gpu-memory-fraction");
  if (gpuMemoryFraction !== undefined && executor !== "cuda") {
    throw new UsageError("--gpu-memory-fraction needs --executor cuda: it sizes a KV pool in GPU memory");
  }
  if (gpuMemoryFraction !== undefined && values["kv-block-count"] !== undefined) {
    throw new UsageError("--gpu-memory-fraction sizes the KV pool: give it or --kv-block-count, not both");
  }
  return {
    ...(executor ? { executor } : {}),
    ...(deviceId !== undefined ? { deviceId } : {}),
    ...(gpuMemoryFraction !== undefined ? { gpuMemoryFraction } : {}),
    modelDir: typeof values["model-dir"] === "string" ? (values["model-dir"] as string) : defaultModelDir,
    maxBatchSize: intFlag(values["max-batch-size"], "max-batch-size", { min: 1, fallback: EXECUTOR_DEFAULTS.maxBatchSize }),
    maxTokensPerIteration: intFlag(values["max-tokens-per-iteration"], "max-tokens-per-iteration", {
      min: 1,
      fallback: EXECUTOR_DEFAULTS.maxTokensPerIteration,
    }),
    kvTokensPerBlock: intFlag(values["kv-tokens-per-block"], "kv-tokens-per-block", { min: 1, fallback: EXECUTOR_DEFAULTS.kvTokensPerBlock }),
    kvBlockCount:
      gpuMemoryFraction !== undefined ? 0 : intFlag(values["kv-block-count"], "kv-block-count", { min: 1, fallback: EXECUTOR_DEFAULTS.kvBlockCount }),
    threads: intFlag(values.threads, "threads", { min: 1, fallback: EXECUTOR_DEFAULTS.threads }),
  };
}

/** Turns ExecutorFlags back into argv, for the launcher. */
export function executorArgv(f: Partial<ExecutorFlags>): string[] {
  const out: string[] = [];
  if (f.executor) out.push("--executor", f.executor);
  if (f.deviceId !== undefined) out.push("--device", String(f.deviceId));
  if (f.modelDir) out.push("--model-dir", f.modelDir);
  if (f.maxBatchSize) out.push("--max-batch-size", String(f.maxBatchSize));
  if (f.maxTokensPerIteration) out.push("--max-tokens-per-iteration", String(f.maxTokensPerIteration));
  if (f.kvTokensPerBlock) out.push("--kv-tokens-per-block", String(f.kvTokensPerBlock));
  if (f.gpuMemoryFraction !== undefined) out.push("--gpu-memory-fraction", String(f.gpuMemoryFraction));
  else if (f.kvBlockCount) out.push("--kv-block-count", String(f.kvBlockCount));
  if (f.threads) out.push("--threads", String(f.threads));
  return out;
}
