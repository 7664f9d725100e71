import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

describe("examples/echo-service.ts", () => {
  it("runs standalone: starts its nats-server, streams, cancels, exits 0", async () => {
    const script = fileURLToPath(new URL("../examples/echo-service.ts", import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "--conditions=source", script], { timeout: 30_000 });
    expect(stdout).toMatch(/serving demo\/echo\/stream\/[0-9a-f]{16}/);
    expect(stdout).toMatch(/found demo\/echo\/stream\/[0-9a-f]{16} with load \{"activeRequests":0,"queuedRequests":0\}/);
    expect(stdout).toContain("streamed: 101 102 103");
    expect(stdout).toContain("cancelled after 1 2 3 (cancelled)");
  });
});
