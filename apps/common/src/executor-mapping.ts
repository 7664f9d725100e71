// Translating between the wire protocol and the executor's request/response shapes (contracts.md, Executor).
import { gibToBytes, type ExecutorFlags } from "./cli.js";
import type { FinishReason, GenerateRequest } from "./protocol.js";

/** The executor's finish reasons (a subset of its chunk type, kept structural so this file has no native import). */
export type ExecutorFinishReason = "length" | "end_id" | "stop_token" | "cancelled" | "error";

export function finishReasonOf(r: ExecutorFinishReason | undefined): FinishReason {
  switch (r) {
    case "length":
      return "length";
    case "end_id":
    case "stop_token":
      return "stop";
    case "cancelled":
      return "cancelled";
    default:
      return "error";
  }
}

/** Executor sampling from wire sampling (the logit controls' absent fields stay absent: the executor's defaults). */
export function executorSampling(req: GenerateRequest): {
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  repetitionPenalty?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  minP?: number;
} {
  const { temperature, topK, topP, seed, repetitionPenalty, frequencyPenalty, presencePenalty, minP } = req.sampling;
  return { temperature, topK, topP, seed: seed ?? 0, repetitionPenalty, frequencyPenalty, presencePenalty, minP };
}

/** The request fields of the executor beside sampling that the wire request carries: logit bias, minimum, logprobs. */
export function executorControls(req: GenerateRequest): {
  logitBias?: Record<number, number>;
  minNewTokens?: number;
  logprobs?: boolean;
  topLogprobs?: number;
} {
  return {
    ...(req.logitBias ? { logitBias: req.logitBias as unknown as Record<number, number> } : {}),
    ...(req.minTokens ? { minNewTokens: req.minTokens } : {}),
    ...(req.logprobs ? { logprobs: true, topLogprobs: req.topLogprobs ?? 0 } : {}),
  };
}

/** The executor's per-token logprobs on the wire: null where the executor recorded none. */
export function wireLogprobs<T>(logprobs: readonly (T | undefined)[] | undefined): (T | null)[] | undefined {
  return logprobs?.map((e) => e ?? null);
}

/**
 * ExecutorFlags as the executor's open options (modelDir apart). --gpu-memory-fraction becomes a KV byte budget
 * (kvMemoryBytes, with kvBlockCount 0 so the executor sizes its pool from it): `kvBytesForFraction` computes it
 * from the GPU's memory and the weights (@trtd/trtllm's cudaKvBudget; passed in, so this file loads nothing native).
 * --kv-host-cache-gb becomes the host KV tier's byte size (kvHostCacheBytes, GiB of 2^30 bytes).
 */
export function executorOpenOptions(
  f: ExecutorFlags,
  kvBytesForFraction: (fraction: number, deviceId: number) => number,
): Omit<ExecutorFlags, "modelDir" | "gpuMemoryFraction" | "kvHostCacheGb"> & { kvMemoryBytes?: number; kvHostCacheBytes?: number } {
  const { modelDir: _modelDir, gpuMemoryFraction, kvHostCacheGb, ...flags } = f;
  const rest = kvHostCacheGb ? { ...flags, kvHostCacheBytes: gibToBytes(kvHostCacheGb) } : flags;
  if (gpuMemoryFraction === undefined) return rest;
  return { ...rest, kvBlockCount: 0, kvMemoryBytes: kvBytesForFraction(gpuMemoryFraction, f.deviceId ?? 0) };
}
