// `tool_choice: "required"` and a named function: decoding is constrained to a JSON schema, so the output is plain
// JSON in one shape whatever the model's own tool-call format (as vLLM does for these choices):
// - a named function: the output is that function's arguments object;
// - required: the output is a list of calls, `[{"name": ..., "parameters": {...}}, ...]`, at least one.
// This file makes the schema and reads such output into calls; the constraint itself is the grammar mechanism's.
import { checkGrammarSpec, InvalidGrammarError, type GrammarSpec } from "@trtd/grammar";
import { ApiErrorCodes, InvalidRequestError } from "../errors.js";
import type { ChatTool } from "../text-codec.js";
import { objectEnd, toolCallFromJson, type ParsedToolCall, type ToolCallParser, type ToolCallPieces } from "./tool-calls.js";

/** A forced choice: `required`, or the name of the one function to call. */
export type ForcedToolChoice = "required" | { name: string };

/** A function without `parameters` takes an object (OpenAI's reading of an absent schema). */
const ANY_OBJECT = { type: "object" };

function parametersOf(tools: readonly ChatTool[], name: string): Record<string, unknown> {
  const tool = tools.find((t) => t.function.name === name);
  if (!tool) throw new Error(`no tool is named '${name}'`); // validation refuses this before
  return tool.function.parameters ?? ANY_OBJECT;
}

/**
 * The JSON schema decoding is constrained to. `parallel` false allows one call only (`maxItems: 1`). The caller
 * validated the names against `tools`.
 */
export function forcedToolSchema(choice: ForcedToolChoice, tools: readonly ChatTool[], parallel: boolean): Record<string, unknown> {
  if (choice !== "required") return parametersOf(tools, choice.name);
  const call = (t: ChatTool) => ({
    type: "object",
    properties: { name: { type: "string", enum: [t.function.name] }, parameters: t.function.parameters ?? ANY_OBJECT },
    required: ["name", "parameters"],
    additionalProperties: false,
  });
  return { type: "array", minItems: 1, ...(parallel ? {} : { maxItems: 1 }), items: { anyOf: tools.map(call) } };
}

/**
 * The grammar spec of a forced choice, in @trtd/grammar's `GrammarSpec` shape (plain JSON, carried to the workers):
 * a JSON schema, with `strict: true` when the function (for `required`: every function) is marked `strict`.
 */
export function forcedToolGrammar(choice: ForcedToolChoice, tools: readonly ChatTool[], parallel: boolean): GrammarSpec {
  const chosen = choice === "required" ? tools : tools.filter((t) => t.function.name === choice.name);
  const strict = chosen.every((t) => t.function.strict === true);
  return { type: "json_schema", schema: forcedToolSchema(choice, tools, parallel), ...(strict ? { strict: true } : {}) };
}

/**
 * The grammar of a forced choice, checked as response_format's is (a valid JSON Schema that xgrammar can build)
 * before the request goes to a worker. A bad schema is a 400 naming the tool's `parameters` (for `required`,
 * `tools`), with the grammar engine's reason.
 */
export async function checkToolGrammar(choice: ForcedToolChoice, tools: readonly ChatTool[], parallel: boolean): Promise<GrammarSpec> {
  const at = choice === "required" ? -1 : tools.findIndex((t) => t.function.name === choice.name);
  const param = at < 0 ? "tools" : `tools[${at}].function.parameters`;
  try {
    return await checkGrammarSpec(forcedToolGrammar(choice, tools, parallel), param);
  } catch (err) {
    if (!(err instanceof InvalidGrammarError)) throw err;
    throw new InvalidRequestError(err.message, param, ApiErrorCodes.invalidValue, { cause: err });
  }
}

/**
 * Reads `required`'s output, a JSON list of calls: each element is released once complete. Text that does not
 * fit (possible only if the constraint was not applied, or the output was cut off) ends the calls and is content.
 */
export function createCallListParser(): ToolCallParser {
  // open: `[` comes next; element: a call (or `]`) comes next; after: `,` or `]` comes next; done: after `]`.
  let state: "open" | "element" | "after" | "done" | "content" = "open";
  let buf = "";

  function drain(final: boolean): ToolCallPieces {
    const out: ToolCallPieces = { content: "", calls: [] };
    for (;;) {
      if (state === "content" || state === "done") {
        if (state === "content") out.content += buf;
        buf = "";
        return out;
      }
      let i = 0;
      while (i < buf.length && (buf[i] === " " || buf[i] === "\n" || buf[i] === "\r" || buf[i] === "\t")) i++;
      if (i === buf.length) {
        if (final) buf = "";
        return out;
      }
      const ch = buf[i];
      if (state === "open" || state === "after") {
        const ok = state === "open" ? ch === "[" : ch === "," || ch === "]";
        if (!ok) {
          if (state === "after") buf = buf.slice(i); // text after the calls: content, the whitespace before it dropped
          state = "content";
          continue;
        }
        buf = buf.slice(i + 1);
        state = ch === "]" ? "done" : "element";
        continue;
      }
      if (ch === "]") {
        buf = buf.slice(i + 1);
        state = "done";
        continue;
      }
      const end = ch === "{" ? objectEnd(buf, i) : -2;
      if (end === -1 && !final) return out;
      const call: ParsedToolCall | undefined = end >= 0 ? toolCallFromJson(buf.slice(i, end)) : undefined;
      if (!call) {
        buf = buf.slice(i);
        state = "content";
        continue;
      }
      out.calls.push(call);
      buf = buf.slice(end);
      state = "after";
    }
  }
  return { push: (text) => ((buf += text), drain(false)), finish: () => drain(true) };
}
