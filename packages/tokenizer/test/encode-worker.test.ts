import { describe, expect, it } from "vitest";
import { EncodeWorker } from "../src/encode-worker.js";
import { EncodeWorkerError } from "../src/index.js";

describe("EncodeWorker failure path", () => {
  it("rejects pending calls with EncodeWorkerError when the worker thread dies, and can start again", async () => {
    // Ranks text the WASM constructor aborts on: the worker throws while starting.
    const w = new EncodeWorker({ kind: "ranks", ranksText: "I*Q== 0", pattern: "\\s+", specials: {} });
    const started = Date.now();
    const calls = [w.encode(["a"], 10_000), w.encode(["b"], 10_000)];
    for (const c of calls) await expect(c).rejects.toBeInstanceOf(EncodeWorkerError);
    expect(Date.now() - started).toBeLessThan(10_000); // failed fast, not by timeout
    expect(w.pending).toBe(0);
    expect(w.running).toBe(false);
    await expect(w.encode(["c"], 10_000)).rejects.toBeInstanceOf(EncodeWorkerError);
    await w.close();
  });

  it("answers in order and drops late answers of timed-out calls", async () => {
    const { encodingJsonPath } = await import("../src/encodings.js");
    expect(encodingJsonPath("cl100k_base")).toMatch(/cl100k_base\.json$/);
    const w = new EncodeWorker({ kind: "named", name: "cl100k_base", specials: {} });
    try {
      const slow = w.encode(["word ".repeat(200_000)], 1);
      const fast = w.encode(["hello world"], 30_000);
      await expect(slow).rejects.toThrow(/did not finish within 1 ms/);
      expect(Array.from(await fast)).toEqual([15339, 1917]);
      expect(w.pending).toBe(0);
    } finally {
      await w.close();
    }
    expect(w.running).toBe(false);
  });
});
