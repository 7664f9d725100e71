import { describe, expect, it } from "vitest";
import { chatChunk, completionChunk } from "./openai/responses.js";
import { jsonTemplate } from "./sse-writer.js";

describe("jsonTemplate", () => {
  const common = { id: "chatcmpl-1", created: 1, model: "tiny" };
  it("gives JSON.stringify's text for every string, escapes included", () => {
    const chat = jsonTemplate((s) => chatChunk(common, { content: s }, null, true));
    const text = jsonTemplate((s) => completionChunk(common, s, null, false));
    for (const s of ["", "hi", 'quote " and \\ backslash', "line\nbreak\ttab\u0000nul", "é — 漢字 🙂", "\ud800 lone surrogate"]) {
      expect(chat(s)).toBe(JSON.stringify(chatChunk(common, { content: s }, null, true)));
      expect(text(s)).toBe(JSON.stringify(completionChunk(common, s, null, false)));
    }
  });

  it("refuses a shape that does not hold the slot exactly once", () => {
    expect(() => jsonTemplate(() => ({ a: "constant" }))).toThrow(/exactly once/);
    expect(() => jsonTemplate((s) => ({ a: s, b: s }))).toThrow(/exactly once/);
  });
});
