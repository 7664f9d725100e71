// Reasoning content: the `<think>…</think>` block of reasoning models (Qwen3, DeepSeek-R1) split out of a chat
// completion's text into `reasoning_content`, as vLLM's and SGLang's reasoning parsers do. The core is pure: text
// chunks in (as the detokenizer emits them, tags split anywhere), reasoning and content pieces out. Streaming and
// whole responses run the same core, so both give the same split.

export const THINK_OPEN = "<think>";
export const THINK_CLOSE = "</think>";

/** `--reasoning-parser`: `auto` detects from the chat template, `none` never splits, `think` always does. */
export const REASONING_PARSER_MODES = ["auto", "none", "think"] as const;
export type ReasoningParserMode = (typeof REASONING_PARSER_MODES)[number];

export interface ReasoningOptions {
  /**
   * The prompt already opens the block (the template ends its generation prompt with `<think>`, as DeepSeek-R1's
   * does): the output starts inside the reasoning and only `</think>` is expected. Default false.
   */
  startsInReasoning?: boolean;
}

/** What one `push` or `finish` adds; empty strings mean nothing. */
export interface ReasoningPieces {
  reasoning: string;
  content: string;
}

export interface ReasoningParser {
  push(text: string): ReasoningPieces;
  /** The end of the output: releases held text. An unclosed block's text stays reasoning. */
  finish(): ReasoningPieces;
  /** Whether any reasoning was seen (a block opened, or the output started inside one). */
  readonly sawReasoning: boolean;
}

const isSpace = (ch: string) => ch === " " || ch === "\n" || ch === "\r" || ch === "\t";

/** Length of the longest proper prefix of `tag` that `s` ends with. */
function partialTagAtEnd(s: string, tag: string): number {
  for (let k = Math.min(tag.length - 1, s.length); k > 0; k--) if (s.endsWith(tag.slice(0, k))) return k;
  return 0;
}

/**
 * The rules: `<think>` opens a block only at the start of the output (after optional whitespace); then
 * everything up to the first `</think>` is reasoning, and everything after it is content, tags included as
 * text. Whitespace right after either tag and right before `</think>` is dropped. Tag text is never emitted;
 * a partial tag at the end of a chunk is held until the next chunk decides. Output without a block is
 * content, unchanged.
 */
export function createReasoningParser(opts: ReasoningOptions = {}): ReasoningParser {
  let state: "start" | "reasoning" | "content" = opts.startsInReasoning ? "reasoning" : "start";
  let skipSpace = opts.startsInReasoning === true;
  let saw = opts.startsInReasoning === true;
  let buf = "";

  function drain(final: boolean): ReasoningPieces {
    const out: ReasoningPieces = { reasoning: "", content: "" };
    for (;;) {
      if (skipSpace) {
        let i = 0;
        while (i < buf.length && isSpace(buf[i])) i++;
        buf = buf.slice(i);
        if (buf === "" && !final) return out;
        skipSpace = false;
      }
      if (state === "start") {
        let i = 0;
        while (i < buf.length && isSpace(buf[i])) i++;
        const rest = buf.slice(i);
        if (rest.startsWith(THINK_OPEN)) {
          buf = rest.slice(THINK_OPEN.length);
          state = "reasoning";
          skipSpace = true;
          saw = true;
          continue;
        }
        if (!final && THINK_OPEN.startsWith(rest)) return out; // "", "<", "<th"…: not decided yet
        state = "content"; // the output does not open a block: all of it is content, as it came
        continue;
      }
      if (state === "reasoning") {
        const at = buf.indexOf(THINK_CLOSE);
        if (at >= 0) {
          out.reasoning += buf.slice(0, at).trimEnd();
          buf = buf.slice(at + THINK_CLOSE.length);
          state = "content";
          skipSpace = true;
          continue;
        }
        if (final) {
          out.reasoning += buf;
          buf = "";
          return out;
        }
        // Hold a partial `</think>` and the whitespace before it: both vanish if the tag completes.
        let keep = buf.length - partialTagAtEnd(buf, THINK_CLOSE);
        while (keep > 0 && isSpace(buf[keep - 1])) keep--;
        out.reasoning += buf.slice(0, keep);
        buf = buf.slice(keep);
        return out;
      }
      out.content += buf;
      buf = "";
      return out;
    }
  }

  return {
    push(text) {
      buf += text;
      return drain(false);
    },
    finish: () => drain(true),
    get sawReasoning() {
      return saw;
    },
  };
}

/** Splits a whole output (non-streaming) with the same rules as the streaming parser. */
export function splitReasoning(text: string, opts: ReasoningOptions = {}): ReasoningPieces & { sawReasoning: boolean } {
  const p = createReasoningParser(opts);
  const a = p.push(text);
  const b = p.finish();
  return { reasoning: a.reasoning + b.reasoning, content: a.content + b.content, sawReasoning: p.sawReasoning };
}

/**
 * The parser a model gets from its chat template under `mode`: `undefined` means none. `auto` enables it when
 * the template mentions `<think>`. `generationPrompt` is the template's rendering of one user message with the
 * generation prompt; when it ends with `<think>` (after whitespace), the output starts inside the block.
 */
export function reasoningFromTemplate(
  mode: ReasoningParserMode,
  template: string | undefined,
  generationPrompt: string | undefined,
): ReasoningOptions | undefined {
  if (mode === "none") return undefined;
  if (mode === "auto" && !(template ?? "").includes(THINK_OPEN)) return undefined;
  return { startsInReasoning: (generationPrompt ?? "").trimEnd().endsWith(THINK_OPEN) };
}
