// Real processes for the reliability tests: nats-server, prefill and decode workers and the api, each started
// on 127.0.0.1 with free ports, read until it says it is ready (bounded), killed or stopped by PID.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { startNatsServer, type NatsServerHandle, type NatsServerOptions } from "@trtd/request-plane";

export const repoRoot = resolve(fileURLToPath(import.meta.url), "../../../../..");
export const modelDir = resolve(repoRoot, "models/tiny");

export type AppName = "api" | "prefill" | "decode";

export interface AppProcess {
  readonly app: AppName;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The URL the api announced (empty for workers). */
  readonly url: string;
  /** Everything it printed, stdout and stderr (for failure messages and the no-secrets check). */
  readonly output: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL after `boundMs`; resolves when it exited. */
  stop(boundMs?: number): Promise<void>;
}

const READY: Record<AppName, RegExp> = {
  api: /listening on (\S+)/,
  prefill: /trtd prefill worker (\S+) serving/,
  decode: /trtd decode worker (\S+) serving/,
};

/** Every process started here, so a failed test still stops them all (afterAll calls stopAll). */
const started = new Set<AppProcess>();

export function startApp(app: AppName, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<AppProcess> {
  const proc = spawn(process.execPath, ["--import", "tsx", "--conditions=source", resolve(repoRoot, `apps/${app}/src/main.ts`), ...args], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    // If this test process dies without stopping it, the app stops on its own.
    env: { ...process.env, TRTD_PARENT_PID: String(process.pid), ...opts.env },
  });
  const output: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once("exit", (code, signal) => r({ code, signal })));
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const kill = (signal: NodeJS.Signals) => {
    if (alive()) proc.kill(signal);
  };
  const stop = async (boundMs = 20_000) => {
    kill("SIGTERM");
    const t = setTimeout(() => kill("SIGKILL"), boundMs);
    await exited;
    clearTimeout(t);
  };
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      void stop(1000);
      reject(new Error(`${app} not ready after ${timeoutMs} ms:\n${output.join("\n")}`));
    }, timeoutMs);
    createInterface({ input: proc.stderr! }).on("line", (l) => output.push(l));
    createInterface({ input: proc.stdout! }).on("line", (l) => {
      output.push(l);
      const m = READY[app].exec(l);
      if (m) {
        clearTimeout(timer);
        const p: AppProcess = { app, proc, pid: proc.pid!, url: app === "api" ? m[1] : "", output, exited, kill, stop };
        started.add(p);
        void exited.then(() => started.delete(p));
        resolveStart(p);
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${app} exited (${code ?? signal}) before it was ready:\n${output.join("\n")}`));
    });
  });
}

export async function stopAll(): Promise<void> {
  await Promise.all([...started].map((p) => p.stop(5000)));
}

export function startNats(options: NatsServerOptions = {}): Promise<NatsServerHandle> {
  return startNatsServer({ readyTimeoutMs: 10_000, ...options });
}

/** Worker flags for the tiny model on one thread. */
export function workerArgs(natsUri: string, namespace: string, extra: string[] = []): string[] {
  return ["--worker-name", namespace, "--request-plane-uri", natsUri, "--model-dir", modelDir, "--threads", "1", ...extra];
}

export function apiArgs(natsUri: string, namespace: string, extra: string[] = []): string[] {
  return ["--tokenizer", modelDir, "--request-plane-uri", natsUri, "--api-server-port", "0", "--worker-name", namespace, ...extra];
}

export interface WorkerGauge {
  name: string;
  component: string;
  instance: string;
  value: number;
}

/** `trtd_worker_*{component,instance}` gauges from the api's /metrics (the load workers publish about every second). */
export async function workerGauges(apiUrl: string): Promise<WorkerGauge[]> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const out: WorkerGauge[] = [];
  for (const m of text.matchAll(/^(trtd_worker_\w+)\{component="(\w+)",instance="([\w-]+)"\} (\S+)$/gm)) {
    out.push({ name: m[1], component: m[2], instance: m[3], value: Number(m[4]) });
  }
  return out;
}

/** One metric's value (a sample without labels, or with exactly the given label text); 0 when absent. */
export async function metricValue(apiUrl: string, sample: string): Promise<number> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : 0;
}

/** Polls `check` every 100 ms until it returns true; throws after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until the api sees `decode` decode and `prefill` prefill workers (and their published load). */
export async function waitForWorkers(apiUrl: string, decode: number, prefill: number, timeoutMs = 20_000): Promise<void> {
  await eventually(
    async () => {
      const h = (await (await fetch(`${apiUrl}/health`)).json()) as { decodeWorkers: number; prefillWorkers: number };
      const g = await workerGauges(apiUrl);
      const withLoad = (c: string) => new Set(g.filter((x) => x.component === c).map((x) => x.instance)).size;
      return h.decodeWorkers === decode && h.prefillWorkers === prefill && withLoad("decode") === decode && withLoad("prefill") === prefill;
    },
    timeoutMs,
    `${decode} decode + ${prefill} prefill workers`,
  );
}

/** Every worker's executor is idle: no active or queued requests, no KV blocks in use, no pinned exports. */
export async function workersIdle(apiUrl: string): Promise<boolean> {
  const g = await workerGauges(apiUrl);
  const busy = g.filter(
    (x) => ["trtd_worker_active_requests", "trtd_worker_queued_requests", "trtd_worker_kv_blocks_used", "trtd_worker_pinned_kv_exports"].includes(x.name) && x.value !== 0,
  );
  return g.length > 0 && busy.length === 0;
}
