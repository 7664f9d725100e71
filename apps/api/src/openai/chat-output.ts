// A chat completion's text turned into what the client gets: reasoning (reasoning.ts) split off first, then tool
// calls (tool-calls.ts) parsed out of the rest. The stream and the whole response run the same parsers in the same
// order, so both give the same reasoning, content and calls.
import { randomBytes } from "node:crypto";
import type { GenerationResult } from "../generation.js";
import { createReasoningParser, type ReasoningOptions } from "./reasoning.js";
import { createToolCallParser, type ParsedToolCall, type ToolCallFormat } from "./tool-calls.js";
import { createCallListParser } from "./tool-choice.js";

/**
 * How this request's tool calls are read: the model's format (`tool_choice: "auto"`), or `call_list`, the JSON
 * list `tool_choice: "required"` constrains the output to (tool-choice.ts); and whether more than one call is kept.
 */
export interface ToolCallOptions {
  format: ToolCallFormat | "call_list";
  /** false (`parallel_tool_calls: false`): the first call is kept, later ones are dropped. */
  parallel: boolean;
}

export interface ChatOutputOptions {
  reasoning?: ReasoningOptions;
  tools?: ToolCallOptions;
  /**
   * A named `tool_choice`: the whole output is that function's arguments (constrained to its schema), sent as
   * one call whose arguments stream as they are generated. Reasoning and `tools` are not read then.
   */
  namedCall?: string;
}

/** A piece of a chat stream; each is one SSE event. A call is two: its header, then its arguments. */
export type ChatPiece =
  | { kind: "reasoning"; text: string }
  | { kind: "content"; text: string }
  | { kind: "call"; index: number; id: string; name: string }
  | { kind: "arguments"; index: number; arguments: string };

/** OpenAI's shape of a call in a whole response. */
export interface ToolCallOut {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** An id in OpenAI's style (`call_` and 24 characters). */
export function toolCallId(): string {
  return `call_${randomBytes(12).toString("hex")}`;
}

/** The parsers of one response; `step` takes text (or the end) and returns what it completes, in order. */
function chatParsers(o: ChatOutputOptions) {
  const reasoning = o.reasoning ? createReasoningParser(o.reasoning) : undefined;
  const format = o.tools?.format;
  const tools = format === undefined ? undefined : format === "call_list" ? createCallListParser() : createToolCallParser(format);
  let calls = 0;
  return {
    step(text: string | undefined): { reasoning: string; content: string; calls: ParsedToolCall[] } {
      const done = text === undefined;
      const r = reasoning ? (done ? reasoning.finish() : reasoning.push(text)) : { reasoning: "", content: text ?? "" };
      if (!tools) return { reasoning: r.reasoning, content: r.content, calls: [] };
      const t = tools.push(r.content);
      const end = done ? tools.finish() : { content: "", calls: [] };
      let found = [...t.calls, ...end.calls];
      if (!o.tools!.parallel) found = found.slice(0, Math.max(0, 1 - calls));
      calls += found.length;
      return { reasoning: r.reasoning, content: t.content + end.content, calls: found };
    },
    get sawReasoning() {
      return reasoning?.sawReasoning ?? false;
    },
    get calls() {
      return calls;
    },
  };
}

/**
 * With a call made, the finish reason is `tool_calls` (as vLLM and OpenAI answer), except for a named
 * `tool_choice`, where OpenAI answers `stop`: its finish reason stays the generation's.
 */
function finished(r: GenerationResult, calls: number): GenerationResult {
  return calls > 0 ? { ...r, finishReason: "tool_calls" } : r;
}

/** A named choice's stream: the call's header first, then the text as it comes, as argument fragments. */
async function* namedCallPieces(gen: AsyncGenerator<string, GenerationResult>, name: string): AsyncGenerator<ChatPiece, GenerationResult> {
  try {
    yield { kind: "call", index: 0, id: toolCallId(), name };
    for (;;) {
      const step = await gen.next();
      if (step.done) return step.value;
      if (step.value) yield { kind: "arguments", index: 0, arguments: step.value };
    }
  } finally {
    await gen.return(undefined as never);
  }
}

/** Streams `gen`'s text as chat pieces; ending this ends `gen` too (cancels in the workers). */
export async function* chatPieces(gen: AsyncGenerator<string, GenerationResult>, o: ChatOutputOptions): AsyncGenerator<ChatPiece, GenerationResult> {
  if (o.namedCall !== undefined) return yield* namedCallPieces(gen, o.namedCall);
  const parsers = chatParsers(o);
  let index = 0;
  try {
    for (;;) {
      const step = await gen.next();
      const p = parsers.step(step.done ? undefined : step.value);
      if (p.reasoning) yield { kind: "reasoning", text: p.reasoning };
      if (p.content) yield { kind: "content", text: p.content };
      for (const call of p.calls) {
        yield { kind: "call", index, id: toolCallId(), name: call.name };
        yield { kind: "arguments", index, arguments: call.arguments };
        index++;
      }
      if (step.done) return finished(step.value, parsers.calls);
    }
  } finally {
    await gen.return(undefined as never);
  }
}

/** The stream delta of one piece, in OpenAI's shape. */
export function pieceDelta(x: ChatPiece) {
  switch (x.kind) {
    case "reasoning":
      return { reasoning_content: x.text };
    case "content":
      return { content: x.text };
    case "call":
      return { tool_calls: [{ index: x.index, id: x.id, type: "function" as const, function: { name: x.name, arguments: "" } }] };
    case "arguments":
      return { tool_calls: [{ index: x.index, function: { arguments: x.arguments } }] };
  }
}

/** A whole chat message's parts, with the finish reason the calls imply. */
export interface ChatMessageParts {
  content: string | null;
  /** Present only with a reasoning parser: null when the output opened no block. */
  reasoning_content?: string | null;
  /** Present only when calls were made. */
  tool_calls?: ToolCallOut[];
  result: GenerationResult;
}

/**
 * Splits a whole output. `content` is null when the output was all reasoning (an unclosed block) or only calls,
 * as vLLM answers.
 */
export function chatMessageParts(text: string, r: GenerationResult, o: ChatOutputOptions): ChatMessageParts {
  if (o.namedCall !== undefined) {
    return { content: null, tool_calls: [{ id: toolCallId(), type: "function", function: { name: o.namedCall, arguments: text } }], result: r };
  }
  const parsers = chatParsers(o);
  const a = parsers.step(text);
  const b = parsers.step(undefined);
  const content = a.content + b.content;
  const calls = [...a.calls, ...b.calls];
  const out: ChatMessageParts = { content: content === "" && (parsers.sawReasoning || calls.length > 0) ? null : content, result: finished(r, calls.length) };
  if (o.reasoning) out.reasoning_content = parsers.sawReasoning ? a.reasoning + b.reasoning : null;
  if (calls.length > 0) out.tool_calls = calls.map((c) => ({ id: toolCallId(), type: "function", function: { name: c.name, arguments: c.arguments } }));
  return out;
}
