// POST /v1/chat/completions: the request type, its validation, and its response objects.
import { ApiErrorCodes, InvalidRequestError } from "../errors.js";
import type { ChatMessage, ChatTool, ChatToolCall } from "../text-codec.js";
import type { GrammarSpec } from "@trtd/grammar";
import * as L from "./limits.js";
import { parseResponseFormat } from "./response-format.js";
import * as V from "./validate.js";

export interface ChatCompletionParams {
  model: string;
  messages: ChatMessage[];
  /** Undefined: the rest of the context, capped by CHAT_DEFAULT_MAX_TOKENS. */
  maxTokens?: number;
  /** The field the client gave the limit in (`max_completion_tokens` or `max_tokens`), for error messages. */
  maxTokensParam: "max_completion_tokens" | "max_tokens";
  sampling: V.SamplingFields;
  /** Choices to generate (`n`, 1 to MAX_N); choice i samples with seed + i (choices.ts). */
  n: number;
  controls: V.ControlFields;
  logprobs: V.LogprobsFields;
  stop: string[];
  stream: V.StreamFlags;
  user?: string;
  /** The tools the model is told about (undefined: none, or `tool_choice: "none"`, which hides them). */
  tools?: ChatTool[];
  toolChoice: ToolChoice;
  /** false: at most one call per answer (later ones are dropped). */
  parallelToolCalls: boolean;
  /** response_format as a grammar (shape-checked; checkResponseFormat does the rest); undefined for text. */
  responseFormat?: GrammarSpec;
}

/** `tool_choice`: `{ name }` is a named function the model must call. */
export type ToolChoice = "none" | "auto" | "required" | { name: string };

const KNOWN = new Set([
  "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n",
  "logprobs", "top_logprobs", "user", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls",
  "response_format", ...V.CONTROL_FIELDS,
]);
const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);
/**
 * Fields of a message. `tool_calls` (of an assistant message) and `tool_call_id` (of a "tool" message) go to the
 * chat template; `reasoning_content` (of an assistant message this server returned, sent back as it came) is
 * accepted and not rendered: chat templates drop past reasoning.
 */
const MESSAGE_KNOWN = new Set(["role", "content", "name", "tool_call_id", "tool_calls", "reasoning_content"]);
/** Message fields of OpenAI's API this server does not implement: accepted only empty or null. */
const MESSAGE_NEUTRAL: Readonly<Record<string, (v: unknown) => boolean>> = {
  function_call: () => false,
  refusal: () => false,
  audio: () => false,
};

/**
 * `content` is required: a string or a list of text parts. OpenAI allows null content only on an assistant
 * message with `tool_calls` (and this server on one that carries `reasoning_content`); parseMessages lets those by.
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
    const toolCalls = msg.role === "assistant" ? parseMessageToolCalls(msg.tool_calls, i) : undefined;
    if (msg.role !== "assistant" && msg.tool_calls !== undefined && msg.tool_calls !== null) {
      throw new InvalidRequestError(`messages[${i}].tool_calls is only allowed on an assistant message`, `messages[${i}].tool_calls`);
    }
    // An answer that was all reasoning (cut off inside the block), or only tool calls, has null content; sent back,
    // it is empty.
    const noContent = msg.role === "assistant" && msg.content === null && (typeof msg.reasoning_content === "string" || toolCalls !== undefined);
    const out: ChatMessage = { role: msg.role, content: noContent ? "" : messageContent(msg.content, i) };
    if (toolCalls) out.tool_calls = toolCalls;
    if (msg.role === "tool" && typeof msg.tool_call_id === "string") out.tool_call_id = msg.tool_call_id;
    for (const k of ["name", "tool_call_id", "reasoning_content"] as const) {
      if (msg[k] !== undefined && msg[k] !== null && typeof msg[k] !== "string") {
        throw new InvalidRequestError(`messages[${i}].${k} must be a string`, `messages[${i}].${k}`);
      }
    }
    if (typeof msg.name === "string") out.name = msg.name;
    return out;
  });
}

const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const TOOL_KNOWN = new Set(["type", "function"]);
const FUNCTION_KNOWN = new Set(["name", "description", "parameters", "strict"]);
const CALL_KNOWN = new Set(["id", "type", "function"]);
const CALL_FUNCTION_KNOWN = new Set(["name", "arguments"]);

function isObject(v: unknown): v is V.Body {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function functionName(v: unknown, param: string): string {
  if (typeof v !== "string" || !FUNCTION_NAME.test(v)) {
    throw new InvalidRequestError(`'${param}' must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -`, param);
  }
  return v;
}

/**
 * An assistant message's `tool_calls`, for the chat template. `arguments` (a JSON string on the wire) is given to
 * the template as an object, as vLLM and transformers' examples do: templates write it with `tojson`.
 */
