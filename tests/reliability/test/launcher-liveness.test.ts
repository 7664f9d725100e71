// What the launcher watches beyond crashes and a worker's health reports that stop: a worker that wedges before its
// first health report (the startup bound), and the api itself (a /health probe); plus the V8 heap bound it gives the
// api. The launcher runs the api (on a fixed port, so a restarted api answers at the same URL) and decode-0, on a
// nats-server the test starts.
// - heap: the api's command line carries --max-old-space-size=<the launcher's default>, the worker's none.
// - startup: decode-0 is SIGKILLed; the launcher restarts it and the test SIGSTOPs the new process as soon as the
//   launcher logs its spawn, before it could report. After --startup-timeout-ms the launcher calls it wedged, kills
//   it (SIGKILL: a stopped process ignores SIGTERM) and starts another, which serves.
// - api: the api is SIGSTOPped; its /health goes unanswered for --api-liveness-timeout-ms, the launcher says so in
//   one line, kills it and starts another on the same port, which serves the same workers.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_API_HEAP_MB, DEFAULT_WORKER_HEAP_MB } from "@trtd/launcher";
import type { NatsServerHandle } from "@trtd/request-plane";
import { freePort } from "@trtd/request-plane/testing";
import { eventually, isAlive, launcherChildPids, launcherSpawnPids, modelDir, startApp, startNats, stopAll, waitForWorkers, type AppProcess } from "./support/processes.js";

const NS = "rel-launcher-liveness";
/** Long enough for a worker's normal start on the busy 2-core VM (tsx, native library, NATS), short for a test. */
const STARTUP_TIMEOUT_MS = 30_000;
const API_LIVENESS_TIMEOUT_MS = 3000;
let nats: NatsServerHandle;
let launcher: AppProcess;
let apiUrl: string;
/** Every PID this file SIGSTOPs: continued in afterAll should a test fail before the launcher killed it. */
const stopped: number[] = [];

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
const has = (pattern: RegExp) => launcher.output.some((l) => pattern.test(l));
/** The launcher's restart line for `name` that follows the line matching `after`. */
const restartAfter = (after: RegExp, name: string) => {
  const i = launcher.output.findIndex((l) => after.test(l));
  return launcher.output.slice(i + 1).find((l) => new RegExp(`restarting ${name} in \\d+ ms \\(restart \\d+ of 3\\)`).test(l));
};

async function completes(url: string): Promise<void> {
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny", prompt: "Still there?", max_tokens: 4, temperature: 0 }),
    signal: AbortSignal.timeout(20_000),
  });
  expect(r.status).toBe(200);
  expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(4);
}

beforeAll(async () => {
  nats = await startNats();
  const port = await freePort();
  launcher = await startApp("launcher", [
    "--context-worker-count", "0", "--generate-worker-count", "1", "--worker-name", NS,
    "--request-plane-uri", nats.uri, "--api-server-port", String(port), "--model-dir", modelDir,
    "--threads", "1", "--max-restarts", "3", "--ready-timeout-ms", "120000",
    "--startup-timeout-ms", String(STARTUP_TIMEOUT_MS), "--api-liveness-timeout-ms", String(API_LIVENESS_TIMEOUT_MS),
  ], { timeoutMs: 120_000 });
  apiUrl = launcher.url;
  expect(apiUrl).toBe(`http://127.0.0.1:${port}`);
}, 150_000);

afterAll(async () => {
  for (const pid of stopped) if (isAlive(pid)) process.kill(pid, "SIGCONT");
  await launcher?.stop(30_000);
  await stopAll();
  await nats?.stop();
});

