// Wedged workers (real nats-server, two decode workers, the api): a worker whose engine stops progressing while
// its process stays alive (the reference executor's test hook TRTD_TEST_STALL_EXECUTOR_FILE: while the file
// exists its loop sleeps with work in hand) reports itself stalled within --stall-timeout-ms; the api stops
// routing to it, moves its streams to the other worker (exactly the uninterrupted text) and /health counts it as
// stalled; once it progresses again it is healthy and idle. A worker stopped with SIGSTOP (heartbeats and lease
// stop too) is detected by the request plane's silence bound and lease, and its streams migrate the same way.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsServerHandle } from "@trtd/request-plane";
import { apiArgs, eventually, metricValue, startApp, startNats, stopAll, waitForWorkers, workerArgs, workersIdle, type AppProcess } from "./support/processes.js";
import { prompts, streamCompletion } from "./support/http.js";
import { disturbedStreams, expectStreamsIntact, greedy } from "./support/disturb.js";

const NS = "rel-wedged";
const STALL_TIMEOUT_MS = 1000;
/** Heartbeat 1 s × 3 missed: the request plane's silence bound. */
const SILENCE_BOUND_MS = 3000;
let nats: NatsServerHandle;
let api: AppProcess;
let wedgeable: AppProcess;
let healthy: AppProcess;
let dir: string;
let stallFile: string;

interface Health {
  decodeWorkers: number;
  stalledWorkers: number;
}
const health = async () => (await (await fetch(`${api.url}/health`)).json()) as Health;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "trtd-wedged-"));
  stallFile = join(dir, "stall");
  nats = await startNats();
  const w = () => workerArgs(nats.uri, NS, ["--max-batch-size", "16", "--stall-timeout-ms", String(STALL_TIMEOUT_MS)]);
  [wedgeable, healthy, api] = await Promise.all([
    startApp("decode", w(), { env: { TRTD_TEST_STALL_EXECUTOR_FILE: stallFile } }),
    startApp("decode", w()),
    startApp("api", apiArgs(nats.uri, NS, ["--no-disaggregation"])),
  ]);
  await waitForWorkers(api.url, 2, 0);
});

afterAll(async () => {
  wedgeable?.kill("SIGCONT");
  await stopAll();
  await nats?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});


describe("wedged workers", () => {
  it("an engine that stops progressing (process alive): reported stalled, not routed to, its streams migrate", async () => {
    const run = await disturbedStreams(api.url, () => writeFileSync(stallFile, ""));
    const { results, reference, migrated } = run;
    // Stall bound + the next sample and announcement + a re-prefill on the other worker.
    expectStreamsIntact(run, STALL_TIMEOUT_MS + 2500, { atLength: true });
    expect(migrated).toBeGreaterThan(0);
    expect(wedgeable.output.some((l) => /engine stalled: \d+ running requests and no iteration for \d+ ms/.test(l))).toBe(true);
    // While it is stuck: listed as stalled, not counted as a usable decode worker; new requests go to the other.
    expect(await health()).toMatchObject({ decodeWorkers: 1, stalledWorkers: 1 });
    const r = await streamCompletion(api.url, greedy(prompts(1)[0]));
    expect(r.text).toBe(reference[0].text);
    console.log(`stall: ${migrated} of ${results.length} streams migrated; longest pause ${Math.round(Math.max(...results.map((x) => x.maxGapMs)))} ms`);

    // It recovers: the cancelled requests end, it is healthy and idle again.
    rmSync(stallFile);
    await eventually(async () => {
      const h = await health();
      return h.decodeWorkers === 2 && h.stalledWorkers === 0;
    }, 10_000, "the stalled worker to be healthy again");
    expect(wedgeable.output.some((l) => l.includes("engine progressing again"))).toBe(true);
    await eventually(() => workersIdle(api.url), 10_000, "both workers idle");
  });

  it("a worker stopped with SIGSTOP: silence and lease detect it, its streams migrate; after SIGCONT it serves again", async () => {
    let stoppedAt = 0;
    const run = await disturbedStreams(api.url, () => {
      stoppedAt = performance.now();
      wedgeable.kill("SIGSTOP");
    });
    const { migrated } = run;
    expectStreamsIntact(run, SILENCE_BOUND_MS + 2500);
    expect(migrated).toBeGreaterThan(0);
    // The lease (3 s) drops it from discovery.
    await eventually(async () => (await health()).decodeWorkers === 1, 10_000, "the stopped worker to leave discovery");
    console.log(`SIGSTOP: ${migrated} streams migrated; out of discovery ${Math.round(performance.now() - stoppedAt)} ms after the stop`);
    wedgeable.kill("SIGCONT");
    await waitForWorkers(api.url, 2, 0, 10_000);
    await eventually(() => workersIdle(api.url), 15_000, "both workers idle after SIGCONT");
    expect(healthy.output.join("\n")).not.toMatch(/engine stalled/);
  });
});