function parseMessageToolCalls(v: unknown, i: number): ChatToolCall[] | undefined {
  if (v === undefined || v === null || (Array.isArray(v) && v.length === 0)) return undefined;
  const at = `messages[${i}].tool_calls`;
  if (!Array.isArray(v)) throw new InvalidRequestError(`'${at}' must be a list`, at);
  if (v.length > L.MAX_TOOL_CALLS) throw new InvalidRequestError(`'${at}' takes at most ${L.MAX_TOOL_CALLS} calls`, at);
  return v.map((c, j) => {
    const p = `${at}[${j}]`;
    if (!isObject(c)) throw new InvalidRequestError(`'${p}' must be an object`, p);
    V.checkFields(c, CALL_KNOWN, {}, `${p}.`);
    if (typeof c.id !== "string" || c.id.length === 0) throw new InvalidRequestError(`'${p}.id' must be a non-empty string`, `${p}.id`);
    if (c.type !== "function") throw new InvalidRequestError(`'${p}.type' must be "function"`, `${p}.type`);
    if (!isObject(c.function)) throw new InvalidRequestError(`'${p}.function' must be an object`, `${p}.function`);
    V.checkFields(c.function, CALL_FUNCTION_KNOWN, {}, `${p}.function.`);
    const name = functionName(c.function.name, `${p}.function.name`);
    let args: unknown;
    try {
      args = typeof c.function.arguments === "string" ? JSON.parse(c.function.arguments) : undefined;
    } catch {
      args = undefined;
    }
    if (!isObject(args)) {
      throw new InvalidRequestError(`'${p}.function.arguments' must be a JSON object, as a string`, `${p}.function.arguments`);
    }
    return { id: c.id, type: "function", function: { name, arguments: args } };
  });
}

/** `tools`: function tools only, unique names; passed to the chat template as sent (OpenAI's shape). */
function parseTools(v: unknown): ChatTool[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw new InvalidRequestError("'tools' must be a list", "tools");
  if (v.length === 0) return undefined;
  if (v.length > L.MAX_TOOLS) throw new InvalidRequestError(`'tools' takes at most ${L.MAX_TOOLS} tools`, "tools");
  const names = new Set<string>();
  return v.map((t, i) => {
    const p = `tools[${i}]`;
    if (!isObject(t)) throw new InvalidRequestError(`'${p}' must be an object`, p);
    V.checkFields(t, TOOL_KNOWN, {}, `${p}.`);
    if (t.type !== "function") throw new InvalidRequestError(`'${p}.type' must be "function"`, `${p}.type`);
    const f = t.function;
    if (!isObject(f)) throw new InvalidRequestError(`'${p}.function' must be an object`, `${p}.function`);
    V.checkFields(f, FUNCTION_KNOWN, {}, `${p}.function.`);
    const name = functionName(f.name, `${p}.function.name`);
    if (names.has(name)) throw new InvalidRequestError(`'${p}.function.name': '${name}' is given twice`, `${p}.function.name`);
    names.add(name);
    const out: ChatTool = { type: "function", function: { name } };
    if (f.description !== undefined && f.description !== null) {
      if (typeof f.description !== "string") throw new InvalidRequestError(`'${p}.function.description' must be a string`, `${p}.function.description`);
      out.function.description = f.description;
    }
    if (f.parameters !== undefined && f.parameters !== null) {
      if (!isObject(f.parameters)) throw new InvalidRequestError(`'${p}.function.parameters' must be a JSON schema object`, `${p}.function.parameters`);
      out.function.parameters = f.parameters;
    }
    if (f.strict !== undefined && f.strict !== null) {
      if (typeof f.strict !== "boolean") throw new InvalidRequestError(`'${p}.function.strict' must be a boolean`, `${p}.function.strict`);
      out.function.strict = f.strict;
    }
    return out;
  });
}

/** `tool_choice`: default `auto` with tools, `none` without; a named function must be one of `tools`. */
function parseToolChoice(v: unknown, tools: ChatTool[] | undefined): ToolChoice {
  if (v === undefined || v === null) return tools ? "auto" : "none";
  let choice: ToolChoice;
  if (v === "none" || v === "auto" || v === "required") choice = v;
  else if (isObject(v) && v.type === "function" && isObject(v.function) && typeof v.function.name === "string") {
    V.checkFields(v, TOOL_KNOWN, {}, "tool_choice.");
    V.checkFields(v.function, new Set(["name"]), {}, "tool_choice.function.");
    choice = { name: v.function.name };
  } else {
    throw new InvalidRequestError(`'tool_choice' must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`, "tool_choice");
  }
  if (choice === "none") return choice;
  if (!tools) throw new InvalidRequestError("'tool_choice' needs 'tools'", "tool_choice");
  if (typeof choice === "object" && !tools.some((t) => t.function.name === choice.name)) {
    throw new InvalidRequestError(`'tool_choice.function.name': no tool is named '${choice.name}'`, "tool_choice.function.name");
  }
  return choice;
}

export function parseChatCompletion(raw: unknown, servedModel: string): ChatCompletionParams {
  const body = V.asBody(raw);
  V.checkFields(body, KNOWN, V.NEUTRAL_FIELDS);
  const model = V.requireModel(body, servedModel);
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
  const sampling = V.parseSampling(body);
  const tools = parseTools(body.tools);
  const toolChoice = parseToolChoice(body.tool_choice, tools);
  return {
    model,
    messages: parseMessages(body.messages),
    tools: toolChoice === "none" ? undefined : tools,
    toolChoice,
    parallelToolCalls: V.optBool(body, "parallel_tool_calls", true),
    maxTokens: maxA ?? maxB,
    // Errors about the limit name the field the client sent (max_tokens is the older name of the same limit).
    maxTokensParam: maxA === undefined && maxB !== undefined ? "max_tokens" : "max_completion_tokens",
    sampling,
    n: V.parseN(body, sampling),
    controls: V.parseControls(body),
    logprobs: { logprobs, topLogprobs: topLogprobs ?? 0 },
    stop: V.parseStop(body),
    stream: V.parseStream(body),
    user: V.parseUser(body),
    responseFormat: parseResponseFormat(body),
  };
}
