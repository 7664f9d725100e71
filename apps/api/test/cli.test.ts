// The api's flags: the ones every app takes are parsed by apps/common's parser, so a mistake reads the same here
// as in a worker (and the launcher); the api's own limits and port are checked before anything starts.
import { describe, expect, it } from "vitest";
import { parseWorkerCli, UsageError } from "@trtd/apps-common";
import { modelDir, thrownMessage } from "@trtd/test-support";
import { parseApiCli } from "../src/cli.js";

const usageMessage = (f: () => unknown) => thrownMessage(f, UsageError);

describe("api - flags", () => {
  it("parses the seed's flags and its limits", () => {
    const cli = parseApiCli(
      ["--tokenizer", modelDir, "--worker-name", "prod", "--request-plane-uri", "10.0.0.5:4333", "--api-server-port", "0", "--max-body-bytes", "1024", "--grace-ms", "0"],
      "/unused",
    );
    expect(cli).toMatchObject({ tokenizerDir: modelDir, namespace: "prod", requestPlaneUri: "nats://10.0.0.5:4333", host: "127.0.0.1", port: 0, modelName: "tiny", graceMs: 0 });
    expect(cli.limits).toEqual({ maxBodyBytes: 1024 });
  });

  it("--reasoning-parser: auto by default, or as given", () => {
    expect(parseApiCli(["--tokenizer", modelDir], "/unused").reasoningParser).toBe("auto");
    for (const mode of ["auto", "none", "think"]) expect(parseApiCli(["--tokenizer", modelDir, "--reasoning-parser", mode], "/unused").reasoningParser).toBe(mode);
  });

  it("--tool-call-parser: auto by default, or as given", () => {
    expect(parseApiCli(["--tokenizer", modelDir], "/unused").toolCallParser).toBe("auto");
    for (const mode of ["auto", "none", "llama3_json", "hermes"]) expect(parseApiCli(["--tokenizer", modelDir, "--tool-call-parser", mode], "/unused").toolCallParser).toBe(mode);
    expect(usageMessage(() => parseApiCli(["--tokenizer", modelDir, "--tool-call-parser", "pythonic"], "/unused"))).toBe("--tool-call-parser must be one of auto, none, llama3_json, hermes, got pythonic");
  });

  it("--router-mode: load by default, kv with its weights, round-robin; a bad mode or weight is one line", () => {
    expect(parseApiCli(["--tokenizer", modelDir], "/unused")).toMatchObject({ routerMode: "load", kvWeights: { overlapWeight: 1, loadWeight: 1 } });
    expect(parseApiCli(["--tokenizer", modelDir, "--router-mode", "kv", "--kv-overlap-weight", "2.5", "--kv-load-weight", "0"], "/unused")).toMatchObject({
      routerMode: "kv",
      kvWeights: { overlapWeight: 2.5, loadWeight: 0 },
    });
    expect(parseApiCli(["--tokenizer", modelDir, "--router-mode", "round-robin"], "/unused").routerMode).toBe("round-robin");
    expect(usageMessage(() => parseApiCli(["--tokenizer", modelDir, "--router-mode", "prefix"], "/unused"))).toBe("--router-mode must be one of kv, load, round-robin, got prefix");
    expect(usageMessage(() => parseApiCli(["--tokenizer", modelDir, "--kv-load-weight", "-1"], "/unused"))).toBe("--kv-load-weight must be a number >= 0, got -1");
  });

  it("a mistake in a flag the workers take too reads the same as in a worker; the api's own are one line each", () => {
    for (const argv of [["--worker-name", "dA"], ["--request-plane-uri", "nats://h:0"], ["--grace-ms", "-1"], ["--bogus"]]) {
      expect(usageMessage(() => parseApiCli(["--tokenizer", modelDir, ...argv], "/unused")), argv.join(" ")).toBe(usageMessage(() => parseWorkerCli(argv, "/unused")));
    }
    expect(usageMessage(() => parseApiCli(["--tokenizer", modelDir, "--api-server-port", "65536"], "/unused"))).toBe("--api-server-port must be <= 65535, got 65536");
    expect(usageMessage(() => parseApiCli(["--tokenizer", modelDir, "--max-prompt-tokens", "0"], "/unused"))).toBe("--max-prompt-tokens must be an integer >= 1, got 0");
    expect(usageMessage(() => parseApiCli(["--tokenizer", "/nonexistent/dir"], "/unused"))).toBe("--tokenizer: /nonexistent/dir does not exist");
    expect(usageMessage(() => parseApiCli(["--tokenizer", modelDir, "--reasoning-parser", "deepseek"], "/unused"))).toBe("--reasoning-parser must be one of auto, none, think, got deepseek");
  });
});
