import { describe, expect, it } from "vitest";
import { descendantPids, freePort, startProcess } from "../src/processes.js";
import { ServerStartupError } from "../src/index.js";
import { isAlive } from "@trtd/process";


describe("processes", () => {
  it("freePort gives a port that can be listened on", async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(1024);
    expect(port).toBeLessThan(65536);
  });

  it("waitForLine sees a printed line; stop() kills a SIGTERM-ignoring grandchild in its own process group", async () => {
    // The child starts a detached grandchild that ignores SIGTERM, prints its PID, then idles.
    const script = `
      const { spawn } = require("node:child_process");
      const g = spawn(process.execPath, ["-e", "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"], { detached: true, stdio: "ignore" });
      console.log("grandchild " + g.pid);
      setInterval(() => {}, 1000);`;
    const p = startProcess("test-child", process.execPath, ["-e", script]);
    try {
      const m = await p.waitForLine(/grandchild (\d+)/, 10_000);
      const grandchild = Number(m[1]);
      expect(isAlive(grandchild)).toBe(true);
      expect(descendantPids(p.pid)).toContain(grandchild);
      // A line seen earlier is found again immediately.
      await expect(p.waitForLine(/grandchild/, 10)).resolves.toBeTruthy();
      await p.stop(300);
      expect(isAlive(p.pid)).toBe(false);
      expect(isAlive(grandchild)).toBe(false);
    } finally {
      await p.stop(300);
    }
  });

  it("waitForLine rejects with ServerStartupError when the process exits first or the time runs out", async () => {
    const quick = startProcess("quick", process.execPath, ["-e", "console.log('bye')"]);
    await expect(quick.waitForLine(/never/, 10_000)).rejects.toThrow(ServerStartupError);
    await quick.stop(100);
    const slow = startProcess("slow", process.execPath, ["-e", "setInterval(() => {}, 1000)"]);
    try {
      await expect(slow.waitForLine(/never/, 200)).rejects.toThrow(/within 200 ms/);
    } finally {
      await slow.stop(300);
    }
    expect(isAlive(slow.pid)).toBe(false);
  });
});
