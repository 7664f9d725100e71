// Real processes for end-to-end tests: started on 127.0.0.1 with free ports, read until they say they are
// ready (bounded), stopped by PID (SIGTERM, then SIGKILL after a bound).
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";

export const repoRoot = resolve(fileURLToPath(import.meta.url), "../../../../..");
export const modelDir = resolve(repoRoot, "models/tiny");

export interface Started {
  proc: ChildProcess;
  /** The URL the process announced. */
  url: string;
  /** Everything it printed (for failure messages). */
  output: string[];
  stop(): Promise<void>;
}

/** Runs `apps/<app>/src/main.ts` with tsx and waits for a stdout line matching `ready` (its group 1 is the URL). */
export function startApp(app: "launcher" | "api", args: string[], ready: RegExp, timeoutMs = 120_000): Promise<Started> {
  const proc = spawn(process.execPath, ["--import", "tsx", "--conditions=source", resolve(repoRoot, `apps/${app}/src/main.ts`), ...args], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    // If this test process dies without stopping it, the app (and the launcher's children) stop on their own.
    env: { ...process.env, TRTD_PARENT_PID: String(process.pid) },
  });
  const output: string[] = [];
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    await exited;
    clearTimeout(t);
  };
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`${app} not ready after ${timeoutMs} ms:\n${output.join("\n")}`));
    }, timeoutMs);
    createInterface({ input: proc.stderr! }).on("line", (l) => output.push(l));
    createInterface({ input: proc.stdout! }).on("line", (l) => {
      output.push(l);
      const m = ready.exec(l);
      if (m) {
        clearTimeout(timer);
        resolveStart({ proc, url: m[1], output, stop });
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${app} exited (${code}) before it was ready:\n${output.join("\n")}`));
    });
  });
}

export const LAUNCHER_READY = /trtd ready: OpenAI API at (\S+)\/v1/;
export const API_READY = /listening on (\S+)/;

/** `trtd_worker_*{component,instance}` gauges from the api's /metrics. */
export async function workerGauges(apiUrl: string): Promise<Array<{ name: string; component: string; instance: string; value: number }>> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const out: Array<{ name: string; component: string; instance: string; value: number }> = [];
  for (const m of text.matchAll(/^(trtd_worker_\w+)\{component="(\w+)",instance="([\w-]+)"\} (\S+)$/gm)) {
    out.push({ name: m[1], component: m[2], instance: m[3], value: Number(m[4]) });
  }
  return out;
}

/** One metric's value (a sample without labels, or with exactly the given label text). */
export async function metricValue(apiUrl: string, sample: string): Promise<number> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : 0;
}

/** Polls `check` every 200 ms until it returns true; throws after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
