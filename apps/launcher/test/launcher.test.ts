// The launcher's flags, and its fallback to one process when nats-server is missing (real processes).
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseLauncherCli, workerArgv, apiArgv, prefillArgv, heapNodeArgs, DEFAULT_API_HEAP_MB, DEFAULT_WORKER_HEAP_MB } from "../src/index.js";
import { launcherChildPids, parseLauncherReadyLine, parseWorkerCli, UsageError } from "@trtd/apps-common";
import { freePort } from "@trtd/request-plane/testing";
import { probeNatsServer, startNatsServer } from "@trtd/request-plane";
import { appArgv, thrownMessage } from "@trtd/test-support";
import { LAUNCHER_READY, eventually, isAlive, modelDir, repoRoot, startApp } from "./support/processes.js";

/**
 * Each [flag, value] of `pairs` is in `argv` exactly once, with its value right after it, and the flags come in the
 * order given (flags not listed may sit in between). `arrayContaining` would pass "prod --worker-name" as well.
 */
function expectFlagsInOrder(argv: string[], pairs: Array<[string, string]>): void {
  const at = pairs.map(([flag, value]) => {
    const i = argv.indexOf(flag);
    expect(i, `${flag} in: ${argv.join(" ")}`).toBeGreaterThanOrEqual(0);
    expect(argv.lastIndexOf(flag), `${flag} once in: ${argv.join(" ")}`).toBe(i);
    expect(argv[i + 1], `the value after ${flag} in: ${argv.join(" ")}`).toBe(value);
    return i;
  });
  expect(at, `flag order in: ${argv.join(" ")}`).toEqual([...at].sort((a, b) => a - b));
}

