// The launcher's flags, and its fallback to one process when nats-server is missing (real processes).
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { resolve } from "node:path";
import { parseLauncherCli, workerArgv, apiArgv } from "../src/index.js";
import { LAUNCHER_READY, modelDir, repoRoot } from "./support/processes.js";

describe("launcher - flags", () => {
  it("parses the seed's deploy flags and passes them on consistently", () => {
    const cli = parseLauncherCli(
      ["--context-worker-count", "2", "--generate-worker-count", "3", "--worker-name", "prod", "--initialize-request-plane", "--request-plane-uri", "10.0.0.5:4333", "--threads", "2"],
      modelDir,
    );
    expect(cli).toMatchObject({ contextWorkers: 2, generateWorkers: 3, namespace: "prod", initializeRequestPlane: true, requestPlaneUri: "nats://10.0.0.5:4333" });
    expect(workerArgv(cli, cli.requestPlaneUri)).toEqual(expect.arrayContaining(["--worker-name", "prod", "--request-plane-uri", "nats://10.0.0.5:4333", "--threads", "2"]));
    expect(apiArgv(cli, cli.requestPlaneUri)).toEqual(expect.arrayContaining(["--worker-name", "prod", "--api-server-port", "8000", "--tokenizer", modelDir]));
  });

  it("refuses bad values with a usage error", () => {
    expect(() => parseLauncherCli(["--generate-worker-count", "0"], modelDir)).toThrow(/generate-worker-count/);
    expect(() => parseLauncherCli(["--context-worker-count", "-1"], modelDir)).toThrow(/context-worker-count/);
    expect(() => parseLauncherCli(["--bogus"], modelDir)).toThrow(/bogus/);
    expect(() => parseLauncherCli(["--in-process", "--initialize-request-plane"], modelDir)).toThrow(/in-process/);
    expect(() => parseLauncherCli(["--prefill-env", "no-equals"], modelDir)).toThrow(/KEY=VALUE/);
  });

  it("takes environment per worker role", () => {
    const cli = parseLauncherCli(["--prefill-env", "TRTD_TRTLLM_DEVICE_ID=0", "--decode-env", "TRTD_TRTLLM_DEVICE_ID=1", "--decode-env", "X=a=b"], modelDir);
    expect(cli.roleEnv).toEqual({ prefill: { TRTD_TRTLLM_DEVICE_ID: "0" }, decode: { TRTD_TRTLLM_DEVICE_ID: "1", X: "a=b" } });
  });
});

describe("launcher - without nats-server", () => {
  it("runs every part in one process on the in-process request plane, says so, and serves", async () => {
    const proc = spawn(
      process.execPath,
      [
        "--import", "tsx", "--conditions=source", resolve(repoRoot, "apps/launcher/src/main.ts"),
        "--initialize-request-plane", "--in-process-fallback", "--api-server-port", "0", "--model-dir", modelDir, "--threads", "1",
        "--disagg-min-prompt-tokens", "1",
      ],
      { cwd: repoRoot, env: { ...process.env, NATS_SERVER_BIN: "/nonexistent/nats-server" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const lines: string[] = [];
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    try {
      createInterface({ input: proc.stderr! }).on("line", (l) => lines.push(l));
      const url = await new Promise<string>((resolveUrl, reject) => {
        const t = setTimeout(() => reject(new Error(`not ready:\n${lines.join("\n")}`)), 60_000);
        createInterface({ input: proc.stdout! }).on("line", (l) => {
          lines.push(l);
          const m = LAUNCHER_READY.exec(l);
          if (m) {
            clearTimeout(t);
            resolveUrl(m[1]);
          }
        });
      });
      expect(lines.join("\n")).toMatch(/nats-server is not installed.*in this process on the in-process request plane/);
      expect(lines.join("\n")).toMatch(/in one process \(in-process request plane\)/);
      const r = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "Hello from one process" }], max_tokens: 5, temperature: 0 }),
      });
      expect(r.status).toBe(200);
      const j = (await r.json()) as { usage: { completion_tokens: number } };
      expect(j.usage.completion_tokens).toBe(5);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/trtd_routed_requests_total\{mode="disaggregated"\} 1/);
    } finally {
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      expect(await exited).toBe(0);
      clearTimeout(t);
    }
  }, 90_000);
});
