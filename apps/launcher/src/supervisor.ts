// Child processes of the launcher, on @trtd/process (the one child-process helper): started with their role's
// argv, output prefixed, restarted (bounded) when they crash or are wedged, stopped by PID with SIGTERM then SIGKILL.
// Wedged: a worker reports its health over an IPC channel (apps-common `reportHealthToSupervisor`), and the api
// answers GET /health, which the supervisor probes on the URL the api printed. No first sign of life within the
// startup bound of a spawn (stopped or hung while it starts), signs that stop (a stopped or hung process), or a
// worker saying its engine is stalled, each past its bound, get the process stopped and restarted like a crash
// (same --max-restarts budget and backoff).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { spawnChild, type Child } from "@trtd/process";
import { isWorkerHealthMessage, PARENT_PID_ENV } from "@trtd/apps-common";

export type AppName = "api" | "prefill" | "decode";

/** Set to 1: the launcher runs its apps from their TypeScript sources (tsx) even when it runs from dist/. */
export const SOURCE_MODE_ENV = "TRTD_SOURCE";

/** Whether this module runs from TypeScript sources (tsx, vitest) rather than tsup's dist/. */
const RUNNING_FROM_SOURCE = import.meta.url.endsWith(".ts");

/**
 * How to run an app. Apps run as the launcher itself does: from tsup's dist/ (`node apps/<app>/dist/main.js`,
 * what `npm start` does) or, when the launcher runs from its TypeScript sources (tsx, tests) or
 * TRTD_SOURCE=1, from sources through tsx. TRTD_RUN_DIST=1 forces dist/. A missing dist/ is an error naming
 * the build command, never a silent fallback.
 */
export function appCommand(repoRoot: string, app: AppName, env: NodeJS.ProcessEnv = process.env): string[] {
  const src = join(repoRoot, "apps", app, "src/main.ts");
  const dist = join(repoRoot, "apps", app, "dist/main.js");
  const fromSource = env.TRTD_RUN_DIST !== "1" && (env[SOURCE_MODE_ENV] === "1" || RUNNING_FROM_SOURCE) && existsSync(src);
  if (fromSource) return ["--import", "tsx", "--conditions=source", src];
  if (!existsSync(dist)) {
    throw new Error(`${dist} is missing: build the apps ("npm start" does, or "npx nx run-many -t build"), or run from sources with TRTD_SOURCE=1`);
  }
  return [dist];
}

export interface ChildSpec {
  name: string;
  app: AppName;
  args: string[];
  /** Extra environment for this child. */
  env?: Record<string, string>;
  /** Called for every stdout line (the api's ready line is read this way). */
  onLine?: (line: string) => void;
  /** A worker: it reports its health over IPC, and is restarted when wedged (see {@link WedgedOptions}). */
  health?: boolean;
  /**
   * An HTTP server (the api): `url` finds its base URL in a stdout line ("listening on ..."); from then on GET
   * `<url>/health` is probed every API_PROBE_INTERVAL_MS (any HTTP answer is a sign of life, whatever its status),
   * and it is restarted when wedged (see {@link WedgedOptions}).
   */
  httpHealth?: { url: (line: string) => string | undefined };
  /** Node options before the app's entry, e.g. `--max-old-space-size=512`. */
  nodeArgs?: string[];
}

/** When a child that gives signs of life (a worker's health reports, the api's answers) counts as wedged; each bound 0 = that check off. */
export interface WedgedOptions {
  /** A worker: no health report for this long (after its first): the process is stopped (SIGSTOP) or its JS thread hangs. */
  livenessTimeoutMs: number;
  /** A worker: its engine reported stalled continuously for this long (the api moved its requests when it first said so). */
  stalledRestartMs: number;
  /**
   * No first sign of life (a worker's first health report, the api's first answer to /health) this long after the
   * spawn: it stopped or hung while starting (loading the model, connecting). The launcher's default is
   * --ready-timeout-ms, so a slow start that bring-up accepts is accepted on a restart too.
   */
  startupTimeoutMs: number;
  /** The api: no answer to a /health probe for this long (after its first). */
  apiLivenessTimeoutMs: number;
  /** SIGTERM, then SIGKILL after this long (a stalled engine cannot finish what it holds; a stopped process ignores SIGTERM). */
  stopGraceMs: number;
}