describe("launcher - flags", () => {
  it("expectFlagsInOrder fails on a value before its flag, a swapped order, a repeated flag", () => {
    expect(() => expectFlagsInOrder(["prod", "--worker-name"], [["--worker-name", "prod"]])).toThrow(/value after --worker-name/);
    expect(() => expectFlagsInOrder(["--b", "2", "--a", "1"], [["--a", "1"], ["--b", "2"]])).toThrow(/flag order/);
    expect(() => expectFlagsInOrder(["--a", "1", "--a", "1"], [["--a", "1"]])).toThrow(/--a once/);
    expectFlagsInOrder(["--a", "1", "--x", "--b", "2"], [["--a", "1"], ["--b", "2"]]);
  });

  it("parses the seed's deploy flags and passes them on consistently", () => {
    const cli = parseLauncherCli(
      ["--context-worker-count", "2", "--generate-worker-count", "3", "--worker-name", "prod", "--initialize-request-plane", "--request-plane-uri", "10.0.0.5:4333", "--threads", "2"],
      modelDir,
    );
    expect(cli).toMatchObject({ contextWorkers: 2, generateWorkers: 3, namespace: "prod", initializeRequestPlane: true, requestPlaneUri: "nats://10.0.0.5:4333" });
    const worker = workerArgv(cli, cli.requestPlaneUri);
    expectFlagsInOrder(worker, [["--worker-name", "prod"], ["--request-plane-uri", "nats://10.0.0.5:4333"], ["--model-dir", modelDir], ["--threads", "2"]]);
    expect(parseWorkerCli(worker, "/elsewhere")).toMatchObject({ namespace: "prod", requestPlaneUri: "nats://10.0.0.5:4333", executor: { modelDir, threads: 2 } });
    expectFlagsInOrder(apiArgv(cli, cli.requestPlaneUri), [
      ["--tokenizer", modelDir],
      ["--request-plane-uri", "nats://10.0.0.5:4333"],
      ["--api-server-port", "8000"],
      ["--worker-name", "prod"],
    ]);
  });

  it("passes the direct data path's flags to the api and every worker", () => {
    const cli = parseLauncherCli(["--direct-data-path", "off", "--context-worker-count", "1"], modelDir);
    for (const argv of [workerArgv(cli, cli.requestPlaneUri), prefillArgv(cli, cli.requestPlaneUri), apiArgv(cli, cli.requestPlaneUri)]) {
      expectFlagsInOrder(argv, [["--direct-data-path", "off"]]);
    }
    expect(parseWorkerCli(workerArgv(cli, cli.requestPlaneUri), modelDir).directLink).toEqual({ enabled: false });
    const remote = parseLauncherCli(["--direct-data-path-host", "0.0.0.0", "--advertise-host", "10.0.0.9"], modelDir);
    expect(parseWorkerCli(workerArgv(remote, remote.requestPlaneUri), modelDir).directLink).toEqual({ enabled: true, bindHost: "0.0.0.0", advertiseHost: "10.0.0.9" });
    expectFlagsInOrder(apiArgv(parseLauncherCli([], modelDir), "nats://127.0.0.1:4222"), [["--direct-data-path", "on"]]);
  });

  it("passes the api's router and parser flags on, checked against the api's own values", () => {
    const cli = parseLauncherCli(["--router-mode", "kv", "--reasoning-parser", "none", "--tool-call-parser", "hermes"], modelDir);
    expectFlagsInOrder(apiArgv(cli, cli.requestPlaneUri), [["--router-mode", "kv"], ["--reasoning-parser", "none"], ["--tool-call-parser", "hermes"]]);
    const plain = apiArgv(parseLauncherCli([], modelDir), "nats://127.0.0.1:4222");
    for (const flag of ["--router-mode", "--reasoning-parser", "--tool-call-parser"]) expect(plain).not.toContain(flag); // unset: the api's defaults
    expect(() => parseLauncherCli(["--reasoning-parser", "xml"], modelDir)).toThrow(/--reasoning-parser must be one of auto, none, think, got xml/);
    expect(() => parseLauncherCli(["--tool-call-parser", "mistral"], modelDir)).toThrow(/--tool-call-parser must be one of auto, none, llama3_json, hermes, got mistral/);
  });

  it("refuses bad values with a usage error", () => {
    expect(() => parseLauncherCli(["--generate-worker-count", "-1"], modelDir)).toThrow(/generate-worker-count/);
    expect(() => parseLauncherCli(["--no-api", "--context-worker-count", "0", "--generate-worker-count", "0"], modelDir)).toThrow(/nothing to run/);
    expect(() => parseLauncherCli(["--in-process", "--generate-worker-count", "0"], modelDir)).toThrow(/in-process/);
    expect(() => parseLauncherCli(["--initialize-request-plane", "--request-plane-uri", "a:4222,b:4222"], modelDir)).toThrow(/NATS cluster/);
    expect(() => parseLauncherCli(["--context-worker-count", "-1"], modelDir)).toThrow(/context-worker-count/);
    expect(() => parseLauncherCli(["--bogus"], modelDir)).toThrow(/bogus/);
    expect(() => parseLauncherCli(["--in-process", "--initialize-request-plane"], modelDir)).toThrow(/in-process/);
    expect(() => parseLauncherCli(["--prefill-env", "no-equals"], modelDir)).toThrow(/KEY=VALUE/);
  });

  it("runs one role per host for multi-host deployments (workers only, KV addresses passed to prefill workers)", () => {
    const cli = parseLauncherCli(
      ["--no-api", "--context-worker-count", "2", "--generate-worker-count", "0", "--request-plane-uri", "nats://10.0.0.1:4222,nats://10.0.0.2:4222",
        "--kv-host", "0.0.0.0", "--kv-advertise-host", "10.0.0.7", "--kv-offer-ttl-ms", "5000", "--kv-port", "7000"],
      modelDir,
    );
    expect(cli).toMatchObject({ noApi: true, contextWorkers: 2, generateWorkers: 0, requestPlaneUri: "nats://10.0.0.1:4222,nats://10.0.0.2:4222" });
    const kvFlags = (port: string): Array<[string, string]> => [
      ["--request-plane-uri", "nats://10.0.0.1:4222,nats://10.0.0.2:4222"],
      ["--kv-host", "0.0.0.0"],
      ["--kv-advertise-host", "10.0.0.7"],
      ["--kv-port", port],
      ["--kv-offer-ttl-ms", "5000"],
    ];
    expectFlagsInOrder(prefillArgv(cli, cli.requestPlaneUri, 0), kvFlags("7000"));
    expectFlagsInOrder(prefillArgv(cli, cli.requestPlaneUri, 1), kvFlags("7001"));
    expect(() => parseLauncherCli(["--kv-port", "65535", "--context-worker-count", "2"], modelDir)).toThrow(/kv-port/);
    expect(workerArgv(cli, cli.requestPlaneUri)).not.toContain("--kv-host"); // decode workers offer no KV
  });

  it("passes --executor and --device to prefill and decode workers; a bad value is one line before anything starts", () => {
    const cli = parseLauncherCli(["--executor", "cuda", "--device", "2", "--context-worker-count", "1"], modelDir);
    expect(cli.executor).toMatchObject({ executor: "cuda", deviceId: 2 });
    for (const argv of [workerArgv(cli, cli.requestPlaneUri), prefillArgv(cli, cli.requestPlaneUri)]) {
      expect(argv.join(" ")).toContain("--executor cuda --device 2");
    }
    expect(workerArgv(parseLauncherCli([], modelDir), "nats://127.0.0.1:4222")).not.toContain("--executor"); // the workers' default
    // --kv-host-cache-gb goes to every worker, prefill and decode.
    const tiered = parseLauncherCli(["--kv-host-cache-gb", "2", "--context-worker-count", "1"], modelDir);
    for (const argv of [workerArgv(tiered, tiered.requestPlaneUri), prefillArgv(tiered, tiered.requestPlaneUri)]) {
      expect(argv.join(" ")).toContain("--kv-host-cache-gb 2");
    }
    expect(workerArgv(parseLauncherCli([], modelDir), "nats://127.0.0.1:4222")).not.toContain("--kv-host-cache-gb");
    expect(() => parseLauncherCli(["--executor", "foo"], modelDir)).toThrow(/^--executor must be one of reference, cuda, got foo$/);
    expect(() => parseLauncherCli(["--executor", "cuda", "--device", "-1"], modelDir)).toThrow(/^--device must be an integer >= 0, got -1$/);
  });

  it("a worker or launcher given a bad executor flag exits 2, its first stderr line naming the rule, and starts nothing", () => {
    const cases: Array<[string, string[], string]> = [
      ["decode", ["--executor", "foo", "--request-plane-uri", "127.0.0.1:1"], "--executor must be one of reference, cuda, got foo"],
      ["prefill", ["--executor", "cuda", "--device", "-1", "--request-plane-uri", "127.0.0.1:1"], "--device must be an integer >= 0, got -1"],
      ["launcher", ["--device", "1", "--initialize-request-plane"], "--device 1 needs --executor cuda: the reference executor runs on the CPU"],
      ["launcher", ["--decode-devices", "1", "--initialize-request-plane"], "--decode-devices needs --executor cuda: the reference executor runs on the CPU"],
      ["launcher", ["--executor", "cuda", "--prefill-devices", "0,one", "--initialize-request-plane"], "--prefill-devices takes comma-separated GPU ordinals (integers >= 0), got 0,one"],
      ["launcher", ["--executor", "cuda", "--gpu-memory-fraction", "1.5", "--initialize-request-plane"], "--gpu-memory-fraction must be a number in (0, 1], got 1.5"],
      ["decode", ["--gpu-memory-fraction", "0.5", "--request-plane-uri", "127.0.0.1:1"], "--gpu-memory-fraction needs --executor cuda: it sizes a KV pool in GPU memory"],
      ["decode", ["--kv-host-cache-gb", "-1", "--request-plane-uri", "127.0.0.1:1"], "--kv-host-cache-gb must be a number of GiB >= 0, got -1"],
      ["prefill", ["--kv-host-cache-gb", "lots", "--request-plane-uri", "127.0.0.1:1"], "--kv-host-cache-gb must be a number of GiB >= 0, got lots"],
      ["launcher", ["--kv-host-cache-gb", "-0.5", "--initialize-request-plane"], "--kv-host-cache-gb must be a number of GiB >= 0, got -0.5"],
    ];
    for (const [app, args, line] of cases) {
      const [cmd, ...argv] = appArgv(app, args);
      const r = spawnSync(cmd, argv, { cwd: repoRoot, encoding: "utf8", timeout: 30_000 });
      expect(r.status, `${app}: ${r.stderr}`).toBe(2);
      expect(r.stderr.split("\n")[0]).toBe(line);
      expect(r.stdout).toBe(""); // no ready line, no nats-server, no worker
    }
  });

  it("takes an external NATS's credentials and TLS files for every role; with its own nats-server it writes the api's account instead", () => {
    const dir = mkdtempSync(join(tmpdir(), "launcher-creds-"));
    try {
      const creds = join(dir, "nats.env");
      writeFileSync(creds, "TRTD_NATS_USER=trtd\nTRTD_NATS_PASS=pw\n", { mode: 0o600 });
      const ca = join(dir, "ca.pem");
      writeFileSync(ca, "a CA");
      const cli = parseLauncherCli(["--request-plane-uri", "10.0.0.5:4222", "--request-plane-credentials", creds, "--request-plane-tls-ca", ca], modelDir);
      expect(cli.requestPlaneAuth).toEqual({ TRTD_NATS_USER: "trtd", TRTD_NATS_PASS: "pw", TRTD_NATS_TLS_CA_FILE: ca });
      expect(cli.requestPlaneCredentialsFile).toBeUndefined();
      // secrets never reach a child's argv
      expect([...workerArgv(cli, cli.requestPlaneUri), ...prefillArgv(cli, cli.requestPlaneUri), ...apiArgv(cli, cli.requestPlaneUri)].join(" ")).not.toMatch(/pw|nats\.env/);
      const own = parseLauncherCli(["--initialize-request-plane", "--request-plane-credentials", join(dir, "out.env")], modelDir);
      expect(own).toMatchObject({ requestPlaneCredentialsFile: join(dir, "out.env") });
      expect(own.requestPlaneAuth).toBeUndefined();
      const both = join(dir, "both.env");
      writeFileSync(both, "TRTD_NATS_USER=trtd\nTRTD_NATS_PASS=pw\nTRTD_NATS_TOKEN=t\n", { mode: 0o600 });
      expect(() => parseLauncherCli(["--request-plane-credentials", both], modelDir)).toThrow(`--request-plane-credentials ${both}: give one way to authenticate to NATS, not user and password and a token`);
      expect(() => parseLauncherCli(["--request-plane-tls-cert", ca], modelDir)).toThrow(/a TLS client certificate goes with its key/);
      expect(() => parseLauncherCli(["--initialize-request-plane", "--request-plane-tls-ca", ca], modelDir)).toThrow("--request-plane-tls-ca is for an external NATS: the nats-server --initialize-request-plane starts has no TLS");
      expect(() => parseLauncherCli(["--in-process", "--request-plane-credentials", creds], modelDir)).toThrow(/--in-process has no request plane to authenticate to/);
      expect(() => parseLauncherCli(["--request-plane-credentials", creds, "--request-plane-tls-ca", join(dir, "none.pem")], modelDir)).toThrow(`--request-plane-tls-ca ${join(dir, "none.pem")}: no such file`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a launcher given a missing credentials file exits 2, its first stderr line naming it, and starts nothing", () => {
    const [cmd, ...argv] = appArgv("launcher", ["--request-plane-credentials", "/nonexistent/nats.env"]);
    const r = spawnSync(cmd, argv, { cwd: repoRoot, encoding: "utf8", timeout: 30_000 });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe("--request-plane-credentials /nonexistent/nats.env: no such file");
    expect(r.stdout).toBe("");
  });

  it("validates every flag before it starts anything: a bad name, URI or model directory is one line naming the rule, exit 2", async () => {
    const natsPort = await freePort();
    const nameRule = 'invalid namespace "dA": use 1-64 chars of lowercase [a-z0-9-_]';
    const cases: Array<[string, string[], string]> = [
      ["launcher", ["--worker-name", "dA", "--initialize-request-plane", "--request-plane-uri", `127.0.0.1:${natsPort}`], `--worker-name: ${nameRule}`],
      ["decode", ["--worker-name", "dA", "--request-plane-uri", "127.0.0.1:1"], `--worker-name: ${nameRule}`],
      ["api", ["--worker-name", "dA", "--request-plane-uri", "127.0.0.1:1"], `--worker-name: ${nameRule}`],
      ["launcher", ["--request-plane-uri", "127.0.0.1:99999", "--initialize-request-plane"], "--request-plane-uri takes HOST:PORT or nats://HOST:PORT (tls, ws, wss too; a port 1-65535), comma-separated for a cluster, got 127.0.0.1:99999"],
      ["launcher", ["--request-plane-uri", "nats://a:4222,http://b:4222"], "--request-plane-uri takes HOST:PORT or nats://HOST:PORT (tls, ws, wss too; a port 1-65535), comma-separated for a cluster, got http://b:4222"],
      ["launcher", ["--model-dir", "/nonexistent/model", "--initialize-request-plane"], "--model-dir /nonexistent/model has no config.json: give a Hugging Face model directory (npm start makes models/tiny)"],
      ["launcher", ["--use-running-request-plane"], "--use-running-request-plane chooses between a running NATS and starting one: it needs --initialize-request-plane"],
      ["launcher", ["--api-heap-mb", "8", "--initialize-request-plane", "--request-plane-uri", `127.0.0.1:${natsPort}`], "--api-heap-mb must be 0 (V8's default) or at least 64 (MB), got 8"],
      ["launcher", ["--api-liveness-timeout-ms", "500", "--initialize-request-plane", "--request-plane-uri", `127.0.0.1:${natsPort}`], "--api-liveness-timeout-ms must be 0 (off) or at least 2000 (two probes), got 500"],
    ];
    for (const [app, args, line] of cases) {
      const [cmd, ...argv] = appArgv(app, args);
      const r = spawnSync(cmd, argv, { cwd: repoRoot, encoding: "utf8", timeout: 30_000 });
      expect(r.status, `${app} ${args.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr.split("\n")[0]).toBe(line);
      expect(r.stderr).not.toMatch(/InvalidNameError|nats-server \S+ started|\n\s+at /); // no stack trace, nothing started
      expect(r.stdout).toBe("");
    }
    expect(await probeNatsServer("127.0.0.1", natsPort)).toBeUndefined(); // the first case started no nats-server
  }, 120_000);

  it("places workers on GPUs by role (--prefill-devices/--decode-devices: worker i gets LIST[i % length]) and each worker parses what it is given", () => {
    const uri = "nats://127.0.0.1:4222";
    // Two GPUs: prefill on 0, decode on 1; one worker per GPU keeps the KV block count.
    const two = parseLauncherCli(["--executor", "cuda", "--prefill-devices", "0", "--decode-devices", "1"], modelDir);
    const p0 = parseWorkerCli(prefillArgv(two, uri, 0), modelDir).executor;
    const d0 = parseWorkerCli(workerArgv(two, uri, "decode", 0), modelDir).executor;
    expect(p0).toMatchObject({ executor: "cuda", deviceId: 0, kvBlockCount: 2048 });
    expect(d0).toMatchObject({ executor: "cuda", deviceId: 1, kvBlockCount: 2048 });
    expect(p0.gpuMemoryFraction).toBeUndefined();
    expect(d0.gpuMemoryFraction).toBeUndefined();

    // Round robin over the lists; three decode workers share GPU 2 and split 0.9 of it (0.3 each).
    const many = parseLauncherCli(
      ["--executor", "cuda", "--context-worker-count", "3", "--generate-worker-count", "3", "--prefill-devices", "0, 1", "--decode-devices", "2"],
      modelDir,
    );
    expect([0, 1, 2].map((i) => parseWorkerCli(prefillArgv(many, uri, i), modelDir).executor.deviceId)).toEqual([0, 1, 0]);
    expect([0, 1, 2].map((i) => parseWorkerCli(workerArgv(many, uri, "decode", i), modelDir).executor)).toEqual(
      Array(3).fill(expect.objectContaining({ deviceId: 2, gpuMemoryFraction: 0.3, kvBlockCount: 0 })),
    );
    expect(parseWorkerCli(prefillArgv(many, uri, 0), modelDir).executor.gpuMemoryFraction).toBe(0.45); // prefill 0 and 2 share GPU 0

    // One GPU (the default, --device): both roles on it, in separate processes, 0.45 of its memory each.
    const one = parseLauncherCli(["--executor", "cuda", "--device", "3"], modelDir);
    for (const argv of [prefillArgv(one, uri, 0), workerArgv(one, uri, "decode", 0)]) {
      expect(argv.join(" ")).toContain("--executor cuda --device 3");
      expect(argv.join(" ")).toContain("--gpu-memory-fraction 0.45");
      expect(argv).not.toContain("--kv-block-count");
    }
    // An explicit fraction applies to every worker; an explicit block count turns the default split off.
    const explicit = parseLauncherCli(["--executor", "cuda", "--gpu-memory-fraction", "0.2", "--prefill-devices", "0", "--decode-devices", "1"], modelDir);
    expect(parseWorkerCli(workerArgv(explicit, uri, "decode", 0), modelDir).executor).toMatchObject({ deviceId: 1, gpuMemoryFraction: 0.2, kvBlockCount: 0 });
    const blocks = parseLauncherCli(["--executor", "cuda", "--kv-block-count", "512"], modelDir);
    expect(parseWorkerCli(prefillArgv(blocks, uri, 0), modelDir).executor).toMatchObject({ deviceId: 0, kvBlockCount: 512 });
    expect(prefillArgv(blocks, uri, 0)).not.toContain("--gpu-memory-fraction");

    // The reference executor: no placement, the argv as before.
    const cpu = parseLauncherCli(["--context-worker-count", "2"], modelDir);
    expect(cpu.devices).toBeUndefined();
    expect(prefillArgv(cpu, uri, 1)).not.toContain("--device");
  });

  it("refuses bad GPU placement or memory flags with one line naming the rule", () => {
    const cases: Array<[string[], string]> = [
      [["--prefill-devices", "0"], "--prefill-devices needs --executor cuda: the reference executor runs on the CPU"],
      [["--executor", "reference", "--decode-devices", "1"], "--decode-devices needs --executor cuda: the reference executor runs on the CPU"],
      [["--executor", "cuda", "--decode-devices", "-1"], "--decode-devices takes comma-separated GPU ordinals (integers >= 0), got -1"],
      [["--executor", "cuda", "--prefill-devices", "0,,1"], "--prefill-devices takes comma-separated GPU ordinals (integers >= 0), got 0,,1"],
      [["--executor", "cuda", "--prefill-devices", "1.5"], "--prefill-devices takes comma-separated GPU ordinals (integers >= 0), got 1.5"],
      [["--executor", "cuda", "--decode-devices", ""], "--decode-devices takes comma-separated GPU ordinals (integers >= 0), got "],
      [["--executor", "cuda", "--gpu-memory-fraction", "0"], "--gpu-memory-fraction must be a number in (0, 1], got 0"],
      [["--executor", "cuda", "--gpu-memory-fraction", "abc"], "--gpu-memory-fraction must be a number in (0, 1], got abc"],
      [["--gpu-memory-fraction", "0.5"], "--gpu-memory-fraction needs --executor cuda: it sizes a KV pool in GPU memory"],
      [["--executor", "cuda", "--gpu-memory-fraction", "0.5", "--kv-block-count", "64"], "--gpu-memory-fraction sizes the KV pool: give it or --kv-block-count, not both"],
    ];
    for (const [argv, line] of cases) {
      let message = "";
      try {
        parseLauncherCli(argv, modelDir);
      } catch (err) {
        expect((err as Error).name, argv.join(" ")).toBe("UsageError");
        message = (err as Error).message;
      }
      expect(message, argv.join(" ")).toBe(line);
    }
  });

  it("takes environment per worker role", () => {
    const cli = parseLauncherCli(["--prefill-env", "TRTD_TRTLLM_DEVICE_ID=0", "--decode-env", "TRTD_TRTLLM_DEVICE_ID=1", "--decode-env", "X=a=b"], modelDir);
    expect(cli.roleEnv).toEqual({ prefill: { TRTD_TRTLLM_DEVICE_ID: "0" }, decode: { TRTD_TRTLLM_DEVICE_ID: "1", X: "a=b" } });
  });

  it("wedged-child bounds: defaults, flags, 0 = off; --stall-timeout-ms reaches every worker", () => {
    const d = parseLauncherCli([], modelDir);
    expect(d.wedged).toEqual({ livenessTimeoutMs: 10_000, stalledRestartMs: 10_000, startupTimeoutMs: 180_000, apiLivenessTimeoutMs: 10_000, stopGraceMs: 2000 });
    // The startup bound follows --ready-timeout-ms unless given: a start bring-up accepts is accepted on a restart.
    expect(parseLauncherCli(["--ready-timeout-ms", "300000"], modelDir).wedged.startupTimeoutMs).toBe(300_000);
    expect(parseLauncherCli(["--ready-timeout-ms", "300000", "--startup-timeout-ms", "0"], modelDir).wedged.startupTimeoutMs).toBe(0);
    expect(parseLauncherCli(["--api-liveness-timeout-ms", "0"], modelDir).wedged.apiLivenessTimeoutMs).toBe(0);
    expect(parseLauncherCli(["--api-liveness-timeout-ms", "2000"], modelDir).wedged.apiLivenessTimeoutMs).toBe(2000);
    expect(workerArgv(d, d.requestPlaneUri)).not.toContain("--stall-timeout-ms");
    const cli = parseLauncherCli(["--stall-timeout-ms", "1500", "--stalled-restart-ms", "0", "--worker-liveness-timeout-ms", "4000"], modelDir);
    expect(cli.wedged).toMatchObject({ livenessTimeoutMs: 4000, stalledRestartMs: 0 });
    expectFlagsInOrder(workerArgv(cli, cli.requestPlaneUri, "decode", 0), [["--stall-timeout-ms", "1500"]]);
    expectFlagsInOrder(prefillArgv(cli, cli.requestPlaneUri, 0), [["--stall-timeout-ms", "1500"]]);
    expect(parseWorkerCli(workerArgv(cli, cli.requestPlaneUri), modelDir).stallTimeoutMs).toBe(1500);
    expect(() => parseLauncherCli(["--worker-liveness-timeout-ms", "-1"], modelDir)).toThrow(/worker-liveness-timeout-ms/);
    expect(() => parseLauncherCli(["--api-liveness-timeout-ms", "1999"], modelDir)).toThrow("--api-liveness-timeout-ms must be 0 (off) or at least 2000 (two probes), got 1999");
    expect(() => parseLauncherCli(["--startup-timeout-ms", "soon"], modelDir)).toThrow("--startup-timeout-ms must be an integer >= 0, got soon");
  });

  it("V8 heap bounds: the api's by default, the workers' only when asked; 0 = V8's default; checked before anything starts", () => {
    const d = parseLauncherCli([], modelDir);
    expect(d).toMatchObject({ apiHeapMb: DEFAULT_API_HEAP_MB, workerHeapMb: DEFAULT_WORKER_HEAP_MB });
    expect(DEFAULT_API_HEAP_MB).toBeGreaterThan(0);
    expect(heapNodeArgs(d.apiHeapMb)).toEqual([`--max-old-space-size=${DEFAULT_API_HEAP_MB}`]);
    expect(heapNodeArgs(d.workerHeapMb)).toEqual([]);
    const set = parseLauncherCli(["--api-heap-mb", "0", "--worker-heap-mb", "1024"], modelDir);
    expect(heapNodeArgs(set.apiHeapMb)).toEqual([]);
    expect(heapNodeArgs(set.workerHeapMb)).toEqual(["--max-old-space-size=1024"]);
    for (const [argv, line] of [
      [["--api-heap-mb", "32"], "--api-heap-mb must be 0 (V8's default) or at least 64 (MB), got 32"],
      [["--worker-heap-mb", "-5"], "--worker-heap-mb must be an integer >= 0, got -5"],
      [["--api-heap-mb", "1.5"], "--api-heap-mb must be an integer >= 0, got 1.5"],
      [["--in-process", "--api-heap-mb", "256"], "--api-heap-mb bounds a child process's heap: with --in-process run node --max-old-space-size=N yourself"],
    ] as Array<[string[], string]>) {
      expect(() => parseLauncherCli(argv, modelDir), argv.join(" ")).toThrow(line);
    }
    expect(parseLauncherCli(["--in-process"], modelDir).apiHeapMb).toBe(DEFAULT_API_HEAP_MB); // the default is no mistake there
  });
});

describe("launcher - the flags it shares with its children", () => {
  it("are parsed by apps/common's one parser: a mistake reads the same in the launcher as in a worker", () => {
    const message = (f: () => unknown) => thrownMessage(f, UsageError);
    const shared = [["--worker-name", "dA"], ["--request-plane-uri", "http://h:1"], ["--stall-timeout-ms", "0"], ["--kv-offer-ttl-ms", "x"], ["--threads", "0"], ["--executor", "tpu"], ["--bogus"]];
    for (const argv of shared) expect(message(() => parseLauncherCli([...argv, "--model-dir", modelDir], modelDir)), argv.join(" ")).toBe(message(() => parseWorkerCli(argv, modelDir)));
    // The api's port, and the launcher's base KV port (worker i listens on N+i, so 0 is not one).
    expect(message(() => parseLauncherCli(["--api-server-port", "65536"], modelDir))).toBe("--api-server-port must be <= 65535, got 65536");
    expect(message(() => parseLauncherCli(["--kv-port", "0"], modelDir))).toBe("--kv-port must be an integer >= 1, got 0");
  });
});

describe("launcher - without nats-server", () => {
  it("runs every part in one process on the in-process request plane, says so, and serves", async () => {
    const d = await startApp(
      "launcher",
      ["--initialize-request-plane", "--in-process-fallback", "--api-server-port", "0", "--model-dir", modelDir, "--threads", "1", "--disagg-min-prompt-tokens", "1"],
      LAUNCHER_READY,
      60_000,
      { NATS_SERVER_BIN: "/nonexistent/nats-server" },
    );
    try {
      const lines = d.output.join("\n");
      expect(lines).toMatch(/nats-server is not installed.*in this process on the in-process request plane/);
      expect(parseLauncherReadyLine(d.output.find((l) => LAUNCHER_READY.test(l))!)?.where).toBe("in one process (in-process request plane)");
      const r = await fetch(`${d.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "Hello from one process" }], max_tokens: 5, temperature: 0 }),
      });
      expect(r.status).toBe(200);
      const j = (await r.json()) as { usage: { completion_tokens: number } };
      expect(j.usage.completion_tokens).toBe(5);
      const metrics = await (await fetch(`${d.url}/metrics`)).text();
      expect(metrics).toMatch(/trtd_routed_requests_total\{mode="disaggregated"\} 1/);
    } finally {
      // SIGTERM, SIGKILL after 20 s: a clean stop exits 0.
      await d.stop(20_000);
      expect((await d.exited).code).toBe(0);
    }
  }, 90_000);
});