describe("the launcher's watch over its children", () => {
  it("bounds the api's V8 heap by default (--api-heap-mb) and leaves the workers' at V8's default (--worker-heap-mb 0)", () => {
    expect(DEFAULT_WORKER_HEAP_MB).toBe(0); // what this test's worker check assumes
    const [api] = launcherSpawnPids(launcher, "api");
    const [decode] = launcherSpawnPids(launcher, "decode-0");
    expect(has(new RegExp(`launcher: api \\(pid ${api}\\) started \\(node --max-old-space-size=${DEFAULT_API_HEAP_MB}\\)$`))).toBe(true);
    expect(cmdline(api)).toContain(`--max-old-space-size=${DEFAULT_API_HEAP_MB}`);
    expect(cmdline(decode).join(" ")).toMatch(/apps\/decode\/src\/main\.ts/); // the worker's own command line...
    expect(cmdline(decode).join(" ")).not.toMatch(/max-old-space-size/); // ...without a bound
  });

  it("a worker that wedges before its first health report is restarted after --startup-timeout-ms", async () => {
    const [first] = launcherChildPids(launcher, "decode-0");
    expect(first).toBeGreaterThan(0);
    const spawnsBefore = launcherSpawnPids(launcher, "decode-0").length;
    process.kill(first, "SIGKILL");
    // The restart's spawn (after a 0.5 s backoff): stop it before it could load, connect and report.
    await eventually(async () => launcherSpawnPids(launcher, "decode-0").length > spawnsBefore, 15_000, "decode-0 restarted", { intervalMs: 5 });
    const wedged = launcherSpawnPids(launcher, "decode-0")[spawnsBefore];
    process.kill(wedged, "SIGSTOP");
    stopped.push(wedged);
    const stoppedAt = performance.now();
    const verdict = new RegExp(`decode-0 \\(pid ${wedged}\\) is wedged: no health report within ${STARTUP_TIMEOUT_MS} ms of its start: the process is stopped or hung; stopping it`);
    await eventually(async () => has(verdict), STARTUP_TIMEOUT_MS + 10_000, "the launcher to call the new decode-0 wedged");
    const verdictMs = performance.now() - stoppedAt;
    expect(verdictMs).toBeGreaterThan(STARTUP_TIMEOUT_MS - 1000); // not before its bound (the spawn came just before the stop)
    expect(launcherChildPids(launcher, "decode-0")).not.toContain(wedged); // it never got to serve
    await eventually(async () => has(new RegExp(`decode-0 \\(pid ${wedged}\\) stopped \\(SIGKILL\\): wedged, no health report within`)), 10_000, "the wedged decode-0 killed");
    expect(isAlive(wedged)).toBe(false);
    expect(restartAfter(verdict, "decode-0")).toBeDefined();
    // A third process serves.
    await eventually(async () => launcherChildPids(launcher, "decode-0").some((p) => p !== first), 60_000, "a new decode-0 serving");
    const served = launcherChildPids(launcher, "decode-0").at(-1)!;
    expect([first, wedged]).not.toContain(served);
    await waitForWorkers(apiUrl, 1, 0, 30_000);
    await completes(apiUrl);
    console.log(`wedged at start: decode-0 pid ${first} killed → pid ${wedged} stopped at spawn, called wedged ${Math.round(verdictMs)} ms later → pid ${served} serves`);
  });

  it("a hung api (SIGSTOP) is found by the /health probe and restarted on the same URL", async () => {
    const [api] = launcherSpawnPids(launcher, "api").slice(-1);
    expect(isAlive(api)).toBe(true);
    expect(has(/ api \(pid \d+\) is wedged/)).toBe(false); // no verdict while it answered
    process.kill(api, "SIGSTOP");
    stopped.push(api);
    const stoppedAt = performance.now();
    const verdict = new RegExp(
      `api \\(pid ${api}\\) is wedged: no answer to GET /health for \\d+ ms \\(bound ${API_LIVENESS_TIMEOUT_MS} ms; \\d+ probes in a row failed, the last: no answer within 1000 ms\\): the process is stopped or hung; stopping it`,
    );
    await eventually(async () => has(verdict), API_LIVENESS_TIMEOUT_MS + 5000, "the launcher to call the api wedged");
    const verdictMs = performance.now() - stoppedAt;
    expect(verdictMs).toBeGreaterThan(API_LIVENESS_TIMEOUT_MS - 1000);
    expect(launcher.output.filter((l) => verdict.test(l))).toHaveLength(1); // one line
    await eventually(async () => has(new RegExp(`api \\(pid ${api}\\) stopped \\(SIGKILL\\): wedged, no answer to GET /health`)), 10_000, "the hung api killed");
    expect(isAlive(api)).toBe(false);
    expect(restartAfter(verdict, "api")).toMatch(/\(restart 1 of 3\)/);
    await eventually(async () => launcherSpawnPids(launcher, "api").length === 2, 10_000, "a new api");
    const [, next] = launcherSpawnPids(launcher, "api");
    // The new api listens on the same port and sees the worker that kept running.
    await waitForWorkers(apiUrl, 1, 0, 60_000);
    await completes(apiUrl);
    expect(isAlive(next)).toBe(true);
    expect(launcher.proc.exitCode).toBeNull(); // the launcher did not give up
    console.log(`hung api: pid ${api} stopped, called wedged ${Math.round(verdictMs)} ms later → pid ${next} serves at ${apiUrl}`);
  });
});
