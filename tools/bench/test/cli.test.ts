import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startOpenAITestDouble } from "./openai-test-double.js";

const repoRoot = resolve(__dirname, "../../..");
const cli = join(repoRoot, "tools/bench/src/cli.ts");

function runCli(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ["--import", "tsx", "--conditions=source", cli, ...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", rej);
    child.on("close", (code) => {
      clearTimeout(t);
      res({ code, stdout, stderr });
    });
  });
}

describe("cli", () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-cli-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("run: sweeps two rates against the test double, prints progress on stderr, ends with one JSON line, writes the report", async () => {
    const server = await startOpenAITestDouble({ ttftMs: 20, itlMs: 5 });
    try {
      const out = join(dir, "run");
      const r = await runCli([
        "run", "--base-url", server.baseUrl, "--model", "double", "--rates", "20,40", "--num-requests", "6",
        "--input-len", "uniform:5:10", "--output-len", "4", "--arrival", "fixed", "--slo-ttft-ms", "500", "--slo-tpot-ms", "100", "--out", out,
      ]);
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.trim().split("\n");
      const result = JSON.parse(lines[lines.length - 1]);
      expect(result.points.map((p: { rate: number }) => p.rate)).toEqual([20, 40]);
      expect(result.points.every((p: { completed: number }) => p.completed === 6)).toBe(true);
      expect(result.goodput).toMatchObject({ sweptRate: 40, saturated: true });
      expect(r.stderr).toMatch(/rate 20\.00 req\/s: 6\/6 ok/);
      const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
      expect(results.sweeps[0].points[0]).toMatchObject({ rate: 20, completed: 6, sloAttainment: 1 });
      expect(readFileSync(join(out, "records.jsonl"), "utf8").trim().split("\n")).toHaveLength(12);
      for (const f of ["ttft.svg", "tpot.svg", "attainment.svg", "throughput.svg"]) expect(existsSync(join(out, f))).toBe(true);
      expect(server.openStreams()).toBe(0);

      // plot: charts again from results.json alone
      const plotDir = join(dir, "plot");
      const p = await runCli(["plot", "--in", join(out, "results.json"), "--out", plotDir]);
      expect(p.code, p.stderr).toBe(0);
      expect(readFileSync(join(plotDir, "ttft.svg"), "utf8")).toBe(readFileSync(join(out, "ttft.svg"), "utf8"));
    } finally {
      await server.close();
    }
  });

  it("bad flags exit with code 2 and a typed error message", async () => {
    const r = await runCli(["run", "--base-url", "http://127.0.0.1:1", "--model", "m", "--input-len", "zipf:1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/InvalidDistributionError/);
    const u = await runCli(["run", "--bogus"]);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/InvalidOptionError.*bogus/);
  });
});
