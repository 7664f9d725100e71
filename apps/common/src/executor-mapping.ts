// Translating between the wire protocol and the executor's request/response shapes (contracts.md, Executor).
import type { ExecutorFlags } from "./cli.js";
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

/** Executor sampling from wire sampling. */
export function executorSampling(req: GenerateRequest): { temperature: number; topK: number; topP: number; seed: number } {
  return { temperature: req.sampling.temperature, topK: req.sampling.topK, topP: req.sampling.topP, seed: req.sampling.seed ?? 0 };
}

/**
 * ExecutorFlags as the executor's open options (modelDir apart). --gpu-memory-fraction becomes a KV byte budget
 * (kvMemoryBytes, with kvBlockCount 0 so the executor sizes its pool from it): `kvBytesForFraction` computes it
 * from the GPU's memory and the weights (@trtd/trtllm's cudaKvBudget; passed in, so this file loads nothing native).
 */
export function executorOpenOptions(
  f: ExecutorFlags,
  kvBytesForFraction: (fraction: number, deviceId: number) => number,
): Omit<ExecutorFlags, "modelDir" | "gpuMemoryFraction"> & { kvMemoryBytes?: number } {
  const { modelDir: _modelDir, gpuMemoryFraction, ...rest } = f;
  if (gpuMemoryFraction === undefined) return rest;
  return { ...rest, kvBlockCount: 0, kvMemoryBytes: kvBytesForFraction(gpuMemoryFraction, f.deviceId ?? 0) };
}
