import { createServer, request } from "node:http";
import { describe, expect, it } from "vitest";
import { chatChunk, completionChunk } from "./openai/responses.js";
import { jsonTemplate, NodeSseWriter } from "./sse-writer.js";

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

describe("NodeSseWriter.sendNow", () => {
  it("hands the event to the socket before it returns, even with more work queued after it in the same turn", async () => {
    const seen: Array<{ corked: number; bytesWritten: number }> = [];
    const server = createServer((_req, res) => {
      const sse = new NodeSseWriter(res, new Headers());
      const p = sse.sendNow('{"x":1}');
      // Node corks a response's socket on a write until process.nextTick; sendNow must not leave its event there.
      seen.push({ corked: res.socket!.writableCorked, bytesWritten: res.socket!.bytesWritten });
      void p.then(() => sse.end());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as { port: number }).port;
      const body = await new Promise<string>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port, path: "/", method: "GET" }, (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => (text += d));
          res.on("end", () => resolve(text));
        });
        req.setTimeout(5000, () => req.destroy(new Error("no answer in 5 s")));
        req.on("error", reject);
        req.end();
      });
      expect(body).toBe('data: {"x":1}\n\n');
      expect(seen).toHaveLength(1);
      expect(seen[0].corked).toBe(0);
      expect(seen[0].bytesWritten).toBeGreaterThan(0);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
