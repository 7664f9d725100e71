import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isAlive } from "@trtd/process";

const repoRoot = resolve(__dirname, "../../..");
const cli = join(repoRoot, "tools/bench/src/cli.ts");


/** Runs node with args in the repo root (killed after 90 s); its exit code and output. */
async function runNode(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const code = await new Promise<number | null>((res) => {
    const t = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.on("close", (c) => (clearTimeout(t), res(c)));
  });
  return { code, stdout, stderr };
}

describe("experiment driver (against the launcher and OpenAI test doubles, with a real nats-server)", () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-exp-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs both arrangements, writes the results page, JSON and charts, and stops every process it started", async () => {
    // A stand-in model directory: the driver only checks it exists (the overhead measurement is skipped).
    const modelDir = join(dir, "model");
    mkdirSync(modelDir);
    writeFileSync(join(modelDir, "config.json"), "{}");
    const pidsFile = join(dir, "pids");
    const out = join(dir, "out");
    const args = [
      "--import", "tsx", "--conditions=source", cli, "experiment",
      "--launcher", join(repoRoot, "tools/bench/test/launcher-test-double.ts"),
      "--model-dir", modelDir, "--rates", "5,10", "--num-requests", "5", "--input-len", "20", "--output-len", "5",
      "--slo-ttft-ms", "80", "--slo-tpot-ms", "50", "--overhead-reps", "0", "--stop-grace", "1", "--out", out,
    ];
    const { code, stdout, stderr } = await runNode(args, { BENCH_TEST_PIDS_FILE: pidsFile });
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout.trim().split("\n").pop()!);
    // The disaggregated double answers its first token after 150 ms (> 80 ms SLO), the aggregated one after 10.
    expect(result.goodput.agg.saturated).toBe(true);
    expect(result.goodput.disagg.sweptRate).toBe(0);
    expect(result.goodputRatioDisaggOverAgg).toBe(0);
    for (const f of ["results.md", "results.json", "records.jsonl", "ttft.svg", "tpot.svg", "attainment.svg", "throughput.svg"]) {
      expect(existsSync(join(out, f)), f).toBe(true);
    }
    const page = readFileSync(join(out, "results.md"), "utf8");
    expect(page).toContain("1 prefill + 1 decode (disaggregated)");
    expect(page).toContain("2 decode (aggregated)");
    expect(page).toContain("skipped (--overhead-reps 0)");
    expect(page).toMatch(/\| 5\.00 \| 5 \/ 5 \| 0 \|/);
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    expect(results.arrangements.map((a: { key: string }) => a.key)).toEqual(["disagg", "agg"]);
    expect(results.machine.cpus).toBeGreaterThan(0);
    // Both launcher doubles and the "workers" they left behind are gone: the process groups were stopped.
    const pids = readFileSync(pidsFile, "utf8").trim().split(/\s+/).map(Number);
    expect(pids).toHaveLength(4);
    for (const pid of pids) expect(isAlive(pid), `pid ${pid}`).toBe(false);
    expect(readFileSync(join(out, "logs", "disagg-launcher.log"), "utf8")).toMatch(/^trtd ready: OpenAI API at http:\/\/127\.0\.0\.1:\d+\/v1 \(model test-double; 1 prefill \+ 1 decode workers; launcher TEST DOUBLE\)$/m);
  });

  it("--sequential: one stack at a time, the SLO derived from both idle probes afterwards and attainment recomputed", async () => {
    const modelDir = join(dir, "model-seq");
    mkdirSync(modelDir);
    writeFileSync(join(modelDir, "config.json"), "{}");
    const pidsFile = join(dir, "pids-seq");
    const overlapFile = join(dir, "overlap-seq");
    const out = join(dir, "out-seq");
    const args = [
      "--import", "tsx", "--conditions=source", cli, "experiment", "--sequential",
      "--launcher", join(repoRoot, "tools/bench/test/launcher-test-double.ts"),
      "--model-dir", modelDir, "--rates", "5,10", "--num-requests", "5", "--input-len", "20", "--output-len", "5",
      "--slo-scale", "1:3", "--overhead-reps", "0", "--stop-grace", "1", "--kv-block-count", "64", "--out", out,
    ];
    const { code, stderr } = await runNode(args, { BENCH_TEST_PIDS_FILE: pidsFile, BENCH_TEST_OVERLAP_FILE: overlapFile });
    expect(code, stderr).toBe(0);
    // The second launcher started after every process of the first was gone.
    expect(readFileSync(overlapFile, "utf8").trim().split("\n")).toEqual(["alone", "alone"]);
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    expect(results.sequential).toBe(true);
    expect(results.executor.kvBlockCount).toBe(64);
    // Idle TTFT: 5 probes at ~150 ms (disagg double) and 5 at ~10 ms (agg): the median lies between, and the SLO is
    // 1x that, so the aggregated double meets it and the disaggregated one does not, at every rate.
    const idle = results.sloDerivation.idle;
    expect(idle.requests).toBe(10);
    expect(results.slo.ttftMs).toBeGreaterThan(10);
    expect(results.slo.ttftMs).toBeLessThan(150);
    const byLegend = Object.fromEntries(results.sweeps.map((s: { legend: string }) => [s.legend, s]));
    for (const p of byLegend["agg 2D"].points) expect(p.sloAttainment).toBe(1);
    for (const p of byLegend["disagg 1P+1D"].points) expect(p.sloAttainment).toBe(0);
    expect(byLegend["agg 2D"].goodput.saturated).toBe(true);
    const pids = readFileSync(pidsFile, "utf8").trim().split(/\s+/).map(Number);
    expect(pids).toHaveLength(4);
    for (const pid of pids) expect(isAlive(pid), `pid ${pid}`).toBe(false);
  });
});