export const DEFAULT_WEDGED: WedgedOptions = { livenessTimeoutMs: 10_000, stalledRestartMs: 10_000, startupTimeoutMs: 180_000, apiLivenessTimeoutMs: 10_000, stopGraceMs: 2000 };
const WEDGED_CHECK_MS = 250;
/** The api's /health is probed this often, each probe bounded by API_PROBE_TIMEOUT_MS. */
export const API_PROBE_INTERVAL_MS = 1000;
export const API_PROBE_TIMEOUT_MS = 1000;

export interface SupervisorOptions {
  repoRoot: string;
  maxRestarts: number;
  /** Bound on a child's graceful stop before SIGKILL. */
  stopTimeoutMs?: number;
  log: (line: string) => void;
  /** A child crashed more than maxRestarts times. */
  onGiveUp: (name: string) => void;
  /** Default {@link DEFAULT_WEDGED}. */
  wedged?: WedgedOptions;
}

interface Supervised {
  spec: ChildSpec;
  proc: Child | undefined;
  restarts: number;
  exited: Promise<void>;
  /** Why the supervisor stopped the running process (it was wedged); undefined for a crash. */
  wedgedReason: string | undefined;
}

export class Supervisor {
  private readonly children = new Map<string, Supervised>();
  private stopping = false;
  private readonly live = new Set<Child>();
  constructor(private readonly o: SupervisorOptions) {
    // Last resort when the launcher exits without stop(): children go with it (they also watch our PID).
    process.once("exit", () => {
      for (const c of this.live) c.kill("SIGKILL");
    });
  }

  get pids(): Record<string, number | undefined> {
    return Object.fromEntries([...this.children].map(([n, c]) => [n, c.proc?.pid]));
  }

  start(spec: ChildSpec): void {
    const s: Supervised = { spec, proc: undefined, restarts: 0, exited: Promise.resolve(), wedgedReason: undefined };
    this.children.set(spec.name, s);
    this.launch(s);
  }

  private launch(s: Supervised): void {
    const { spec } = s;
    const watchdog = this.watchdog(s);
    const proc = spawnChild({
      name: spec.name,
      command: process.execPath,
      args: [...(spec.nodeArgs ?? []), ...appCommand(this.o.repoRoot, spec.app), ...spec.args],
      cwd: this.o.repoRoot,
      env: { ...process.env, ...spec.env, [PARENT_PID_ENV]: String(process.pid) },
      // Own process group: a terminal's Ctrl-C reaches only the launcher, which stops children in order.
      detached: true,
      echo: true, // as `[name] line`
      onLine: (l, stream) => {
        if (stream !== "stdout") return;
        spec.onLine?.(l);
        watchdog?.onLine(l);
      },
      onMessage: spec.health ? watchdog?.onMessage : undefined,
    });
    this.o.log(`${spec.name} (pid ${proc.pid}) started${spec.nodeArgs?.length ? ` (node ${spec.nodeArgs.join(" ")})` : ""}`);
    watchdog?.watch(proc);
    this.live.add(proc);
    void proc.exited.then(() => this.live.delete(proc));
    s.proc = proc;
    s.exited = proc.exited.then(({ code, signal }) => {
      watchdog?.close();
      if (this.stopping) return;
      const why = s.wedgedReason;
      s.wedgedReason = undefined;
      this.o.log(`${spec.name} (pid ${proc.pid}) ${why ? `stopped (${signal ?? `code ${code}`}): ${why}` : `exited unexpectedly (${signal ?? `code ${code}`})`}`);
      if (s.restarts >= this.o.maxRestarts) {
        this.o.onGiveUp(spec.name);
        return;
      }
      s.restarts++;
      const backoff = Math.min(10_000, 500 * 2 ** (s.restarts - 1));
      this.o.log(`restarting ${spec.name} in ${backoff} ms (restart ${s.restarts} of ${this.o.maxRestarts})`);
      setTimeout(() => !this.stopping && this.launch(s), backoff).unref();
    });
  }

