// Translating between the wire protocol and the executor's request/response shapes (contracts.md, Executor).
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
