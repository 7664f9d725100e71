// Response objects of both endpoints (whole responses and stream chunks), in OpenAI's shapes.
import type { GenerationResult, OpenAIFinishReason } from "../generation.js";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usageOf(r: GenerationResult): Usage {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens };
}

export const SYSTEM_FINGERPRINT = "trtd";

interface Common {
  id: string;
  created: number;
  model: string;
}

export function chatCompletion(c: Common, content: string, r: GenerationResult) {
  return {
    id: c.id,
    object: "chat.completion" as const,
    created: c.created,
    model: c.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices: [{ index: 0, message: { role: "assistant" as const, content, refusal: null }, logprobs: null, finish_reason: r.finishReason }],
    usage: usageOf(r),
  };
}

export function chatChunk(c: Common, delta: { role?: "assistant"; content?: string }, finishReason: OpenAIFinishReason | null, includeUsage: boolean) {
  return {
    id: c.id,
    object: "chat.completion.chunk" as const,
    created: c.created,
    model: c.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(includeUsage ? { usage: null } : {}),
  };
}

export function chatUsageChunk(c: Common, r: GenerationResult) {
  return { id: c.id, object: "chat.completion.chunk" as const, created: c.created, model: c.model, system_fingerprint: SYSTEM_FINGERPRINT, choices: [], usage: usageOf(r) };
}

export function completion(c: Common, text: string, r: GenerationResult) {
  return {
    id: c.id,
    object: "text_completion" as const,
    created: c.created,
    model: c.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices: [{ index: 0, text, logprobs: null, finish_reason: r.finishReason }],
    usage: usageOf(r),
  };
}

export function completionChunk(c: Common, text: string, finishReason: OpenAIFinishReason | null, includeUsage: boolean) {
  return {
    id: c.id,
    object: "text_completion" as const,
    created: c.created,
    model: c.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
    ...(includeUsage ? { usage: null } : {}),
  };
}

export function completionUsageChunk(c: Common, r: GenerationResult) {
  return { id: c.id, object: "text_completion" as const, created: c.created, model: c.model, system_fingerprint: SYSTEM_FINGERPRINT, choices: [], usage: usageOf(r) };
}
