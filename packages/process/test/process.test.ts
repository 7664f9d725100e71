// Real child processes (node -e scripts): readiness, lines, bounded stop, exit reporting, spawn failure.
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ChildNotReadyError, descendantPids, echoedLine, isAlive, parseEchoedLine, spawnChild, type ChildStream } from "../src/index.js";

const node = (script: string, name = "child") => ({ name, command: process.execPath, args: ["-e", script] });

describe("spawnChild", () => {
  it("reports every line with its stream, resolves waitForLine on the ready line (also one printed before the wait), and reports the exit", async () => {
    const lines: Array<[string, ChildStream]> = [];
    const c = spawnChild({ ...node('console.error("warming up"); console.log("ready at http://x:1"); setTimeout(() => process.exit(3), 200)'), onLine: (l, s) => lines.push([l, s]) });
    expect(c.pid).toBeGreaterThan(0);
    const m = await c.waitForLine(/ready at (\S+)/, 10_000);
    expect(m[1]).toBe("http://x:1");
    expect((await c.waitForLine(/warming/, 1000))[0]).toBe("warming"); // already printed
    expect(await c.exited).toEqual({ code: 3, signal: null });
    expect(lines).toEqual([["warming up", "stderr"], ["ready at http://x:1", "stdout"]]);
    expect(c.output).toEqual(["warming up", "ready at http://x:1"]);
    expect(c.alive()).toBe(false);
  });

  it("waitForLine rejects with ChildNotReadyError carrying the output when the child exits first, or when the bound passes", async () => {
    const quits = spawnChild(node('console.log("config is broken"); process.exit(2)', "quitter"));
    const e1 = await quits.waitForLine(/ready/, 10_000).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(ChildNotReadyError);
    expect((e1 as ChildNotReadyError).code).toBe("child_not_ready");
    expect((e1 as Error).message).toMatch(/^quitter exited \(2\) before a line matched \/ready\/: quitter:\nconfig is broken$/);
    const silent = spawnChild(node("setTimeout(() => {}, 30000)", "silent"));
    const t0 = Date.now();
    const e2 = await silent.waitForLine(/ready/, 300).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(ChildNotReadyError);
    expect((e2 as Error).message).toMatch(/^silent printed no line matching \/ready\/ within 300 ms/);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(await silent.stop(5000)).toEqual({ code: null, signal: "SIGTERM" });
  });

  it("stop: SIGTERM, then SIGKILL after the grace for a child that ignores SIGTERM; idempotent", async () => {
    const stubborn = spawnChild(node('process.on("SIGTERM", () => console.log("ignoring")); console.log("up"); setInterval(() => {}, 1000)'));
    await stubborn.waitForLine(/^up$/, 10_000);
    const t0 = Date.now();
    const [a, b] = await Promise.all([stubborn.stop(500), stubborn.stop(500)]);
    const took = Date.now() - t0;
    expect(a).toEqual({ code: null, signal: "SIGKILL" });
    expect(b).toBe(a);
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(5000);
    expect(stubborn.output).toContain("ignoring");
    const polite = spawnChild(node('process.on("SIGTERM", () => process.exit(0)); console.log("up"); setInterval(() => {}, 1000)'));
    await polite.waitForLine(/^up$/, 10_000);
    expect(await polite.stop(10_000)).toEqual({ code: 0, signal: null });
  });

  it("stopTree: the child's group and its descendants, one of them in a group of its own that ignores SIGTERM", async () => {
    const script = `
      const { spawn } = require("node:child_process");
      const g = spawn(process.execPath, ["-e", "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"], { detached: true, stdio: "ignore" });
      console.log("grandchild " + g.pid);
      setInterval(() => {}, 1000);`;
    const tree = spawnChild({ name: "tree", command: process.execPath, args: ["-e", script], stopTree: true });
    const grandchild = Number((await tree.waitForLine(/grandchild (\d+)/, 10_000))[1]);
    expect(descendantPids(tree.pid)).toContain(grandchild);
    expect(isAlive(grandchild)).toBe(true);
    const t0 = Date.now();
    await tree.stop(300);
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(isAlive(tree.pid)).toBe(false);
    expect(isAlive(grandchild)).toBe(false); // without stopTree it would outlive its parent
  });

  it("a command that cannot start: exited reports no code and no signal, waitForLine names the spawn error", async () => {
    const c = spawnChild({ name: "ghost", command: "/nonexistent/binary" });
    expect(await c.exited).toEqual({ code: null, signal: null });
    const e = await c.waitForLine(/ready/, 5000).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(ChildNotReadyError);
    expect((e as Error).message).toMatch(/ghost \(spawn \/nonexistent\/binary ENOENT\)/);
    expect(c.alive()).toBe(false);
    expect(await c.stop(100)).toEqual({ code: null, signal: null });
  });

  it("echo writes each line as `[name] line`, which parseEchoedLine reads back; other lines are not echoes", async () => {
    const entry = fileURLToPath(new URL("../src/index.ts", import.meta.url));
    // A parent that echoes its own child's lines, read through its stdout as a launcher's reader would.
    const parent = `import(${JSON.stringify(entry)}).then(({ spawnChild }) => spawnChild({ name: "decode-0", command: process.execPath,
      args: ["-e", "console.log('trtd [x] ready'); console.error('a warning')"], echo: true }).exited)`;
    const p = spawnChild({ name: "parent", command: process.execPath, args: ["--import", "tsx", "-e", parent] });
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(p.output.map(parseEchoedLine).sort((a, b) => a!.line.localeCompare(b!.line))).toEqual([
      { name: "decode-0", line: "a warning" },
      { name: "decode-0", line: "trtd [x] ready" },
    ]);
    expect(echoedLine("api", "up")).toBe("[api] up");
    expect(parseEchoedLine("trtd [x] ready")).toBeUndefined();
    expect(parseEchoedLine("[two words] x")).toBeUndefined();
  });

  it("onMessage opens an IPC channel: the child's process.send messages arrive; without it the child has none", async () => {
    const got: unknown[] = [];
    const c = spawnChild({ ...node('process.send({ n: 1 }); process.send({ n: 2 }, () => process.exit(0))'), onMessage: (m) => got.push(m) });
    expect(await c.exited).toEqual({ code: 0, signal: null });
    expect(got).toEqual([{ n: 1 }, { n: 2 }]);
    const plain = spawnChild(node('console.log(typeof process.send)'));
    await plain.exited;
    expect(plain.output).toEqual(["undefined"]);
  });
});
