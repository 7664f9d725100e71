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
  sampling: V.SamplingFields;
  stop: string[];
  stream: V.StreamFlags;
  user?: string;
}

const KNOWN = new Set([
  "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n",
  "logprobs", "user", "stream", "stream_options",
]);
const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

function messageContent(v: unknown, i: number): string {
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
  if (v === null || v === undefined) return "";
  throw new InvalidRequestError("message content must be a string or a list of text parts", `messages[${i}].content`);
}

function parseMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) throw new InvalidRequestError("'messages' must be a non-empty list", "messages");
  if (v.length > L.MAX_MESSAGES) throw new InvalidRequestError(`'messages' takes at most ${L.MAX_MESSAGES} entries`, "messages");
  return v.map((m, i) => {
    if (typeof m !== "object" || m === null) throw new InvalidRequestError("each message must be an object", `messages[${i}]`);
    const msg = m as V.Body;
    if (typeof msg.role !== "string" || !ROLES.has(msg.role)) {
      throw new InvalidRequestError(`messages[${i}].role must be one of ${[...ROLES].join(", ")}`, `messages[${i}].role`);
    }
    const out: ChatMessage = { role: msg.role, content: messageContent(msg.content, i) };
    if (typeof msg.name === "string") out.name = msg.name;
    return out;
  });
}

export function parseChatCompletion(raw: unknown, servedModel: string): ChatCompletionParams {
  const body = V.asBody(raw);
  V.checkFields(body, KNOWN, V.NEUTRAL_FIELDS);
  const model = V.requireModel(body, servedModel);
  V.parseN(body);
  if (body.logprobs !== undefined && body.logprobs !== null && body.logprobs !== false) {
    throw new InvalidRequestError("logprobs are not supported by this server", "logprobs", ApiErrorCodes.unsupported);
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
    sampling: V.parseSampling(body),
    stop: V.parseStop(body),
    stream: V.parseStream(body),
    user: V.parseUser(body),
  };
}
