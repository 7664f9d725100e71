// Real processes for the reliability tests: nats-server, prefill and decode workers and the api, each started
// on 127.0.0.1 with free ports, read until it says it is ready (bounded), killed or stopped by PID.
import { launcherChildPids as childPidsOf, READY_PATTERNS, type ReadyApp } from "@trtd/apps-common";
import { startNatsServer, type NatsServerHandle, type NatsServerOptions } from "@trtd/request-plane";
import * as support from "@trtd/test-support";
import { eventually, modelDir, workerGauges } from "@trtd/test-support";

export { repoRoot, modelDir, workerGauges, metricValue, eventually, type WorkerGauge } from "@trtd/test-support";

export type AppName = ReadyApp;

export type AppProcess = support.AppProcess<AppName>;

/** Every process started here, so a failed test still stops them all (afterAll calls stopAll). */
const started = new Set<AppProcess>();

export async function startApp(app: AppName, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<AppProcess> {
  const p = await support.startApp(app, args, {
    ready: READY_PATTERNS[app],
    timeoutMs: opts.timeoutMs ?? 60_000,
    stopBoundMs: 20_000,
    notReadyStopBoundMs: 1000,
    env: opts.env,
  });
  started.add(p);
  void p.exited.then(() => started.delete(p));
  return p;
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

/** PIDs of a launcher's child `name` (e.g. decode-0), in start order, from the worker ready lines it echoes. */
export function launcherChildPids(launcher: AppProcess, name: string): number[] {
  return childPidsOf(launcher.output, name);
}

/** PIDs of a launcher's child `name` (api, decode-0, ...) in spawn order, from the "<name> (pid N) started" lines it logs. */
export function launcherSpawnPids(launcher: AppProcess, name: string): number[] {
  const re = new RegExp(` launcher: ${name} \\(pid (\\d+)\\) started`);
  return launcher.output.flatMap((l) => re.exec(l)?.slice(1) ?? []).map(Number);
}

export { isAlive } from "@trtd/process";
