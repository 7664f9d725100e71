import { describe, expect, it } from "vitest";
import { createReasoningParser, reasoningFromTemplate, splitReasoning, type ReasoningOptions } from "./reasoning.js";

/**
 * Feeds `chunks` one by one and joins the pieces. A closing tag never reaches the reasoning; that no partial tag
 * leaks either is shown by every chunking joining to the whole-text split.
 */
function feed(chunks: string[], opts: ReasoningOptions = {}) {
  const p = createReasoningParser(opts);
  let reasoning = "";
  let content = "";
  for (const piece of [...chunks.map((c) => p.push(c)), p.finish()]) {
    expect(piece.reasoning).not.toContain("</think>");
    reasoning += piece.reasoning;
    content += piece.content;
  }
  return { reasoning, content, sawReasoning: p.sawReasoning };
}

/** Every way to cut `text` in two, and one chunk per character. */
function splits(text: string): string[][] {
  const out: string[][] = [[text], [...text]];
  for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

describe("reasoning parser - split", () => {
  const cases: Array<[string, string, ReasoningOptions, { reasoning: string; content: string; sawReasoning: boolean }]> = [
    ["a closed block", "<think>\nstep one\n</think>\n\nThe answer is 4.", {}, { reasoning: "step one", content: "The answer is 4.", sawReasoning: true }],
    ["leading whitespace before the block", "\n <think>why</think>so", {}, { reasoning: "why", content: "so", sawReasoning: true }],
    ["no tags: content untouched", "  Hello <b>world</b>\n", {}, { reasoning: "", content: "  Hello <b>world</b>\n", sawReasoning: false }],
    ["a tag later in the text is plain content", "Hi <think>x</think> y", {}, { reasoning: "", content: "Hi <think>x</think> y", sawReasoning: false }],
    ["unclosed (length cutoff): all reasoning", "<think>\nstill thinking ", {}, { reasoning: "still thinking ", content: "", sawReasoning: true }],
    ["tags only", "<think></think>", {}, { reasoning: "", content: "", sawReasoning: true }],
    ["empty block then content", "<think>\n\n</think>\n\nHi", {}, { reasoning: "", content: "Hi", sawReasoning: true }],
    ["nested-looking text stays reasoning up to the first close", "<think>a <think> b</think>c</think>d", {}, { reasoning: "a <think> b", content: "c</think>d", sawReasoning: true }],
    ["a near-tag inside reasoning is text", "<think>1 </thin 2 <th</think>ok", {}, { reasoning: "1 </thin 2 <th", content: "ok", sawReasoning: true }],
    ["a lone '<' at the start is content", "<b>x", {}, { reasoning: "", content: "<b>x", sawReasoning: false }],
    ["an unfinished open tag at the end is content", "<thi", {}, { reasoning: "", content: "<thi", sawReasoning: false }],
    ["starts inside the block (DeepSeek-R1)", "\nplan\n</think>\n\nDone.", { startsInReasoning: true }, { reasoning: "plan", content: "Done.", sawReasoning: true }],
    ["starts inside, never closed", "plan a", { startsInReasoning: true }, { reasoning: "plan a", content: "", sawReasoning: true }],
    ["starts inside, an opening tag is text", "<think>x</think>y", { startsInReasoning: true }, { reasoning: "<think>x", content: "y", sawReasoning: true }],
    ["empty output", "", {}, { reasoning: "", content: "", sawReasoning: false }],
  ];
  for (const [name, text, opts, want] of cases) {
    it(`${name}: the same split for every chunking`, () => {
      expect(splitReasoning(text, opts)).toEqual(want);
      for (const chunks of splits(text)) expect(feed(chunks, opts), JSON.stringify(chunks)).toEqual(want);
    });
  }

  it("streams reasoning before the block closes and holds only a possible tag", () => {
    const p = createReasoningParser();
    expect(p.push("<th")).toEqual({ reasoning: "", content: "" });
    expect(p.push("ink>abc")).toEqual({ reasoning: "abc", content: "" });
    expect(p.push(" def </")).toEqual({ reasoning: " def", content: "" });
    expect(p.push("x")).toEqual({ reasoning: " </x", content: "" });
    expect(p.push("</think>\nAns")).toEqual({ reasoning: "", content: "Ans" });
    expect(p.push("wer")).toEqual({ reasoning: "", content: "wer" });
    expect(p.finish()).toEqual({ reasoning: "", content: "" });
  });

  it("emits content at once when the output does not start with a block", () => {
    const p = createReasoningParser();
    expect(p.push("He")).toEqual({ reasoning: "", content: "He" });
    expect(p.push("<think>")).toEqual({ reasoning: "", content: "<think>" });
  });
});

describe("reasoning parser - detection", () => {
  const qwen3 = "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}";
  const llama = "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}";
  it("auto: a template that mentions <think> gets the parser; others do not", () => {
    expect(reasoningFromTemplate("auto", qwen3, "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n")).toEqual({ startsInReasoning: false });
    expect(reasoningFromTemplate("auto", llama, "<|start_header_id|>assistant<|end_header_id|>\n\n")).toBeUndefined();
    expect(reasoningFromTemplate("auto", undefined, "x")).toBeUndefined();
  });
  it("a generation prompt that ends with <think> starts the output inside the block", () => {
    expect(reasoningFromTemplate("auto", "{{'<｜Assistant｜><think>\\n'}}", "<｜User｜>x<｜Assistant｜><think>\n")).toEqual({ startsInReasoning: true });
  });
  it("none and think override the template", () => {
    expect(reasoningFromTemplate("none", qwen3, "")).toBeUndefined();
    expect(reasoningFromTemplate("think", llama, "assistant\n")).toEqual({ startsInReasoning: false });
  });
});
