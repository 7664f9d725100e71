import { parseArgs, type ParseArgsConfig } from "node:util";
import type { Endpoint } from "./client.js";
import type { BenchRequest } from "./dataset.js";
import { promptsFileDataset, randomDataset } from "./dataset.js";
import { parseLengthDistribution } from "./distributions.js";
import { InvalidOptionError } from "./errors.js";
import type { ArrivalProcess } from "./arrivals.js";
import type { Slo } from "./stats.js";

type Flags = Record<string, string | boolean | undefined>;

/**
 * parseArgs with strict checking; its errors become InvalidOptionError. Not the apps' parser (apps/common's cli.ts)
 * on purpose: `trtd-bench run` loads any OpenAI-compatible server and loads nothing of trtd's apps (only
 * `experiment` does, on demand, to start a launcher); none of its flags is an app's; its values are numbers that
 * may be fractions or "inf"; its mistakes are the bench's own error catalogue (errors.ts). The launcher flags it
 * writes for `experiment` come from apps-common (`executorArgv`), so those stay the apps' own.
 */
export function parseFlags(argv: string[], options: NonNullable<ParseArgsConfig["options"]>): Flags {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Flags;
  } catch (cause) {
    throw new InvalidOptionError((cause as Error).message, { cause });
  }
}

export function numberFlag(flags: Flags, name: string, fallback: number, { min = -Infinity, integer = false } = {}): number {
  const raw = flags[name];
  if (raw === undefined) return fallback;
  const v = raw === "inf" ? Infinity : Number(raw);
  if (Number.isNaN(v) || v < min || (integer && !Number.isInteger(v))) {
    throw new InvalidOptionError(`--${name} must be ${integer ? "an integer" : "a number"} >= ${min}, got "${String(raw)}"`);
  }
  return v;
}

export function stringFlag(flags: Flags, name: string, fallback?: string): string {
  const v = flags[name];
  if (typeof v === "string") return v;
  if (fallback === undefined) throw new InvalidOptionError(`--${name} is required`);
  return fallback;
}

/** "1,2,4" → [1, 2, 4]; every rate > 0 ("inf" allowed). */
export function parseRates(s: string): number[] {
  const rates = s.split(",").map((x) => (x.trim() === "inf" ? Infinity : Number(x)));
  if (rates.length === 0 || rates.some((r) => Number.isNaN(r) || !(r > 0))) throw new InvalidOptionError(`--rates must be positive numbers separated by commas, got "${s}"`);
  return rates;
}

/** Flags shared by `run` and `experiment`: the workload and the SLO. */
export const workloadFlagOptions = {
  "num-requests": { type: "string" },
  "input-len": { type: "string" },
  "output-len": { type: "string" },
  "prompts-file": { type: "string" },
  seed: { type: "string" },
  arrival: { type: "string" },
  "max-concurrency": { type: "string" },
  "time-limit": { type: "string" },
  "request-timeout": { type: "string" },
  "slo-ttft-ms": { type: "string" },
  "slo-tpot-ms": { type: "string" },
  "goodput-target": { type: "string" },
  endpoint: { type: "string" },
  "extra-body": { type: "string" },
  out: { type: "string" },
} as const;

export interface Workload {
  requests: BenchRequest[];
  arrival: ArrivalProcess;
  seed: number;
  maxConcurrency: number;
  timeLimitS: number;
  requestTimeoutMs: number;
  slo: Slo;
  target: number;
  endpoint: Endpoint;
  extraBody?: Record<string, unknown>;
  /** The flags that made it, for results.json. */
  description: Record<string, unknown>;
}

export function workloadFromFlags(flags: Flags, defaults: { numRequests: number; inputLen: string; outputLen: string; sloTtftMs: number; sloTpotMs: number; timeLimitS: number }): Workload {
  const count = numberFlag(flags, "num-requests", defaults.numRequests, { min: 1, integer: true });
  const seed = numberFlag(flags, "seed", 0, { integer: true });
  const inputSpec = stringFlag(flags, "input-len", defaults.inputLen);
  const outputSpec = stringFlag(flags, "output-len", defaults.outputLen);
  const output = parseLengthDistribution(outputSpec);
  const promptsFile = flags["prompts-file"] as string | undefined;
  const requests = promptsFile
    ? promptsFileDataset(promptsFile, count, output, seed)
    : randomDataset({ count, input: parseLengthDistribution(inputSpec), output, seed });
  const arrival = stringFlag(flags, "arrival", "poisson");
  if (arrival !== "poisson" && arrival !== "fixed") throw new InvalidOptionError(`--arrival must be poisson or fixed, got "${arrival}"`);
  const endpoint = stringFlag(flags, "endpoint", "chat");
  if (endpoint !== "chat" && endpoint !== "completions") throw new InvalidOptionError(`--endpoint must be chat or completions, got "${endpoint}"`);
  let extraBody: Record<string, unknown> | undefined;
  if (typeof flags["extra-body"] === "string") {
    try {
      extraBody = JSON.parse(flags["extra-body"]) as Record<string, unknown>;
    } catch (cause) {
      throw new InvalidOptionError("--extra-body must be a JSON object", { cause });
    }
    if (typeof extraBody !== "object" || extraBody === null || Array.isArray(extraBody)) throw new InvalidOptionError("--extra-body must be a JSON object");
  }
  const w: Workload = {
    requests,
    arrival,
    seed,
    maxConcurrency: numberFlag(flags, "max-concurrency", Infinity, { min: 1 }),
    timeLimitS: numberFlag(flags, "time-limit", defaults.timeLimitS, { min: 0.001 }),
    requestTimeoutMs: numberFlag(flags, "request-timeout", 60, { min: 0.001 }) * 1000,
    slo: { ttftMs: numberFlag(flags, "slo-ttft-ms", defaults.sloTtftMs, { min: 0 }), tpotMs: numberFlag(flags, "slo-tpot-ms", defaults.sloTpotMs, { min: 0 }) },
    target: numberFlag(flags, "goodput-target", 0.9, { min: 0 }),
    endpoint,
    extraBody,
    description: {},
  };
  w.description = {
    numRequests: count,
    dataset: promptsFile ? { promptsFile, outputLen: outputSpec } : { inputLen: inputSpec, outputLen: outputSpec },
    seed,
    arrival,
    maxConcurrency: Number.isFinite(w.maxConcurrency) ? w.maxConcurrency : null,
    timeLimitS: w.timeLimitS,
    requestTimeoutS: w.requestTimeoutMs / 1000,
    endpoint,
    extraBody: extraBody ?? null,
  };
  return w;
}
