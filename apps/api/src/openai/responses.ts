// Response objects of both endpoints (whole responses and stream chunks), in OpenAI's shapes.
import type { GenerationResult, OpenAIFinishReason } from "../generation.js";
import type { ChatMessageParts, pieceDelta } from "./chat-output.js";

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

type ObjectType = "chat.completion" | "chat.completion.chunk" | "text_completion";

/** The fields every response and chunk starts with, in OpenAI's order. */
function header<O extends ObjectType>(c: Common, object: O) {
  return { id: c.id, object, created: c.created, model: c.model, system_fingerprint: SYSTEM_FINGERPRINT };
}

/** A choice's `logprobs` (openai/logprobs.ts builds them), or null when the request asked for none. */
type Logprobs = object | null;

export function chatCompletion(c: Common, content: string, r: GenerationResult, logprobs: Logprobs = null) {
  return {
    ...header(c, "chat.completion"),
    choices: [{ index: 0, message: { role: "assistant" as const, content, refusal: null }, logprobs, finish_reason: r.finishReason }],
    usage: usageOf(r),
  };
}

/**
 * A message split by the chat parsers (chat-output.ts): `reasoning_content` only with a reasoning parser,
 * `tool_calls` only when calls were made; the finish reason is the parts' (`tool_calls` after a call).
 */
export function chatCompletionFromParts(c: Common, parts: ChatMessageParts, logprobs: Logprobs = null) {
  const { result, ...fields } = parts;
  return {
    ...header(c, "chat.completion"),
    choices: [{ index: 0, message: { role: "assistant" as const, ...fields, refusal: null }, logprobs, finish_reason: result.finishReason }],
    usage: usageOf(result),
  };
}

export function chatChunk(
  c: Common,
  delta: { role?: "assistant"; content?: string } | ReturnType<typeof pieceDelta>,
  finishReason: OpenAIFinishReason | null,
  includeUsage: boolean,
  logprobs: Logprobs = null,
) {
  return {
    ...header(c, "chat.completion.chunk"),
    choices: [{ index: 0, delta, logprobs, finish_reason: finishReason }],
    ...(includeUsage ? { usage: null } : {}),
  };
}

export function chatUsageChunk(c: Common, r: GenerationResult) {
  return { ...header(c, "chat.completion.chunk"), choices: [], usage: usageOf(r) };
}

export function completion(c: Common, text: string, r: GenerationResult, logprobs: Logprobs = null) {
  return {
    ...header(c, "text_completion"),
    choices: [{ index: 0, text, logprobs, finish_reason: r.finishReason }],
    usage: usageOf(r),
  };
}

export function completionChunk(c: Common, text: string, finishReason: OpenAIFinishReason | null, includeUsage: boolean, logprobs: Logprobs = null) {
  return {
    ...header(c, "text_completion"),
    choices: [{ index: 0, text, logprobs, finish_reason: finishReason }],
    ...(includeUsage ? { usage: null } : {}),
  };
}

export function completionUsageChunk(c: Common, r: GenerationResult) {
  return { ...header(c, "text_completion"), choices: [], usage: usageOf(r) };
}
