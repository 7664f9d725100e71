// POST /v1/chat/completions: the request type, its validation, and its response objects.
import { ApiErrorCodes, InvalidRequestError } from "../errors.js";
import type { ChatMessage } from "../text-codec.js";
import * as L from "./limits.js";
import * as V from "./validate.js";

export interface ChatCompletionParams {
  model: string;
  messages: ChatMessage[];
  /** Undefined: the rest of the context, capped by CHAT_DEFAULT_MAX_TOKENS. */
  maxTokens?: number;
  /** The field the client gave the limit in (`max_completion_tokens` or `max_tokens`), for error messages. */
  maxTokensParam: "max_completion_tokens" | "max_tokens";
  sampling: V.SamplingFields;
  controls: V.ControlFields;
  logprobs: V.LogprobsFields;
  stop: string[];
  stream: V.StreamFlags;
  user?: string;
}

const KNOWN = new Set([
  "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n",
  "logprobs", "top_logprobs", "user", "stream", "stream_options", ...V.CONTROL_FIELDS,
]);
const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);
/**
 * Fields of a message. `tool_call_id` (of a "tool" message) is accepted and not used; so is `reasoning_content`
 * (of an assistant message this server returned, sent back as it came: chat templates drop past reasoning).
 */
const MESSAGE_KNOWN = new Set(["role", "content", "name", "tool_call_id", "reasoning_content"]);
/**
 * Message fields of OpenAI's API this server does not implement: accepted only empty or null. Tools are not
 * supported, so an assistant message that carries `tool_calls` is refused (naming `messages[i].tool_calls`) rather
 * than rendered without them.
 */
const MESSAGE_NEUTRAL: Readonly<Record<string, (v: unknown) => boolean>> = {
  tool_calls: (v) => Array.isArray(v) && v.length === 0,
  function_call: () => false,
  refusal: () => false,
  audio: () => false,
};

/**
 * `content` is required: a string or a list of text parts. OpenAI allows null content only on an assistant
 * message with `tool_calls`, which this server refuses (tools are unsupported), so null is refused here too.
 */
function messageContent(v: unknown, i: number): string {
  if (v === undefined || v === null) {
    throw new InvalidRequestError(`messages[${i}].content is required (a string or a list of text parts)`, `messages[${i}].content`, ApiErrorCodes.invalidRequest);
  }
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    // Content parts: only text parts are understood.
    return v
      .map((part, j) => {
        const p = part as V.Body;
        if (typeof p !== "object" || p === null || p.type !== "text" || typeof p.text !== "string") {
          throw new InvalidRequestError("only text content parts are supported", `messages[${i}].content[${j}]`, ApiErrorCodes.unsupported);
        }
        return p.text;
      })
      .join("");
  }
  throw new InvalidRequestError("message content must be a string or a list of text parts", `messages[${i}].content`);
}

function parseMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) throw new InvalidRequestError("'messages' must be a non-empty list", "messages");
  if (v.length > L.MAX_MESSAGES) throw new InvalidRequestError(`'messages' takes at most ${L.MAX_MESSAGES} entries`, "messages");
  return v.map((m, i) => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw new InvalidRequestError("each message must be an object", `messages[${i}]`);
    const msg = m as V.Body;
    if (typeof msg.role !== "string" || !ROLES.has(msg.role)) {
      throw new InvalidRequestError(`messages[${i}].role must be one of ${[...ROLES].join(", ")}`, `messages[${i}].role`);
    }
    V.checkFields(msg, MESSAGE_KNOWN, MESSAGE_NEUTRAL, `messages[${i}].`);
    // An answer that was all reasoning (cut off inside the block) has null content; sent back, it is empty.
    const allReasoning = msg.role === "assistant" && msg.content === null && typeof msg.reasoning_content === "string";
    const out: ChatMessage = { role: msg.role, content: allReasoning ? "" : messageContent(msg.content, i) };
    for (const k of ["name", "tool_call_id", "reasoning_content"] as const) {
      if (msg[k] !== undefined && msg[k] !== null && typeof msg[k] !== "string") {
        throw new InvalidRequestError(`messages[${i}].${k} must be a string`, `messages[${i}].${k}`);
      }
    }
    if (typeof msg.name === "string") out.name = msg.name;
    return out;
  });
}

export function parseChatCompletion(raw: unknown, servedModel: string): ChatCompletionParams {
  const body = V.asBody(raw);
  V.checkFields(body, KNOWN, V.NEUTRAL_FIELDS);
  const model = V.requireModel(body, servedModel);
  V.parseN(body);
  const logprobs = V.optBool(body, "logprobs", false);
  const topLogprobs = V.optInt(body, "top_logprobs", 0, L.MAX_TOP_LOGPROBS);
  // As OpenAI: top_logprobs needs logprobs: true.
  if (topLogprobs !== undefined && topLogprobs > 0 && !logprobs) {
    throw new InvalidRequestError("'top_logprobs' requires 'logprobs' to be true", "top_logprobs");
  }
  const maxA = V.optInt(body, "max_completion_tokens", 1, Number.MAX_SAFE_INTEGER);
  const maxB = V.optInt(body, "max_tokens", 1, Number.MAX_SAFE_INTEGER);
  if (maxA !== undefined && maxB !== undefined && maxA !== maxB) {
    throw new InvalidRequestError("'max_tokens' and 'max_completion_tokens' disagree; send one", "max_completion_tokens");
  }
  return {
    model,
    messages: parseMessages(body.messages),
    maxTokens: maxA ?? maxB,
    // Errors about the limit name the field the client sent (max_tokens is the older name of the same limit).
    maxTokensParam: maxA === undefined && maxB !== undefined ? "max_tokens" : "max_completion_tokens",
    sampling: V.parseSampling(body),
    controls: V.parseControls(body),
    logprobs: { logprobs, topLogprobs: topLogprobs ?? 0 },
    stop: V.parseStop(body),
    stream: V.parseStream(body),
    user: V.parseUser(body),
  };
}
