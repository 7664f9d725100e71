// Tool calls: the calls a model writes in its output (Llama 3.1 JSON, Hermes/Qwen `<tool_call>` tags) parsed into
// OpenAI `tool_calls`, as vLLM's and SGLang's tool parsers do. The core is pure, like reasoning.ts: text chunks in
// (split anywhere), content text and whole calls out. Streaming and whole responses run the same core, so both give
// the same calls and the same content.

/** `--tool-call-parser`: `auto` detects the format from the chat template; `none` parses no calls. */
export const TOOL_CALL_PARSER_MODES = ["auto", "none", "llama3_json", "hermes"] as const;
export type ToolCallParserMode = (typeof TOOL_CALL_PARSER_MODES)[number];
export type ToolCallFormat = Exclude<ToolCallParserMode, "auto" | "none">;

export const TOOL_CALL_OPEN = "<tool_call>";
export const TOOL_CALL_CLOSE = "</tool_call>";
/** Llama 3.1's marker before a call (a special token; most detokenizers drop it, so a bare `{` starts one too). */
export const PYTHON_TAG = "<|python_tag|>";

/** One call as the model wrote it: the function's name and its arguments as compact JSON text. */
export interface ParsedToolCall {
  name: string;
  arguments: string;
}

/** What one `push` or `finish` adds: content text (may be empty) and the calls completed by it. */
export interface ToolCallPieces {
  content: string;
  calls: ParsedToolCall[];
}

export interface ToolCallParser {
  push(text: string): ToolCallPieces;
  /** The end of the output: releases held text; an unclosed call whose JSON is whole still counts (as vLLM). */
  finish(): ToolCallPieces;
}

const isSpace = (ch: string) => ch === " " || ch === "\n" || ch === "\r" || ch === "\t";

/** Length of the longest proper prefix of `tag` that `s` ends with. */
function partialTagAtEnd(s: string, tag: string): number {
  for (let k = Math.min(tag.length - 1, s.length); k > 0; k--) if (s.endsWith(tag.slice(0, k))) return k;
  return 0;
}

/**
 * A call object as both formats write it: `{"name": "f", "arguments": {...}}` (Hermes) or `{"name": "f",
 * "parameters": {...}}` (Llama 3.1); other keys (Llama's `"type": "function"`) are ignored. Missing arguments are
 * `{}`. Anything else is not a call (undefined) and stays text.
 */
export function toolCallFromJson(text: string): ParsedToolCall | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.name !== "string" || o.name.length === 0) return undefined;
  const args = o.arguments ?? o.parameters ?? {};
  if (typeof args !== "object" || args === null || Array.isArray(args)) return undefined;
  return { name: o.name, arguments: JSON.stringify(args) };
}

/**
 * Hermes/Qwen: each call is `<tool_call>{json}</tool_call>`. Text before the first call is content (the whitespace
 * right before a call dropped); whitespace after a call is dropped; other text after a call is content (as vLLM's
 * streaming parser sends it). A block whose JSON is not a call stays in the content as text, tags included.
 */
function createHermesParser(): ToolCallParser {
  let inCall = false;
  let skipSpace = false;
  let buf = "";

  function drain(final: boolean): ToolCallPieces {
    const out: ToolCallPieces = { content: "", calls: [] };
    for (;;) {
      if (skipSpace) {
        let i = 0;
        while (i < buf.length && isSpace(buf[i])) i++;
        buf = buf.slice(i);
        if (buf === "") return out;
        skipSpace = false;
      }
      if (inCall) {
        const at = buf.indexOf(TOOL_CALL_CLOSE);
        if (at < 0 && !final) return out;
        const body = at < 0 ? buf : buf.slice(0, at);
        const call = toolCallFromJson(body.trim());
        if (call) out.calls.push(call);
        else out.content += TOOL_CALL_OPEN + body + (at < 0 ? "" : TOOL_CALL_CLOSE);
        buf = at < 0 ? "" : buf.slice(at + TOOL_CALL_CLOSE.length);
        inCall = false;
        skipSpace = call !== undefined;
        if (at < 0) return out;
        continue;
      }
      const at = buf.indexOf(TOOL_CALL_OPEN);
      if (at >= 0) {
        out.content += buf.slice(0, at).trimEnd();
        buf = buf.slice(at + TOOL_CALL_OPEN.length);
        inCall = true;
        continue;
      }
      if (final) {
        out.content += buf;
        buf = "";
        return out;
      }
      // Hold a partial `<tool_call>` and the whitespace before it: both vanish if the tag completes.
      let keep = buf.length - partialTagAtEnd(buf, TOOL_CALL_OPEN);
      while (keep > 0 && isSpace(buf[keep - 1])) keep--;
      out.content += buf.slice(0, keep);
      buf = buf.slice(keep);
      return out;
    }
  }
  return { push: (text) => ((buf += text), drain(false)), finish: () => drain(true) };
}

