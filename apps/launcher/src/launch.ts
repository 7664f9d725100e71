// Brings a deployment up: nats-server when asked, N prefill + M decode workers and the api as supervised child
// processes, or everything in this process on the in-process request plane. Resolves once the api reports
// all workers ready.
import { chmodSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { NATS_AUTH_ENV, parseApiReadyLine, parseWorkerReadyLine, type NatsRole } from "@trtd/apps-common";
import { startApiServer } from "@trtd/api";
import { startDecodeWorker } from "@trtd/decode";
import { startPrefillWorker } from "@trtd/prefill";
import { createInProcessPlane, NatsServerNotFoundError, probeNatsServer, startNatsServer, type NatsServerHandle } from "@trtd/request-plane";
import { apiArgv, heapNodeArgs, prefillArgv, workerArgv, workerExecutor, type LauncherCli } from "./cli.js";
import { natsAccounts } from "./nats-accounts.js";
import { Supervisor } from "./supervisor.js";

export interface Deployment {
  /** "" with --no-api (workers only on this host). A restarted api given --api-server-port 0 listens on a new port: this follows it. */
  readonly apiUrl: string;
  readonly mode: "processes" | "in-process";
  readonly requestPlaneUri?: string;
  /** Child PIDs by name (processes mode). */
  readonly pids: Record<string, number | undefined>;
  /** Stops the api, then the workers (they finish what they hold), then nats-server. Idempotent. */
  stop(): Promise<void>;
  /** Resolves when the deployment failed on its own (a child gave up); the launcher then exits. */
  readonly failed: Promise<string>;
}

export interface LaunchOptions {
  repoRoot: string;
  log: (line: string) => void;
}

export class LaunchError extends Error {
  readonly code = "launch_failed" as const;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LaunchError";
  }
}

function hostPort(uri: string): { host: string; port: number } {
  const u = new URL(uri);
  return { host: u.hostname, port: u.port ? Number(u.port) : 4222 };
}

