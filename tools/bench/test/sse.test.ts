import { describe, expect, it } from "vitest";
import { SseParser, SseProtocolError } from "../src/index.js";

const enc = new TextEncoder();

function feedInPieces(text: string, sizes: number[]): string[] {
  const bytes = enc.encode(text);
  const p = new SseParser();
  const out: string[] = [];
  let i = 0;
  let k = 0;
  while (i < bytes.length) {
    const n = sizes[k++ % sizes.length];
    out.push(...p.push(bytes.subarray(i, i + n)).map((e) => e.data));
    i += n;
  }
  out.push(...p.end().map((e) => e.data));
  return out;
}

describe("SseParser", () => {
  const stream = 'data: {"a":1}\n\n: keep-alive\n\ndata: {"b":"héllo ✓"}\n\nevent: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n';
  const expected = ['{"a":1}', '{"b":"héllo ✓"}', "line1\nline2", "[DONE]"];

  it("parses whole frames", () => {
    expect(feedInPieces(stream, [10_000])).toEqual(expected);
  });

  it("gives the same events for every split: 1, 2, 3 and 7 bytes at a time (splits inside UTF-8 and lines)", () => {
    for (const n of [1, 2, 3, 7]) expect(feedInPieces(stream, [n])).toEqual(expected);
    expect(feedInPieces(stream, [5, 1, 13, 2])).toEqual(expected);
  });

  it("handles CRLF and lone CR line endings, including a CRLF split across chunks", () => {
    const crlf = stream.replace(/\n/g, "\r\n");
    for (const n of [1, 4, 1000]) expect(feedInPieces(crlf, [n])).toEqual(expected);
    expect(feedInPieces(stream.replace(/\n/g, "\r"), [1])).toEqual(expected);
    const p = new SseParser();
    expect(p.push("data: a\r")).toEqual([]);
    expect(p.push("\n\r")).toEqual([{ event: "message", data: "a" }]);
    expect(p.push("\ndata: b\n\n")).toEqual([{ event: "message", data: "b" }]);
  });

  it("keeps event names, drops comments, and flushes a final event without a blank line at end()", () => {
    const p = new SseParser();
    expect(p.push("event: usage\ndata: 1\n\n:comment\ndata:2")).toEqual([{ event: "usage", data: "1" }]);
    expect(p.end()).toEqual([{ event: "message", data: "2" }]);
  });

  it("throws SseProtocolError when an event grows past the limit without ending", () => {
    const p = new SseParser({ maxEventChars: 64 });
    expect(() => p.push("data: " + "x".repeat(100))).toThrow(SseProtocolError);
  });
});