/**
 * The end (exclusive) of the JSON object that starts at `buf[from]` (which must be `{`), or -1 while it is not
 * complete. Strings and escapes are followed, so braces inside strings do not count.
 */
export function objectEnd(buf: string, from: number): number {
  let depth = 0;
  let inString = false;
  for (let i = from; i < buf.length; i++) {
    const ch = buf[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{" || ch === "[") depth++;
    else if (ch === "}" || ch === "]") {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/**
 * Llama 3.1 JSON: an output that starts (after whitespace) with `<|python_tag|>` or `{` is calls, `{json}` objects
 * separated by `;`, as vLLM's llama3_json and SGLang's Llama detectors read it; any other output is content, as it
 * came. Each object is sent once complete. Where the calls stop (an object that is not a call, text that is not
 * `;`), the rest of the output is content, as it came.
 */
function createLlama3JsonParser(): ToolCallParser {
  // start: nothing decided; object: a call object (or the end) comes next; after: `;` (or the end) comes next.
  let state: "start" | "object" | "after" | "content" = "start";
  let sawCall = false;
  let buf = "";

  function drain(final: boolean): ToolCallPieces {
    const out: ToolCallPieces = { content: "", calls: [] };
    for (;;) {
      if (state === "content") {
        out.content += buf;
        buf = "";
        return out;
      }
      let i = 0;
      while (i < buf.length && isSpace(buf[i])) i++;
      if (state === "start") {
        const rest = buf.slice(i);
        if (rest.startsWith(PYTHON_TAG)) {
          buf = rest.slice(PYTHON_TAG.length);
          state = "object";
        } else if (rest.startsWith("{")) state = "object";
        else if (!final && PYTHON_TAG.startsWith(rest)) return out; // "", "<", "<|py"…: not decided yet
        else state = "content";
        continue;
      }
      if (i === buf.length) {
        if (final) buf = ""; // whitespace (or a last `;`) after the calls
        return out;
      }
      if (state === "after") {
        if (buf[i] === ";") {
          buf = buf.slice(i + 1);
          state = "object";
        } else {
          buf = buf.slice(i); // text after the calls: content, the whitespace before it dropped
          state = "content";
        }
        continue;
      }
      // state "object"
      const end = buf[i] === "{" ? objectEnd(buf, i) : -2;
      if (end === -1 && !final) return out;
      const call = end >= 0 ? toolCallFromJson(buf.slice(i, end)) : undefined;
      if (!call) {
        // Not a call (or cut off inside one): the rest is content, as it came (after calls, without the whitespace).
        if (sawCall) buf = buf.slice(i);
        state = "content";
        continue;
      }
      sawCall = true;
      out.calls.push(call);
      buf = buf.slice(end);
      state = "after";
    }
  }
  return { push: (text) => ((buf += text), drain(false)), finish: () => drain(true) };
}

export function createToolCallParser(format: ToolCallFormat): ToolCallParser {
  return format === "hermes" ? createHermesParser() : createLlama3JsonParser();
}

/** Splits a whole output (non-streaming) with the same rules as the streaming parser. */
export function splitToolCalls(text: string, format: ToolCallFormat): ToolCallPieces {
  const p = createToolCallParser(format);
  const a = p.push(text);
  const b = p.finish();
  return { content: a.content + b.content, calls: [...a.calls, ...b.calls] };
}

/**
 * The tool-call format a model gets from its chat template under `mode` (undefined: none). `auto` reads the
 * template's own instructions: `<tool_call>` is Hermes/Qwen; Llama 3.1's `<|python_tag|>` or its "parameters"
 * JSON instruction is llama3_json. A template that renders no tools gets none.
 */
export function toolCallFormatFromTemplate(mode: ToolCallParserMode, template: string | undefined): ToolCallFormat | undefined {
  if (mode === "none") return undefined;
  if (mode !== "auto") return mode;
  const t = template ?? "";
  if (t.includes(TOOL_CALL_OPEN)) return "hermes";
  if (t.includes(PYTHON_TAG) || t.includes('"parameters": dictionary of argument name')) return "llama3_json";
  return undefined;
}
