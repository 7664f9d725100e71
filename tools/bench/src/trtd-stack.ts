// Bringing a trtd deployment up and down for the experiment: its own nats-server and apps/launcher on free
// 127.0.0.1 ports, one frozen executor library, readiness and warm-up, and stopping everything by PID.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import type { Workload } from "./cli-options.js";
import { sendStreamingRequest } from "./client.js";
import { InvalidOptionError, ServerStartupError } from "./errors.js";
import type { ExecutorSettings } from "./frontend-overhead.js";
import { executorArgv, parseLauncherReadyLine, READY_PATTERNS } from "@trtd/apps-common";
import { startNatsServer, type NatsServerHandle } from "@trtd/request-plane";
import { startProcess, waitForHttp, type ManagedProcess } from "./processes.js";

export interface Arrangement {
  key: "disagg" | "agg";
  name: string;
  legend: string;
  contextWorkers: number;
  generateWorkers: number;
}

export const ARRANGEMENTS: Record<Arrangement["key"], Arrangement> = {
  disagg: { key: "disagg", name: "1 prefill + 1 decode (disaggregated)", legend: "disagg 1P+1D", contextWorkers: 1, generateWorkers: 1 },
  agg: { key: "agg", name: "2 decode (aggregated)", legend: "agg 2D", contextWorkers: 0, generateWorkers: 2 },
};

export interface StackHandles {
  nats?: NatsServerHandle;
  natsPort?: number;
  launcher?: ManagedProcess;
  dir: string;
}

function nodeArgs(file: string): string[] {
  return ["--import", "tsx", "--conditions=source", file];
}

export async function startStack(
  a: Arrangement,
  cfg: { repoRoot: string; launcher: string; modelDir: string; executor: ExecutorSettings; extraArgs: string[]; startupTimeoutMs: number; logDir: string; library: PinnedLibrary },
  h: StackHandles,
): Promise<{ baseUrl: string }> {
  h.nats = await startNats(h);
  const args = [
    ...nodeArgs(cfg.launcher),
    "--context-worker-count", String(a.contextWorkers),
    "--generate-worker-count", String(a.generateWorkers),
    "--worker-name", `bench-${a.key}`,
    "--request-plane-uri", `127.0.0.1:${h.natsPort}`,
    "--api-server-host", "127.0.0.1",
    "--api-server-port", "0",
    ...executorArgv({ modelDir: cfg.modelDir, ...cfg.executor }),
    ...cfg.extraArgs,
  ];
  h.launcher = startProcess("launcher", process.execPath, args, {
    cwd: cfg.repoRoot,
    env: { ...process.env, TRTD_EXECUTOR_LIB: cfg.library.path },
    logFile: join(cfg.logDir, `${a.key}-launcher.log`),
  });
  // The launcher binds the api to a port the OS picks and prints where it is once its workers are ready.
  const m = await h.launcher.waitForLine(READY_PATTERNS.launcher, cfg.startupTimeoutMs);
  const baseUrl = parseLauncherReadyLine(m[0])?.apiUrl;
  if (!baseUrl) throw new ServerStartupError(`the launcher runs no api: ${m[0]}`);
  await waitForHttp(`${baseUrl}/v1/models`, h.launcher, 10_000);
  return { baseUrl };
}

/** nats-server (JetStream on) on a free port (`@trtd/request-plane`'s starter); owned by the caller through `h`. */
async function startNats(h: StackHandles): Promise<NatsServerHandle> {
  const nats = await startNatsServer({ jetstream: true, storeDir: join(h.dir, "js") });
  h.natsPort = nats.port;
  return nats;
}

export async function stopStack(h: StackHandles, graceMs = 10_000): Promise<void> {
  // Launcher first (it drains its workers and the api), then the request plane.
  await h.launcher?.stop(graceMs);
  await h.nats?.stop(3000);
  h.launcher = undefined;
  h.nats = undefined;
}

export async function servedModelName(baseUrl: string): Promise<string> {
  const res = await fetch(`${baseUrl}/v1/models`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { data?: { id?: string }[] };
  const id = body.data?.[0]?.id;
  if (!id) throw new ServerStartupError(`${baseUrl}/v1/models lists no model`);
  return id;
}

/** Sends one request until one succeeds (workers registered), then `count` more, sequentially; bounded. */
export async function warmUp(baseUrl: string, model: string, w: Workload, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  const req = { prompt: w.requests[0].prompt, maxTokens: 4 };
  for (;;) {
    const rec = await sendStreamingRequest({ baseUrl, model, endpoint: w.endpoint, requestTimeoutMs: w.requestTimeoutMs }, req, { index: 0, scheduledAtMs: 0, runStart: 0 });
    if (rec.ok) break;
    lastError = rec.error ?? "";
    if (Date.now() > deadline) throw new ServerStartupError(`no request succeeded within ${timeoutMs} ms: ${lastError}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  for (let i = 0; i < count; i++) {
    await sendStreamingRequest({ baseUrl, model, endpoint: w.endpoint, requestTimeoutMs: w.requestTimeoutMs }, w.requests[i % w.requests.length], { index: 0, scheduledAtMs: 0, runStart: 0 });
  }
}

export function ensureModelDir(repoRoot: string, modelDir: string): void {
  if (existsSync(join(modelDir, "config.json"))) return;
  const name = basename(modelDir);
  if (name !== "tiny" && name !== "small") throw new InvalidOptionError(`model directory ${modelDir} has no config.json`);
  process.stderr.write(`generating ${modelDir} with tools/prepare-model...\n`);
  const r = spawnSync(process.execPath, [...nodeArgs(join(repoRoot, "tools/prepare-model/src/cli.ts")), name, "--out", modelDir], { cwd: repoRoot, stdio: "inherit", timeout: 300_000 });
  if (r.status !== 0) throw new ServerStartupError(`tools/prepare-model ${name} failed (exit ${r.status})`);
}

export interface PinnedLibrary {
  /** The frozen copy every process of the run loads. */
  path: string;
  source: string;
  sha256: string;
  mtime: string;
}

/** Copies the executor library ($TRTD_EXECUTOR_LIB or the built reference executor) into `dir`. */
export async function pinExecutorLibrary(repoRoot: string, dir: string): Promise<PinnedLibrary> {
  const source = process.env.TRTD_EXECUTOR_LIB ?? (await import("@trtd/trtllm")).defaultLibraryPath;
  if (!existsSync(source)) {
    rmSync(dir, { recursive: true, force: true });
    throw new ServerStartupError(`executor library ${source} not found: build it with "npm run build:native" in ${repoRoot}`);
  }
  const path = join(dir, basename(source));
  copyFileSync(source, path);
  const sha256 = createHash("sha256").update(readFileSync(path)).digest("hex");
  return { path, source, sha256, mtime: statSync(source).mtime.toISOString() };
}

