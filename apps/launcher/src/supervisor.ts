// Child processes of the launcher, on @trtd/process (the one child-process helper): started with their role's
// argv, output prefixed, restarted (bounded) when they crash, stopped by PID with SIGTERM then SIGKILL.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { spawnChild, type Child } from "@trtd/process";
import { PARENT_PID_ENV } from "@trtd/apps-common";

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
  /** Called for every stdout line (the api's "listening on" line is read this way). */
  onLine?: (line: string) => void;
}

export interface SupervisorOptions {
  repoRoot: string;
  maxRestarts: number;
  /** Bound on a child's graceful stop before SIGKILL. */
  stopTimeoutMs?: number;
  log: (line: string) => void;
  /** A child crashed more than maxRestarts times. */
  onGiveUp: (name: string) => void;
}

interface Supervised {
  spec: ChildSpec;
  proc: Child | undefined;
  restarts: number;
  exited: Promise<void>;
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
    const s: Supervised = { spec, proc: undefined, restarts: 0, exited: Promise.resolve() };
    this.children.set(spec.name, s);
    this.launch(s);
  }

  private launch(s: Supervised): void {
    const { spec } = s;
    const proc = spawnChild({
      name: spec.name,
      command: process.execPath,
      args: [...appCommand(this.o.repoRoot, spec.app), ...spec.args],
      cwd: this.o.repoRoot,
      env: { ...process.env, ...spec.env, [PARENT_PID_ENV]: String(process.pid) },
      // Own process group: a terminal's Ctrl-C reaches only the launcher, which stops children in order.
      detached: true,
      echo: true, // as `[name] line`
      onLine: (l, stream) => stream === "stdout" && spec.onLine?.(l),
    });
    this.live.add(proc);
    void proc.exited.then(() => this.live.delete(proc));
    s.proc = proc;
    s.exited = proc.exited.then(({ code, signal }) => {
      if (this.stopping) return;
      this.o.log(`${spec.name} (pid ${proc.pid}) exited unexpectedly (${signal ?? `code ${code}`})`);
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
