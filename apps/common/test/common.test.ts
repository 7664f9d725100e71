import { describe, expect, it } from "vitest";
import { EXECUTOR_DEFAULTS, ProtocolError, finishReasonOf, parseDecodeRequest, parseWorkerCli, UsageError } from "../src/index.js";

const ok = { id: "a", tokens: [1, 2], sampling: { temperature: 0, topP: 1, topK: 0 }, maxTokens: 4, stopTokenIds: [7], deadline: Date.now() + 1000 };

describe("apps-common - wire protocol", () => {
  it("accepts a well-formed request and names the first bad field otherwise", () => {
    expect(parseDecodeRequest(ok)).toBe(ok);
    expect(parseDecodeRequest({ ...ok, generatedOffset: 1 }).generatedOffset).toBe(1);
    expect(parseDecodeRequest({ ...ok, prefill: { firstToken: 3, kvHandle: {}, kvBytes: 1, prefillMs: 1 } }).prefill!.firstToken).toBe(3);
    const bad: Array<[unknown, RegExp]> = [
      [null, /not an object/],
      [{ ...ok, id: "" }, /id/],
      [{ ...ok, tokens: [] }, /tokens/],
      [{ ...ok, tokens: [1, -2] }, /tokens/],
      [{ ...ok, maxTokens: 0 }, /maxTokens/],
      [{ ...ok, stopTokenIds: "x" }, /stopTokenIds/],
      [{ ...ok, deadline: "soon" }, /deadline/],
      [{ ...ok, sampling: { temperature: "hot", topP: 1, topK: 0 } }, /sampling.temperature/],
      [{ ...ok, sampling: { ...ok.sampling, seed: 1.5 } }, /seed/],
      [{ ...ok, prefill: { firstToken: "x" } }, /firstToken/],
      [{ ...ok, generatedOffset: -1 }, /generatedOffset/],
      [{ ...ok, generatedOffset: 0.5 }, /generatedOffset/],
      [{ ...ok, generatedOffset: 2 }, /generatedOffset/], // not below tokens.length: no prompt left
      [{ ...ok, generatedOffset: "1" }, /generatedOffset/],
      [{ ...ok, generatedOffset: 1, prefill: { firstToken: 3, kvHandle: {}, kvBytes: 1, prefillMs: 1 } }, /aggregated/],
    ];
    for (const [v, msg] of bad) {
      expect(() => parseDecodeRequest(v)).toThrow(ProtocolError);
      expect(() => parseDecodeRequest(v)).toThrow(msg);
    }
  });

  it("maps executor finish reasons to wire finish reasons", () => {
    expect(["length", "end_id", "stop_token", "cancelled", "error"].map((r) => finishReasonOf(r as never))).toEqual(["length", "stop", "stop", "cancelled", "error"]);
  });
});

describe("apps-common - worker flags", () => {
  it("parses the seed's worker flags and executor options", () => {
    const cli = parseWorkerCli(["--worker-name", "prod", "--request-plane-uri", "10.1.2.3:4222", "--threads", "2", "--kv-block-count", "64"], "/models/tiny");
    expect(cli).toMatchObject({ namespace: "prod", requestPlaneUri: "nats://10.1.2.3:4222", executor: { modelDir: "/models/tiny", threads: 2, kvBlockCount: 64, maxBatchSize: EXECUTOR_DEFAULTS.maxBatchSize } });
    expect(() => parseWorkerCli(["--threads", "0"], "/m")).toThrow(UsageError);
    expect(() => parseWorkerCli(["--nope"], "/m")).toThrow(UsageError);
  });
});
