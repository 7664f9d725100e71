import { describe, expect, it } from "vitest";
import {
  EXECUTOR_DEFAULTS,
  ProtocolError,
  executorArgv,
  executorOpenOptions,
  finishReasonOf,
  optionalIntFlag,
  parseDecodeRequest,
  parseFlags,
  parseWorkerCli,
  portFlag,
  requestPlaneFlagOptions,
  requestPlaneFlags,
  directDataPathArgv,
  stringFlag,
  UsageError,
} from "../src/index.js";
import { thrownMessage } from "@trtd/test-support";

const usageMessage = (f: () => unknown) => thrownMessage(f, UsageError);

const ok = { id: "a", tokens: [1, 2], sampling: { temperature: 0, topP: 1, topK: 0 }, maxTokens: 4, stopTokenIds: [7], deadline: Date.now() + 1000 };

describe("apps-common - wire protocol", () => {
  it("accepts a well-formed request and names the first bad field otherwise", () => {
    expect(parseDecodeRequest(ok)).toBe(ok);
    expect(parseDecodeRequest({ ...ok, generatedOffset: 1 }).generatedOffset).toBe(1);
    expect(parseDecodeRequest({ ...ok, prefill: { firstToken: 3, kvHandle: {}, kvBytes: 1, prefillMs: 1 } }).prefill!.firstToken).toBe(3);
    const withPrefill = { ...ok, prefill: { firstToken: 3, kvHandle: {}, kvBytes: 1, prefillMs: 1 } };
    expect(parseDecodeRequest({ ...withPrefill, firstTokenSent: true }).firstTokenSent).toBe(true);
    expect(() => parseDecodeRequest({ ...ok, firstTokenSent: true })).toThrow(/firstTokenSent is about a prefill's first token: it needs prefill/);
    expect(() => parseDecodeRequest({ ...withPrefill, maxTokens: 1, firstTokenSent: true })).toThrow(/firstTokenSent needs maxTokens >= 2/);
    expect(() => parseDecodeRequest({ ...withPrefill, firstTokenSent: "yes" })).toThrow(/firstTokenSent must be a boolean/);
    expect(parseDecodeRequest({ ...ok, grammar: { type: "json_object" } }).grammar).toEqual({ type: "json_object" });
    const controls = {
      ...ok,
      sampling: { ...ok.sampling, repetitionPenalty: 1.2, frequencyPenalty: -1, presencePenalty: 0.5, minP: 0.1 },
      logitBias: { "5": -3 },
      minTokens: 2,
      logprobs: true,
      topLogprobs: 4,
    };
    expect(parseDecodeRequest(controls)).toBe(controls);
    const bad: Array<[unknown, RegExp]> = [
      [{ ...ok, sampling: { ...ok.sampling, minP: "0.1" } }, /sampling.minP/],
      [{ ...ok, sampling: { ...ok.sampling, frequencyPenalty: null } }, /sampling.frequencyPenalty/],
      [{ ...ok, logitBias: [1] }, /logitBias/],
      [{ ...ok, logitBias: { x: 1 } }, /logitBias.x/],
      [{ ...ok, logitBias: { "5": "big" } }, /logitBias.5/],
      [{ ...ok, minTokens: -1 }, /minTokens/],
      [{ ...ok, logprobs: 1 }, /logprobs/],
      [{ ...ok, topLogprobs: 1.5 }, /topLogprobs/],
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
      [{ ...ok, grammar: "json" }, /grammar must be an object with a type/],
      [{ ...ok, grammar: { schema: {} } }, /grammar must be an object with a type/],
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

  it("chooses the executor (--executor reference|cuda) and its GPU (--device N); unset, the binding's defaults", () => {
    // Neither flag: nothing passed, so Executor.open takes $TRTD_EXECUTOR_LIB, else the reference executor (device -1).
    const plain = parseWorkerCli([], "/m").executor;
    expect("executor" in plain || "deviceId" in plain).toBe(false);
    expect(executorArgv(plain)).not.toContain("--executor");
    expect(parseWorkerCli(["--executor", "cuda"], "/m").executor).toMatchObject({ executor: "cuda" }); // device 0: the binding's default for cuda
    expect(parseWorkerCli(["--executor", "cuda", "--device", "3"], "/m").executor).toMatchObject({ executor: "cuda", deviceId: 3 });
    expect(parseWorkerCli(["--executor", "reference", "--device", "0"], "/m").executor).toMatchObject({ executor: "reference", deviceId: 0 });
    // Passed on as given, for the launcher's children.
    const argv = executorArgv(parseWorkerCli(["--executor", "cuda", "--device", "1"], "/m").executor);
    expect(argv.join(" ")).toContain("--executor cuda --device 1");
    expect(parseWorkerCli(argv, "/m").executor).toMatchObject({ executor: "cuda", deviceId: 1 });
  });

  it("--gpu-memory-fraction (cuda): passed on as given, and opened as a KV byte budget instead of a block count", () => {
    const ex = parseWorkerCli(["--executor", "cuda", "--device", "1", "--gpu-memory-fraction", "0.45"], "/m").executor;
    expect(ex).toMatchObject({ executor: "cuda", deviceId: 1, gpuMemoryFraction: 0.45, kvBlockCount: 0 });
    const argv = executorArgv(ex);
    expect(argv.join(" ")).toContain("--gpu-memory-fraction 0.45");
    expect(argv).not.toContain("--kv-block-count");
    expect(parseWorkerCli(argv, "/m").executor).toEqual(ex);
    const asked: Array<[number, number]> = [];
    const opts = executorOpenOptions(ex, (fraction, deviceId) => (asked.push([fraction, deviceId]), 5 * 2 ** 30));
    expect(asked).toEqual([[0.45, 1]]);
    expect(opts).toMatchObject({ executor: "cuda", deviceId: 1, kvBlockCount: 0, kvMemoryBytes: 5 * 2 ** 30 });
    expect(opts).not.toHaveProperty("gpuMemoryFraction");
    expect(opts).not.toHaveProperty("modelDir");
    // Without the flag nothing is computed and the block count stays.
    const plain = executorOpenOptions(parseWorkerCli(["--kv-block-count", "64"], "/m").executor, () => {
      throw new Error("not asked");
    });
    expect(plain).toMatchObject({ kvBlockCount: 64 });
    expect(plain).not.toHaveProperty("kvMemoryBytes");
  });

  it("--prefix-cache on|off: off is passed on and opens the executor without a prefix cache; on or unset leaves the default", () => {
    const off = parseWorkerCli(["--prefix-cache", "off"], "/m").executor;
    expect(off.prefixCache).toBe(false);
    expect(executorArgv(off).join(" ")).toContain("--prefix-cache off");
    expect(parseWorkerCli(executorArgv(off), "/m").executor).toEqual(off);
    expect(executorOpenOptions(off, () => 0)).toMatchObject({ prefixCache: false });
    for (const on of [[], ["--prefix-cache", "on"]]) {
      const ex = parseWorkerCli(on, "/m").executor;
      expect(ex).not.toHaveProperty("prefixCache");
      expect(executorArgv(ex)).not.toContain("--prefix-cache");
      expect(executorOpenOptions(ex, () => 0)).not.toHaveProperty("prefixCache");
    }
    expect(() => parseWorkerCli(["--prefix-cache", "no"], "/m")).toThrow("--prefix-cache takes on or off, got no");
    expect(() => parseWorkerCli(["--prefix-cache", "off", "--kv-host-cache-gb", "1"], "/m")).toThrow("--kv-host-cache-gb keeps blocks for the prefix cache: it needs --prefix-cache on");
  });

  it("--kv-host-cache-gb N: passed on as given, opened as the host KV tier's bytes (GiB); unset or 0 is off", () => {
    const ex = parseWorkerCli(["--kv-host-cache-gb", "1.5", "--kv-block-count", "64"], "/m").executor;
    expect(ex).toMatchObject({ kvHostCacheGb: 1.5, kvBlockCount: 64 });
    const argv = executorArgv(ex);
    expect(argv.join(" ")).toContain("--kv-host-cache-gb 1.5");
    expect(parseWorkerCli(argv, "/m").executor).toEqual(ex);
    const opts = executorOpenOptions(ex, () => {
      throw new Error("not asked");
    });
    expect(opts).toMatchObject({ kvHostCacheBytes: 1.5 * 2 ** 30, kvBlockCount: 64 });
    expect(opts).not.toHaveProperty("kvHostCacheGb");
    for (const off of [[], ["--kv-host-cache-gb", "0"]]) {
      const plain = parseWorkerCli(off, "/m").executor;
      expect(plain).not.toHaveProperty("kvHostCacheGb");
      expect(executorArgv(plain)).not.toContain("--kv-host-cache-gb");
      expect(executorOpenOptions(plain, () => 0)).not.toHaveProperty("kvHostCacheBytes");
    }
    for (const [arg, message] of [
      ["-1", "--kv-host-cache-gb must be a number of GiB >= 0, got -1"],
      ["lots", "--kv-host-cache-gb must be a number of GiB >= 0, got lots"],
      ["", "--kv-host-cache-gb must be a number of GiB >= 0, got "],
      ["Infinity", "--kv-host-cache-gb must be a number of GiB >= 0, got Infinity"],
    ]) {
      expect(usageMessage(() => parseWorkerCli(["--kv-host-cache-gb", arg!], "/m"))).toBe(message);
    }
  });

  it("refuses a bad executor or device with one line naming the rule", () => {
    const bad: Array<[string[], string]> = [
      [["--executor", "foo"], "--executor must be one of reference, cuda, got foo"],
      [["--executor", "CUDA"], "--executor must be one of reference, cuda, got CUDA"],
      [["--executor", "cuda", "--device", "-1"], "--device must be an integer >= 0, got -1"],
      [["--executor", "cuda", "--device=-1"], "--device must be an integer >= 0, got -1"],
      [["--executor", "cuda", "--device", "1.5"], "--device must be an integer >= 0, got 1.5"],
      [["--executor", "cuda", "--device", "gpu0"], "--device must be an integer >= 0, got gpu0"],
      [["--device", "1"], "--device 1 needs --executor cuda: the reference executor runs on the CPU"],
      [["--executor", "cuda", "--gpu-memory-fraction", "0"], "--gpu-memory-fraction must be a number in (0, 1], got 0"],
      [["--executor", "cuda", "--gpu-memory-fraction", "1.01"], "--gpu-memory-fraction must be a number in (0, 1], got 1.01"],
      [["--executor", "cuda", "--gpu-memory-fraction", "half"], "--gpu-memory-fraction must be a number in (0, 1], got half"],
      [["--gpu-memory-fraction", "0.5"], "--gpu-memory-fraction needs --executor cuda: it sizes a KV pool in GPU memory"],
      [["--executor", "cuda", "--gpu-memory-fraction", "0.5", "--kv-block-count", "8"], "--gpu-memory-fraction sizes the KV pool: give it or --kv-block-count, not both"],
    ];
    for (const [argv, message] of bad) {
      let err: unknown;
      try {
        parseWorkerCli(argv, "/m");
      } catch (e) {
        err = e;
      }
      expect(err, argv.join(" ")).toBeInstanceOf(UsageError);
      expect((err as Error).message).toBe(message);
    }
    // parseArgs' own errors are one line too.
    expect(() => parseWorkerCli(["--executor"], "/m")).toThrow(/^[^\n]*--executor[^\n]*$/);
  });
});

describe("apps-common - the flags every app shares", () => {
  it("--worker-name and --request-plane-uri: defaults, normalised URIs, one line naming the rule", () => {
    const parse = (argv: string[]) => requestPlaneFlags(parseFlags(argv, requestPlaneFlagOptions));
    expect(parse([])).toEqual({ namespace: "trtd", requestPlaneUri: "nats://127.0.0.1:4222", directLink: { enabled: true } });
    expect(parse(["--worker-name", "prod", "--request-plane-uri", "a:1,nats://b:2"])).toEqual({ namespace: "prod", requestPlaneUri: "nats://a:1,nats://b:2", directLink: { enabled: true } });
    expect(usageMessage(() => parse(["--worker-name", "dA"]))).toMatch(/^--worker-name: [^\n]+$/);
    expect(usageMessage(() => parse(["--request-plane-uri", "http://x:1"]))).toMatch(/^--request-plane-uri takes HOST:PORT[^\n]+got http:\/\/x:1$/);
    // The workers parse them with the same rule.
    expect(usageMessage(() => parseWorkerCli(["--worker-name", "dA"], "/m"))).toBe(usageMessage(() => parse(["--worker-name", "dA"])));
  });

  it("--direct-data-path on|off, --direct-data-path-host, --advertise-host: the plane's directLink option, passed on as given", () => {
    const parse = (argv: string[]) => requestPlaneFlags(parseFlags(argv, requestPlaneFlagOptions)).directLink;
    expect(parse(["--direct-data-path", "off"])).toEqual({ enabled: false });
    const remote = parse(["--direct-data-path-host", "0.0.0.0", "--advertise-host", "gpu-7.example"]);
    expect(remote).toEqual({ enabled: true, bindHost: "0.0.0.0", advertiseHost: "gpu-7.example" });
    expect(requestPlaneFlags(parseFlags(directDataPathArgv(remote), requestPlaneFlagOptions)).directLink).toEqual(remote);
    expect(directDataPathArgv({ enabled: false })).toEqual(["--direct-data-path", "off"]);
    expect(usageMessage(() => parse(["--direct-data-path", "yes"]))).toBe("--direct-data-path takes on or off, got yes");
    expect(usageMessage(() => parse(["--advertise-host", "a b"]))).toBe('--advertise-host takes a host name or an IP address, got "a b"');
    expect(parseWorkerCli(["--direct-data-path", "off"], "/m").directLink).toEqual({ enabled: false });
  });

  it("ports, optional integers and strings", () => {
    expect(portFlag(undefined, "p", { fallback: 8000 })).toBe(8000);
    expect(portFlag("0", "p", { fallback: 8000 })).toBe(0);
    expect(usageMessage(() => portFlag("65536", "p", { fallback: 0 }))).toBe("--p must be <= 65535, got 65536");
    expect(usageMessage(() => portFlag("0", "p", { min: 1, fallback: 1 }))).toBe("--p must be an integer >= 1, got 0");
    expect(usageMessage(() => parseWorkerCli(["--kv-port", "70000"], "/m"))).toBe("--kv-port must be <= 65535, got 70000");
    expect(optionalIntFlag(undefined, "n")).toBeUndefined();
    expect(optionalIntFlag("0", "n", 0)).toBe(0);
    expect(usageMessage(() => optionalIntFlag("0", "n"))).toBe("--n must be an integer >= 1, got 0");
    expect(stringFlag({ a: "x", b: true }, "a")).toBe("x");
    expect(stringFlag({ a: "x", b: true }, "b")).toBeUndefined();
  });
});