/** Polls /health until the api sees the expected workers; bounded. */
async function waitHealthy(url: string, prefill: number, decode: number, deadline: number, failed: Promise<string>): Promise<void> {
  let gaveUp: string | undefined;
  void failed.then((n) => (gaveUp = n));
  let last = "no answer";
  while (Date.now() < deadline) {
    if (gaveUp) throw new LaunchError(`${gaveUp} failed during bring-up`);
    try {
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
      const h = (await r.json()) as { decodeWorkers: number; prefillWorkers: number };
      last = `${h.decodeWorkers}/${decode} decode, ${h.prefillWorkers}/${prefill} prefill workers`;
      if (r.ok && h.decodeWorkers >= decode && h.prefillWorkers >= prefill) return;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(250);
  }
  throw new LaunchError(`not ready in time (${last})`);
}

/** `p` (a child's ready line seen), or a LaunchError when a child gives up first or the deadline passes. */
function duringBringUp<T>(p: Promise<T>, failed: Promise<string>, deadline: number, late: () => string): Promise<T> {
  return Promise.race([
    p,
    failed.then((n) => Promise.reject(new LaunchError(`${n} failed during bring-up`))),
    sleep(Math.max(0, deadline - Date.now()), undefined, { ref: false }).then(() => Promise.reject(new LaunchError(late()))),
  ]);
}

type Role = NatsRole;

/**
 * With --use-running-request-plane: whether a NATS server already answers at `uri` (bounded probe). One that
 * refuses anonymous clients or needs TLS is a LaunchError before anything starts: its credentials come with
 * --request-plane-credentials and the TLS flags, without --initialize-request-plane.
 */
async function runningNats(uri: string, log: (line: string) => void): Promise<boolean> {
  const { host, port } = hostPort(uri);
  const info = await probeNatsServer(host, port, 1000);
  if (!info) return false;
  const needs = info.auth_required ? "credentials" : info.tls_required ? "TLS" : undefined;
  if (needs) {
    throw new LaunchError(`the NATS server at ${uri} requires ${needs}: drop --initialize-request-plane and pass --request-plane-credentials / --request-plane-tls-* for it`);
  }
  log(`a NATS server (${String(info.version ?? "unknown version")}) already answers at ${uri}: using it; this launcher does not stop it`);
  return true;
}

export async function launch(cli: LauncherCli, o: LaunchOptions): Promise<Deployment> {
  const deadline = Date.now() + cli.readyTimeoutMs;
  if (cli.inProcess) return launchInProcess(cli, o, deadline);
  let nats: NatsServerHandle | undefined;
  // The nats-server this launcher starts refuses anonymous clients: each role gets an account made here (random
  // password), handed to its processes through the environment (TRTD_NATS_USER / TRTD_NATS_PASS, which every role
  // reads; never argv, which `ps` shows). So no other process on the host can call a worker around the api's key,
  // and each account may do only what its role does (a worker's cannot serve the other role or call endpoints).
  // With an external NATS every role gets the credentials and TLS files given to the launcher the same way. Either
  // way the settings replace any TRTD_NATS_* the launcher inherited (a stray token must not join an account).
  // npm start: a NATS already running at the URI is used as it is (this launcher neither starts nor stops it).
  const initialize = cli.initializeRequestPlane && !(cli.useRunningRequestPlane && (await runningNats(cli.requestPlaneUri, o.log)));
  const accounts = initialize ? natsAccounts(cli.namespace) : undefined;
  const noInherited = Object.fromEntries(Object.values(NATS_AUTH_ENV).map((k) => [k, ""]));
  const natsEnv = (role: Role): Record<string, string> => {
    if (accounts) return { ...noInherited, [NATS_AUTH_ENV.user]: accounts[role].user, [NATS_AUTH_ENV.pass]: accounts[role].password };
    return cli.requestPlaneAuth ? ({ ...noInherited, ...cli.requestPlaneAuth } as Record<string, string>) : {};
  };
  if (initialize) {
    try {
      nats = await startNatsServer({ ...hostPort(cli.requestPlaneUri), jetstream: true, users: Object.values(accounts!) });
      o.log(`nats-server ${nats.uri} started (pid ${nats.pid}, JetStream on, one account per role; anonymous clients refused)`);
      if (cli.requestPlaneCredentialsFile) {
        const env = natsEnv("api");
        const lines = Object.entries(env).filter(([, v]) => v !== "");
        writeFileSync(cli.requestPlaneCredentialsFile, lines.map(([k, v]) => `${k}=${v}\n`).join(""), { mode: 0o600 });
        chmodSync(cli.requestPlaneCredentialsFile, 0o600); // an existing file keeps its mode on write
        o.log(`the api account of the request plane is in ${cli.requestPlaneCredentialsFile} (mode 0600)`);
      }
    } catch (err) {
      if (err instanceof NatsServerNotFoundError && cli.inProcessFallback) {
        o.log(`nats-server is not installed (${err.message}); running every part in this process on the in-process request plane instead`);
        return launchInProcess(cli, o, deadline);
      }
      throw err;
    }
  }
  const uri = nats?.uri ?? cli.requestPlaneUri;
  let resolveFailed!: (name: string) => void;
  const failed = new Promise<string>((r) => (resolveFailed = r));
  const sup = new Supervisor({ repoRoot: o.repoRoot, maxRestarts: cli.maxRestarts, wedged: cli.wedged, log: o.log, onGiveUp: (n) => resolveFailed(n) });
  let apiUrl: string | undefined;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await sup.stop([sup.names("api"), [...sup.names("prefill"), ...sup.names("decode")]]);
      await nats?.stop();
    })());
  try {
    // Each worker prints its ready line (apps/common's ready-line.ts) once it takes requests.
    const workersReady = new Set<string>();
    const workerCount = cli.contextWorkers + cli.generateWorkers;
    let allWorkersReady!: () => void;
    const workersUp = new Promise<void>((r) => (allWorkersReady = r));
    const readyLine = (name: string) => (l: string) => {
      if (parseWorkerReadyLine(l)) workersReady.add(name);
      if (workersReady.size === workerCount) allWorkersReady();
    };
    for (let i = 0; i < cli.generateWorkers; i++) {
      sup.start({ name: `decode-${i}`, app: "decode", args: workerArgv(cli, uri, "decode", i), env: { ...cli.roleEnv.decode, ...natsEnv("decode") }, onLine: readyLine(`decode-${i}`), health: true, nodeArgs: heapNodeArgs(cli.workerHeapMb) });
    }
    for (let i = 0; i < cli.contextWorkers; i++) {
      sup.start({ name: `prefill-${i}`, app: "prefill", args: prefillArgv(cli, uri, i), env: { ...cli.roleEnv.prefill, ...natsEnv("prefill") }, onLine: readyLine(`prefill-${i}`), health: true, nodeArgs: heapNodeArgs(cli.workerHeapMb) });
    }
    if (cli.noApi) {
      await duringBringUp(workersUp, failed, deadline, () => `not ready in time (${workersReady.size}/${workerCount} workers serving)`);
      return { apiUrl: "", mode: "processes", requestPlaneUri: uri, pids: sup.pids, stop, failed };
    }
    const urlSeen = new Promise<string>((resolve) =>
      sup.start({
        name: "api",
        app: "api",
        args: apiArgv(cli, uri),
        env: natsEnv("api"),
        onLine: (l) => {
          const api = parseApiReadyLine(l);
          if (api) resolve((apiUrl = api.url));
        },
        // The launcher probes the api's /health on the URL it printed (127.0.0.1 when it listens on every address).
        httpHealth: { url: (l: string) => parseApiReadyLine(l)?.url },
        nodeArgs: heapNodeArgs(cli.apiHeapMb),
      }),
    );
    const url = await duringBringUp(urlSeen, failed, deadline, () => "the api did not start in time");
    // With no decode worker on this host, ready means the api sees one elsewhere (it cannot serve before).
    await waitHealthy(url, cli.contextWorkers, Math.max(1, cli.generateWorkers), deadline, failed);
    return {
      get apiUrl() {
        return apiUrl ?? url;
      },
      mode: "processes",
      requestPlaneUri: uri,
      get pids() {
        return sup.pids;
      },
      stop,
      failed,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function launchInProcess(cli: LauncherCli, o: LaunchOptions, deadline: number): Promise<Deployment> {
  if (Object.keys(cli.roleEnv.prefill).length + Object.keys(cli.roleEnv.decode).length > 0) {
    throw new LaunchError("--prefill-env/--decode-env need separate processes: drop --in-process");
  }
  const plane = createInProcessPlane();
  const stops: Array<() => Promise<void>> = [];
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      for (const s of stops) await s();
      await plane.close();
    })());
  try {
    for (let i = 0; i < cli.generateWorkers; i++) {
      const w = await startDecodeWorker({ plane, executor: workerExecutor(cli, "decode", i), namespace: cli.namespace, log: (l) => o.log(`decode-${i}: ${l}`) });
      stops.push(() => w.stop());
    }
    for (let i = 0; i < cli.contextWorkers; i++) {
      const w = await startPrefillWorker({ plane, executor: workerExecutor(cli, "prefill", i), namespace: cli.namespace, log: (l) => o.log(`prefill-${i}: ${l}`) });
      stops.push(() => w.stop());
    }
    const api = await startApiServer({
      plane,
      tokenizerDir: cli.executor.modelDir,
      modelName: cli.modelName,
      host: cli.apiHost,
      port: cli.apiPort,
      namespace: cli.namespace,
      apiKey: cli.apiKey ?? (process.env.TRTD_API_KEY || undefined),
      prefill: cli.disaggMinPromptTokens !== undefined ? { minPromptTokens: cli.disaggMinPromptTokens } : undefined,
      routerMode: cli.routerMode,
      log: (l) => o.log(`api: ${l}`),
    });
    stops.unshift(() => api.close()); // the api closes first, then the workers finish what they hold
    await waitHealthy(api.url, cli.contextWorkers, cli.generateWorkers, deadline, new Promise(() => {}));
    return { apiUrl: api.url, mode: "in-process", pids: { launcher: process.pid }, stop, failed: new Promise(() => {}) };
  } catch (err) {
    await stop();
    throw err;
  }
}
