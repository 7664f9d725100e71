/**
 * TEST DOUBLE of the trtd launcher, for the experiment driver's tests only. Takes the launcher's flags, checks
 * that the request plane it was given accepts TCP, serves the OpenAI test double on --api-server-host/-port (0 = any),
 * prints the launcher's ready line, and starts one
 * long-lived child process (standing in for a worker) so tests can check the whole process group is stopped.
 * Writes its PID and the child's PID to $BENCH_TEST_PIDS_FILE.
 */
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { parseArgs } from "node:util";
import { launcherReadyLine } from "@trtd/apps-common";
import { startOpenAITestDouble } from "./openai-test-double.js";

const { values } = parseArgs({
  strict: false,
  options: {
    "api-server-port": { type: "string" },
    "api-server-host": { type: "string" },
    "request-plane-uri": { type: "string" },
    "context-worker-count": { type: "string" },
    "generate-worker-count": { type: "string" },
  },
});
const [natsHost, natsPort] = String(values["request-plane-uri"]).split(":");
await new Promise<void>((resolve, reject) => {
  const s = connect(Number(natsPort), natsHost);
  s.once("connect", () => (s.end(), resolve()));
  s.once("error", reject);
});
// Disaggregated "prefill" makes the first token slower here, so the two arrangements differ visibly.
const disagg = Number(values["context-worker-count"]) > 0;
const server = await startOpenAITestDouble({ ttftMs: disagg ? 150 : 10, itlMs: 4, port: Number(values["api-server-port"]), host: String(values["api-server-host"]) });
// In a process group of its own, as the real launcher's supervisor starts workers: a group signal misses it.
const worker = spawn(process.execPath, ["-e", "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"], { stdio: "ignore", detached: true });
// $BENCH_TEST_OVERLAP_FILE: a line per start, "overlap" when a process of an earlier start is still alive.
if (process.env.BENCH_TEST_PIDS_FILE && process.env.BENCH_TEST_OVERLAP_FILE) {
  const earlier = existsSync(process.env.BENCH_TEST_PIDS_FILE) ? readFileSync(process.env.BENCH_TEST_PIDS_FILE, "utf8").trim().split(/\s+/).filter(Boolean).map(Number) : [];
  const alive = earlier.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  appendFileSync(process.env.BENCH_TEST_OVERLAP_FILE, alive.length ? `overlap ${alive.join(" ")}\n` : "alone\n");
}
if (process.env.BENCH_TEST_PIDS_FILE) appendFileSync(process.env.BENCH_TEST_PIDS_FILE, `${process.pid} ${worker.pid}\n`);
// Starts up a little late and prints the real launcher's ready line (its printer; `where` names the double).
await new Promise((r) => setTimeout(r, 200));
const workers = { prefillWorkers: Number(values["context-worker-count"] ?? 1), decodeWorkers: Number(values["generate-worker-count"] ?? 1) };
process.stdout.write(`${launcherReadyLine({ apiUrl: server.baseUrl, model: "test-double", ...workers, where: "launcher TEST DOUBLE" })}\n`);
process.once("SIGTERM", () => {
  // Leaves its "worker" running on purpose (and the worker ignores SIGTERM): the experiment must find and kill it.
  void server.close().then(() => process.exit(0));
});