  /**
   * The watchdog of one process of `s` (undefined for a child that gives no signs of life): a worker's health
   * reports arrive through `onMessage`; the api's URL through `onLine`, after which its /health is probed. `watch`
   * checks the bounds every WEDGED_CHECK_MS and stops a wedged process (its exit then restarts it); `close` ends
   * the checks and the probes.
   */
  private watchdog(s: Supervised): { onMessage: (m: unknown) => void; onLine: (line: string) => void; watch: (proc: Child) => void; close: () => void } | undefined {
    const { spec } = s;
    if (!spec.health && !spec.httpHealth) return undefined;
    const w = this.o.wedged ?? DEFAULT_WEDGED;
    let spawnedAt = performance.now();
    /** When the last sign of life came (a health report, an answer to a probe); undefined before the first. */
    let lastAlive: number | undefined;
    let stalledSince: number | undefined;
    let url: string | undefined;
    let failedProbes = 0;
    let lastProbeError = "";
    let closed = false;
    let timer: NodeJS.Timeout | undefined;
    const close = () => {
      closed = true;
      clearInterval(timer);
    };
    /** GET <url>/health once per API_PROBE_INTERVAL_MS until closed; each probe bounded by API_PROBE_TIMEOUT_MS. */
    const probe = async (base: string) => {
      while (!closed) {
        const t0 = performance.now();
        try {
          const r = await fetch(`${base}/health`, { signal: AbortSignal.timeout(API_PROBE_TIMEOUT_MS) });
          await r.arrayBuffer(); // read to the end: the connection is reused
          lastAlive = performance.now();
          failedProbes = 0;
        } catch (err) {
          failedProbes++;
          const e = err as Error & { cause?: { code?: string } };
          lastProbeError = e.name === "TimeoutError" ? `no answer within ${API_PROBE_TIMEOUT_MS} ms` : (e.cause?.code ?? e.message);
        }
        await sleep(Math.max(0, API_PROBE_INTERVAL_MS - (performance.now() - t0)), undefined, { ref: false });
      }
    };
    const what = spec.health ? "health report" : "answer to GET /health";
    return {
      onMessage: (m) => {
        if (!isWorkerHealthMessage(m)) return;
        const now = performance.now();
        lastAlive = now;
        stalledSince = m.stalled ? (stalledSince ?? now) : undefined;
      },
      onLine: (line) => {
        if (url !== undefined || !spec.httpHealth) return;
        url = spec.httpHealth.url(line);
        if (url !== undefined) void probe(url);
      },
      watch: (proc) => {
        spawnedAt = performance.now();
        let lastCheck = spawnedAt;
        timer = setInterval(() => {
          const now = performance.now();
          // This process was itself paused (suspend, SIGSTOP of the launcher): its children's silence is not theirs.
          if (now - lastCheck > 4 * WEDGED_CHECK_MS) {
            spawnedAt = now;
            if (lastAlive !== undefined) lastAlive = now;
          }
          lastCheck = now;
          if (this.stopping || !proc.alive()) return;
          const liveness = spec.health ? w.livenessTimeoutMs : w.apiLivenessTimeoutMs;
          let reason: string | undefined;
          if (lastAlive === undefined) {
            if (w.startupTimeoutMs > 0 && now - spawnedAt > w.startupTimeoutMs) {
              reason = `no ${what} within ${w.startupTimeoutMs} ms of its start${url ? ` (listening on ${url}; ${failedProbes} probes failed, the last: ${lastProbeError})` : ""}: the process is stopped or hung`;
            }
          } else if (liveness > 0 && now - lastAlive > liveness) {
            const probes = spec.httpHealth ? `; ${failedProbes} probes in a row failed, the last: ${lastProbeError}` : "";
            reason = `no ${what} for ${Math.round(now - lastAlive)} ms (bound ${liveness} ms${probes}): the process is stopped or hung`;
          } else if (w.stalledRestartMs > 0 && stalledSince !== undefined && now - stalledSince >= w.stalledRestartMs) {
            reason = `its engine reported stalled for ${Math.round(now - stalledSince)} ms (bound ${w.stalledRestartMs} ms)`;
          }
          if (!reason) return;
          close();
          s.wedgedReason = `wedged, ${reason}`;
          this.o.log(`${spec.name} (pid ${proc.pid}) is wedged: ${reason}; stopping it (SIGTERM, SIGKILL after ${w.stopGraceMs} ms) to restart it`);
          void proc.stop(w.stopGraceMs);
        }, WEDGED_CHECK_MS);
        timer.unref();
      },
      close,
    };
  }

  /** Stops children in the given order of groups (e.g. api first, then workers), each group in parallel. */
  async stop(order: string[][]): Promise<void> {
    this.stopping = true;
    const timeout = this.o.stopTimeoutMs ?? 40_000;
    for (const group of order) {
      await Promise.all(
        group.map(async (name) => {
          const s = this.children.get(name);
          if (!s?.proc?.alive()) return;
          await s.proc.stop(timeout);
          await s.exited;
        }),
      );
    }
  }

  names(app?: AppName): string[] {
    return [...this.children.values()].filter((c) => !app || c.spec.app === app).map((c) => c.spec.name);
  }
}
