// traceStage in real child processes: on with TRTD_TRACE_STAGES=1 (stamps on stderr, one monotonic clock shared with
// this process), absent otherwise; parseStageLine reads only stamp lines.
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseStageLine, spawnChild, STAGE_FLUSH_AFTER_MS } from "../src/index.js";

const module = fileURLToPath(new URL("../src/stage-trace.ts", import.meta.url));
const script = `import(${JSON.stringify(module)}).then((m) => { if (!m.traceStage) { console.log("off"); return; } m.traceStage("a.one"); m.traceStage("b.two"); console.log("on"); })`;

async function run(env: NodeJS.ProcessEnv) {
  const lines: string[] = [];
  const c = spawnChild({ name: "tracer", command: process.execPath, args: ["--import", "tsx", "-e", script], env, onLine: (l) => lines.push(l) });
  expect(await c.exited).toEqual({ code: 0, signal: null });
  return lines;
}

describe("traceStage", () => {
  it("writes parseable stamps in order, on this host's monotonic clock, only with TRTD_TRACE_STAGES=1", async () => {
    const before = process.hrtime.bigint();
    const on = await run({ ...process.env, TRTD_TRACE_STAGES: "1" });
    const after = process.hrtime.bigint();
    const stamps = on.map(parseStageLine).filter((s) => s !== undefined);
    expect(stamps.map((s) => s.label)).toEqual(["a.one", "b.two"]);
    expect(stamps[0].ns).toBeGreaterThan(before);
    expect(stamps[1].ns).toBeGreaterThanOrEqual(stamps[0].ns);
    expect(stamps[1].ns).toBeLessThan(after);
    expect(on).toContain("on");
    const off = await run({ ...process.env, TRTD_TRACE_STAGES: "" });
    expect(off).toEqual(["off"]);
  });

  it("a process that goes on running delivers its stamps within STAGE_FLUSH_AFTER_MS, in one batch", async () => {
    // stamps, then 300 ms of running before a last line on stdout: the stamps must come before it, not at exit
    const late = `import(${JSON.stringify(module)}).then((m) => { m.traceStage("a.one"); m.traceStage("b.two"); setTimeout(() => console.log("later"), 300); })`;
    const lines: string[] = [];
    const c = spawnChild({ name: "tracer", command: process.execPath, args: ["--import", "tsx", "-e", late], env: { ...process.env, TRTD_TRACE_STAGES: "1" }, onLine: (l) => lines.push(l) });
    expect(await c.exited).toEqual({ code: 0, signal: null });
    expect(STAGE_FLUSH_AFTER_MS).toBeLessThan(300);
    const labels = lines.map((l) => parseStageLine(l)?.label ?? l);
    expect(labels).toEqual(["a.one", "b.two", "later"]);
  });

  it("parseStageLine takes stamp lines only", () => {
    expect(parseStageLine("trtd-stage api.arrival 123456789")).toEqual({ label: "api.arrival", ns: 123456789n });
    expect(parseStageLine("trtd-stage api.arrival")).toBeUndefined();
    expect(parseStageLine("[decode] trtd-stage x 1")).toBeUndefined();
    expect(parseStageLine("some log line")).toBeUndefined();
  });
});