describe("launcher - stop order", () => {
  it("Ctrl-C (SIGINT to the launcher): the api and workers stop first, nats-server stays up while they drain and goes last", async () => {
    const natsPort = await freePort();
    const d = await startApp(
      "launcher",
      ["--context-worker-count", "1", "--generate-worker-count", "1", "--worker-name", "order", "--initialize-request-plane", "--use-running-request-plane", "--request-plane-uri", `127.0.0.1:${natsPort}`, "--api-server-port", "0", "--model-dir", modelDir, "--threads", "1"],
      LAUNCHER_READY,
    );
    try {
      const pidOf = (re: RegExp) => Number(d.output.map((l) => re.exec(l)?.[1]).find((p) => p !== undefined));
      const nats = pidOf(/nats-server \S+ started \(pid (\d+)/);
      const workers = [launcherChildPids(d.output, "decode-0")[0]!, launcherChildPids(d.output, "prefill-0")[0]!];
      for (const p of [nats, ...workers]) expect(isAlive(p), `pid ${p} alive`).toBe(true);
      // The sample in which each process was first seen gone, sampled every 5 ms from the signal on (bounded by
      // eventually's 60 s). Each sample looks at the workers first and nats-server last, so a sample that finds a
      // worker alive and nats-server already gone is a violation; one that finds both gone cannot order them.
      const goneIn = new Map<number, number>();
      const goneMs = new Map<number, number>();
      const t0 = Date.now();
      let sample = 0;
      d.kill("SIGINT");
      await eventually(async () => {
        sample++;
        for (const p of [...workers, nats]) {
          if (!goneIn.has(p) && !isAlive(p)) {
            goneIn.set(p, sample);
            goneMs.set(p, Date.now() - t0);
          }
        }
        return goneIn.size === 3;
      }, 60_000, "the workers and nats-server to stop", 5);
      // Every sample that saw a worker alive saw nats-server alive too.
      const lastWorker = workers.reduce((a, p) => (goneIn.get(p)! > goneIn.get(a)! ? p : a));
      expect(goneIn.get(nats)!, `nats-server first seen gone in sample ${goneIn.get(nats)} (${goneMs.get(nats)} ms), the last worker in sample ${goneIn.get(lastWorker)} (${goneMs.get(lastWorker)} ms)`).toBeGreaterThanOrEqual(goneIn.get(lastWorker)!);
      expect((await d.exited).code).toBe(0);
    } finally {
      await d.stop();
    }
  }, 120_000);
});

describe("launcher - a NATS already running at --request-plane-uri (npm start's --use-running-request-plane)", () => {
  it("is used, not started again, and not stopped by the launcher", async () => {
    const nats = await startNatsServer();
    try {
      const d = await startApp(
        "launcher",
        ["--context-worker-count", "0", "--generate-worker-count", "1", "--worker-name", "reuse", "--initialize-request-plane", "--use-running-request-plane", "--request-plane-uri", `127.0.0.1:${nats.port}`, "--api-server-port", "0", "--model-dir", modelDir, "--threads", "1"],
        LAUNCHER_READY,
      );
      try {
        expect(d.output.join("\n")).toMatch(new RegExp(`a NATS server \\(\\S+\\) already answers at nats://127\\.0\\.0\\.1:${nats.port}: using it`));
        expect(d.output.join("\n")).not.toMatch(/nats-server \S+ started/);
        const r = await fetch(`${d.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "tiny", prompt: "Hi", max_tokens: 3 }) });
        expect(r.status).toBe(200);
      } finally {
        await d.stop();
      }
      expect((await d.exited).code).toBe(0);
      expect(isAlive(nats.pid)).toBe(true);
      expect(await probeNatsServer("127.0.0.1", nats.port)).toBeDefined();
    } finally {
      await nats.stop();
    }
  }, 120_000);

  it("one that refuses anonymous clients is one line before anything starts", async () => {
    const nats = await startNatsServer({ users: [{ user: "someone", password: "secret-password" }] });
    try {
      const [cmd, ...argv] = appArgv("launcher", ["--initialize-request-plane", "--use-running-request-plane", "--request-plane-uri", `127.0.0.1:${nats.port}`]);
      const r = spawnSync(cmd, argv, { cwd: repoRoot, encoding: "utf8", timeout: 30_000 });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trim().split("\n")).toEqual([
        `launcher: the NATS server at nats://127.0.0.1:${nats.port} requires credentials: drop --initialize-request-plane and pass --request-plane-credentials / --request-plane-tls-* for it`,
      ]);
      expect(r.stdout).toBe("");
    } finally {
      await nats.stop();
    }
  }, 60_000);
});

describe("launcher - supervision", () => {
  it("a decode worker killed mid-stream: the stream migrates to the restarted worker or ends with an error event; the launcher restarts the worker, service resumes", async () => {
    const natsPort = await freePort();
    const d = await startApp(
      "launcher",
      ["--context-worker-count", "0", "--generate-worker-count", "1", "--worker-name", "crash", "--initialize-request-plane", "--request-plane-uri", `127.0.0.1:${natsPort}`, "--api-server-port", "0", "--model-dir", modelDir, "--threads", "1"],
      LAUNCHER_READY,
    );
    try {
      const decodePids = () => launcherChildPids(d.output, "decode-0");
      const [firstPid] = decodePids();
      expect(firstPid).toBeGreaterThan(0);
      const res = await fetch(`${d.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny", prompt: "A long story:", max_tokens: 1900, temperature: 0.7, seed: 3, stream: true }),
      });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      let text = "";
      while (!text.includes("data: ")) text += new TextDecoder().decode((await reader.read()).value);
      process.kill(firstPid, "SIGKILL");
      // Heartbeats stop (detected after the request plane's 3 missed beats). If the restarted worker is up by
      // then, the stream migrates to it (prompt + tokens so far) and finishes; otherwise it ends with an error event.
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      const migrated = Number(/^trtd_migrated_requests_total (\d+)/m.exec(await (await fetch(`${d.url}/metrics`)).text())?.[1] ?? 0);
      if (migrated === 1) {
        expect(text).toContain('"finish_reason":"length"');
        expect(text).toContain("data: [DONE]");
        expect(text).not.toContain('data: {"error"');
      } else {
        expect(migrated).toBe(0);
        expect(text).toMatch(/data: \{"error":\{"message":"[^"]*","type":"server_error"/);
        expect(text).not.toContain("data: [DONE]");
      }
      // The launcher restarts decode-0 and the deployment serves again.
      await eventually(async () => decodePids().length >= 2, 30_000, "decode-0 to be restarted");
      await eventually(async () => (await fetch(`${d.url}/health`)).ok, 30_000, "the restarted worker to be ready");
      const r = await fetch(`${d.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny", prompt: "Again", max_tokens: 4 }),
      });
      expect(r.status).toBe(200);
      expect(d.output.join("\n")).toMatch(/decode-0 \(pid \d+\) exited unexpectedly \(SIGKILL\)/);
    } finally {
      await d.stop();
    }
    expect(d.proc.exitCode).toBe(0);
  }, 120_000);
});
