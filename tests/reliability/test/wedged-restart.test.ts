// Wedged workers are restarted by the launcher that owns them (npm start's supervisor), and their requests migrate.
// The launcher runs the api and one decode worker (decode-0, with the reference executor's stall hook); a second
// decode worker, started by the test on the same nats-server, is where streams migrate to. decode-0 reports its
// health to the launcher over IPC every 500 ms: an engine reported stalled for --stalled-restart-ms, or reports that
// stop for --worker-liveness-timeout-ms (SIGSTOP), get it stopped (SIGTERM, SIGKILL after 2 s) and started again.
// Each case: 4 greedy streams (two on each worker), the disturbance once each has 3 chunks; every stream ends with
// exactly the uninterrupted text; the launcher logs why it restarted decode-0; a new decode-0 (another PID) serves,
// the old PID is gone, and both workers end idle.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsServerHandle } from "@trtd/request-plane";
import {
  eventually,
  isAlive,
  launcherChildPids,
  metricValue,
  modelDir,
  startApp,
  startNats,
  stopAll,
  waitForWorkers,
  workerArgs,
  workersIdle,
  type AppProcess,
} from "./support/processes.js";
import { prompts, streamCompletion } from "./support/http.js";
import { disturbedStreams, expectStreamsIntact, greedy } from "./support/disturb.js";

const NS = "rel-wedged-restart";
const STALL_TIMEOUT_MS = 1000;
const STALLED_RESTART_MS = 1500;
const LIVENESS_TIMEOUT_MS = 4000;
/** Heartbeat 1 s × 3 missed: the request plane's silence bound (the api moves a stopped worker's streams). */
const SILENCE_BOUND_MS = 3000;
let nats: NatsServerHandle;
let launcher: AppProcess;
let dir: string;
let stallFile: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "trtd-wedged-restart-"));
  stallFile = join(dir, "stall");
  nats = await startNats();
  [launcher] = await Promise.all([
    startApp("launcher", [
      "--context-worker-count", "0", "--generate-worker-count", "1", "--worker-name", NS,
      "--request-plane-uri", nats.uri, "--api-server-port", "0", "--model-dir", modelDir,
      "--threads", "1", "--max-batch-size", "16", "--max-restarts", "3",
      "--stall-timeout-ms", String(STALL_TIMEOUT_MS), "--stalled-restart-ms", String(STALLED_RESTART_MS),
      "--worker-liveness-timeout-ms", String(LIVENESS_TIMEOUT_MS),
      "--decode-env", `TRTD_TEST_STALL_EXECUTOR_FILE=${stallFile}`,
    ], { timeoutMs: 120_000 }),
    startApp("decode", workerArgs(nats.uri, NS, ["--max-batch-size", "16"])),
  ]);
  await waitForWorkers(launcher.url, 2, 0);
}, 150_000);

afterAll(async () => {
  for (const pid of launcher ? launcherChildPids(launcher, "decode-0") : []) if (isAlive(pid)) process.kill(pid, "SIGCONT");
  await launcher?.stop(30_000);
  await stopAll();
  await nats?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});


/** decode-0 was restarted: a new PID serves, the old one is gone, both workers are listed and end idle. */
async function restarted(oldPid: number): Promise<number> {
  await eventually(async () => launcherChildPids(launcher, "decode-0").length > 0 && launcherChildPids(launcher, "decode-0").at(-1) !== oldPid, 30_000, "a new decode-0");
  const newPid = launcherChildPids(launcher, "decode-0").at(-1)!;
  expect(isAlive(oldPid)).toBe(false);
  await waitForWorkers(launcher.url, 2, 0, 20_000);
  await eventually(() => workersIdle(launcher.url), 15_000, "both workers idle");
  return newPid;
}

describe("wedged workers under the launcher", () => {
  it("an engine that stops progressing: its streams migrate, the launcher restarts the worker after --stalled-restart-ms", async () => {
    const [pid] = launcherChildPids(launcher, "decode-0");
    expect(pid).toBeGreaterThan(0);
    const run = await disturbedStreams(launcher.url, () => writeFileSync(stallFile, ""));
    const { results, reference, migrated } = run;
    expectStreamsIntact(run, STALL_TIMEOUT_MS + 2500, { atLength: true });
    expect(migrated).toBeGreaterThan(0);
    const wedged = new RegExp(`decode-0 \\(pid ${pid}\\) is wedged: its engine reported stalled for \\d+ ms \\(bound ${STALLED_RESTART_MS} ms\\)`);
    await eventually(async () => launcher.output.some((l) => wedged.test(l)), STALL_TIMEOUT_MS + STALLED_RESTART_MS + 5000, "the launcher to call decode-0 wedged");
    rmSync(stallFile); // the restarted worker has the same hook: let it run
    const newPid = await restarted(pid);
    expect(launcher.output.join("\n")).toMatch(new RegExp(`decode-0 \\(pid ${pid}\\) stopped \\([^)]+\\): wedged, its engine reported stalled`));
    expect(launcher.output.join("\n")).toMatch(/restarting decode-0 in \d+ ms \(restart 1 of 3\)/);
    // The new one serves.
    const r = await streamCompletion(launcher.url, greedy(prompts(1)[0]));
    expect(r.text).toBe(reference[0].text);
    console.log(`stall → restart: ${migrated} of ${results.length} streams migrated; decode-0 pid ${pid} → ${newPid}`);
  });

  it("a worker stopped with SIGSTOP: its streams migrate (silence bound), the launcher restarts it after --worker-liveness-timeout-ms", async () => {
    const pid = launcherChildPids(launcher, "decode-0").at(-1)!;
    let stoppedAt = 0;
    const run = await disturbedStreams(launcher.url, () => {
      stoppedAt = performance.now();
      process.kill(pid, "SIGSTOP");
    });
    const { results, migrated } = run;
    expectStreamsIntact(run, SILENCE_BOUND_MS + 2500);
    expect(migrated).toBeGreaterThan(0);
    const wedged = new RegExp(`decode-0 \\(pid ${pid}\\) is wedged: no health report for \\d+ ms \\(bound ${LIVENESS_TIMEOUT_MS} ms\\)`);
    await eventually(async () => launcher.output.some((l) => wedged.test(l)), LIVENESS_TIMEOUT_MS + 5000, "the launcher to call decode-0 wedged");
    const detectedMs = performance.now() - stoppedAt;
    const newPid = await restarted(pid);
    // A stopped process ignores SIGTERM: SIGKILL after the 2 s grace.
    expect(launcher.output.join("\n")).toMatch(new RegExp(`decode-0 \\(pid ${pid}\\) stopped \\(SIGKILL\\): wedged, no health report`));
    expect(launcher.output.join("\n")).toMatch(/restarting decode-0 in \d+ ms \(restart 2 of 3\)/);
    console.log(`SIGSTOP → restart: ${migrated} of ${results.length} streams migrated; wedged verdict ${Math.round(detectedMs)} ms after the stop; pid ${pid} → ${newPid}`);
  });
});
