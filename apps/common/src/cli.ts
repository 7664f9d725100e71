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

/** parseArgs with strict checking, turning its errors into UsageError. */
export function parseFlags(argv: string[], options: Options): FlagValues {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as FlagValues;
  } catch (err) {
    throw new UsageError((err as Error).message, { cause: err });
  }
}

export function intFlag(value: unknown, name: string, { min = 0, fallback }: { min?: number; fallback: number }): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got ${String(value)}`);
  return n;
}

/** Executor flags shared by prefill and decode workers. */
export const executorFlagOptions = {
  "model-dir": { type: "string" },
  "max-batch-size": { type: "string" },
  "max-tokens-per-iteration": { type: "string" },
  "kv-tokens-per-block": { type: "string" },
  "kv-block-count": { type: "string" },
  threads: { type: "string" },
} as const satisfies Options;

export interface ExecutorFlags {
  modelDir: string;
  maxBatchSize: number;
  maxTokensPerIteration: number;
  kvTokensPerBlock: number;
  kvBlockCount: number;
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

export function executorFlags(values: Record<string, unknown>, defaultModelDir: string): ExecutorFlags {
  return {
    modelDir: typeof values["model-dir"] === "string" ? (values["model-dir"] as string) : defaultModelDir,
    maxBatchSize: intFlag(values["max-batch-size"], "max-batch-size", { min: 1, fallback: EXECUTOR_DEFAULTS.maxBatchSize }),
    maxTokensPerIteration: intFlag(values["max-tokens-per-iteration"], "max-tokens-per-iteration", {
      min: 1,
      fallback: EXECUTOR_DEFAULTS.maxTokensPerIteration,
    }),
    kvTokensPerBlock: intFlag(values["kv-tokens-per-block"], "kv-tokens-per-block", { min: 1, fallback: EXECUTOR_DEFAULTS.kvTokensPerBlock }),
    kvBlockCount: intFlag(values["kv-block-count"], "kv-block-count", { min: 1, fallback: EXECUTOR_DEFAULTS.kvBlockCount }),
    threads: intFlag(values.threads, "threads", { min: 1, fallback: EXECUTOR_DEFAULTS.threads }),
  };
}

/** Turns ExecutorFlags back into argv, for the launcher. */
export function executorArgv(f: Partial<ExecutorFlags>): string[] {
  const out: string[] = [];
  if (f.modelDir) out.push("--model-dir", f.modelDir);
  if (f.maxBatchSize) out.push("--max-batch-size", String(f.maxBatchSize));
  if (f.maxTokensPerIteration) out.push("--max-tokens-per-iteration", String(f.maxTokensPerIteration));
  if (f.kvTokensPerBlock) out.push("--kv-tokens-per-block", String(f.kvTokensPerBlock));
  if (f.kvBlockCount) out.push("--kv-block-count", String(f.kvBlockCount));
  if (f.threads) out.push("--threads", String(f.threads));
  return out;
}
