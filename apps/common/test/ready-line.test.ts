import { describe, expect, it } from "vitest";
import { echoedLine } from "@trtd/process";
import {
  apiReadyLine,
  launcherChildPids,
  launcherReadyLine,
  parseApiReadyLine,
  parseLauncherReadyLine,
  parseWorkerReadyLine,
  READY_PATTERNS,
  workerReadyLine,
  type LauncherReady,
  type WorkerReady,
} from "../src/index.js";

const decode: WorkerReady = { role: "decode", instanceId: "9f2c41d0a1b2c3d4", namespace: "rel-compat", component: "decode", endpoint: "generate", pid: 4242 };
const prefill: WorkerReady = { ...decode, role: "prefill", component: "prefill", pid: 77 };
const withApi: LauncherReady = { apiUrl: "http://127.0.0.1:41234", model: "tiny; v2 (test)", prefillWorkers: 1, decodeWorkers: 2, where: "request plane nats://127.0.0.1:4222" };
const noApi: LauncherReady = { prefillWorkers: 1, decodeWorkers: 0, where: "request plane nats://10.0.0.1:4222,nats://10.0.0.2:4222" };

describe("apps-common - ready lines", () => {
  it("each printed line parses back to what was printed", () => {
    expect(workerReadyLine(decode)).toBe("trtd decode worker 9f2c41d0a1b2c3d4 serving rel-compat/decode/generate (pid 4242)");
    expect(parseWorkerReadyLine(workerReadyLine(decode))).toEqual(decode);
    expect(parseWorkerReadyLine(workerReadyLine(prefill))).toEqual(prefill);
    const api = { url: "http://0.0.0.0:8000", model: "Llama-3.2-1B (fp8)" };
    expect(apiReadyLine(api)).toBe("trtd api listening on http://0.0.0.0:8000 (model Llama-3.2-1B (fp8))");
    expect(parseApiReadyLine(apiReadyLine(api))).toEqual(api);
    expect(launcherReadyLine(withApi)).toBe(
      "trtd ready: OpenAI API at http://127.0.0.1:41234/v1 (model tiny; v2 (test); 1 prefill + 2 decode workers; request plane nats://127.0.0.1:4222)",
    );
    expect(parseLauncherReadyLine(launcherReadyLine(withApi))).toEqual(withApi);
    expect(launcherReadyLine(noApi)).toBe("trtd ready: 1 prefill + 0 decode workers, no api on this host; request plane nats://10.0.0.1:4222,nats://10.0.0.2:4222");
    expect(parseLauncherReadyLine(launcherReadyLine(noApi))).toEqual(noApi);
  });

  it("READY_PATTERNS match their own app's line only, name the URL, and skip a launcher's echo of a child's line", () => {
    const lines = {
      api: apiReadyLine({ url: "http://127.0.0.1:8000", model: "tiny" }),
      prefill: workerReadyLine(prefill),
      decode: workerReadyLine(decode),
      launcher: launcherReadyLine(withApi),
    };
    for (const [app, pattern] of Object.entries(READY_PATTERNS)) {
      for (const [other, line] of Object.entries(lines)) expect(pattern.test(line), `${app} pattern on the ${other} line`).toBe(app === other);
      expect(pattern.test(`[${app}-0] ${lines[app as keyof typeof lines]}`), `${app} pattern on an echoed line`).toBe(false);
    }
    expect(READY_PATTERNS.api.exec(lines.api)?.groups?.url).toBe("http://127.0.0.1:8000");
    expect(READY_PATTERNS.launcher.exec(lines.launcher)?.groups?.url).toBe("http://127.0.0.1:41234");
    expect(READY_PATTERNS.launcher.exec(launcherReadyLine(noApi))?.groups?.url).toBeUndefined();
  });

  it("launcherChildPids: a launcher child's PIDs in start order, from the ready lines the launcher echoes", () => {
    const output = [
      "[launcher] starting",
      echoedLine("decode-0", workerReadyLine(decode)),
      echoedLine("decode-1", workerReadyLine({ ...decode, pid: 5000 })),
      echoedLine("prefill-0", workerReadyLine(prefill)),
      workerReadyLine({ ...decode, pid: 6000 }), // not an echo: not a child's line
      echoedLine("decode-0", "[2026-12-07T00:00:00.000Z] decode: draining"),
      echoedLine("decode-0", workerReadyLine({ ...decode, pid: 4300 })), // restarted
    ];
    expect(launcherChildPids(output, "decode-0")).toEqual([4242, 4300]);
    expect(launcherChildPids(output, "prefill-0")).toEqual([77]);
    expect(launcherChildPids(output, "api")).toEqual([]);
  });

  it("other lines are not ready lines", () => {
    for (const line of ["", "trtd decode worker serving", "KV offers at 127.0.0.1:5000 (listening on 127.0.0.1)", "[api] trtd api listening on http://x:1 (model m)"]) {
      expect(parseWorkerReadyLine(line)).toBeUndefined();
      expect(parseApiReadyLine(line)).toBeUndefined();
      expect(parseLauncherReadyLine(line)).toBeUndefined();
    }
  });
});
