// An app as a real child process, on @trtd/process (the one child-process helper): read until it prints its ready
// line (bounded), stopped by PID (SIGTERM, then SIGKILL after a bound).
import type { ChildProcess } from "node:child_process";
import { parseWorkerReadyLine, READY_PATTERNS, type ReadyApp } from "@trtd/apps-common";
import { parseEchoedLine, spawnChild, type ChildExit } from "@trtd/process";
import { appArgv, repoRoot } from "./paths.js";

export type AppExit = ChildExit;

export interface AppProcess<App extends ReadyApp = ReadyApp> {
  readonly app: App;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The URL its ready line names (an api's, a launcher's with an api: group `url`); else "". */
  readonly url: string;
  /** Everything it printed, stdout and stderr (for failure messages). */
  readonly output: string[];
  readonly exited: Promise<AppExit>;
  /** Sends `signal` if it is still running. */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL after `boundMs` (default: the start option `stopBoundMs`); resolves when it exited. */
  stop(boundMs?: number): Promise<void>;
}

export interface StartAppOptions {
  /** A line matching this means ready (default: the app's own ready line, READY_PATTERNS of @trtd/apps-common). */
  ready?: RegExp;
  /** Bound on the wait for the ready line. */
  timeoutMs: number;
  /** Default SIGTERM-to-SIGKILL bound of `stop()`. */
  stopBoundMs: number;
  /** SIGTERM-to-SIGKILL bound used when the ready line never came (default `stopBoundMs`). */
  notReadyStopBoundMs?: number;
  /** Extra environment on top of this process's own. */
  env?: NodeJS.ProcessEnv;
}

/** Runs `apps/<app>/src/main.ts` with tsx from the repo root and resolves once it printed its ready line. */
export async function startApp<App extends ReadyApp>(app: App, args: string[], opts: StartAppOptions): Promise<AppProcess<App>> {
  const [node, ...argv] = appArgv(app, args);
  const child = spawnChild({
    name: app,
    command: node,
    args: argv,
    cwd: repoRoot,
    // If this test process dies without stopping it, the app (and a launcher's children) stop on their own.
    env: { ...process.env, TRTD_PARENT_PID: String(process.pid), ...opts.env },
    keepLines: 100_000,
  });
  let m: RegExpExecArray;
  try {
    m = await child.waitForLine(opts.ready ?? READY_PATTERNS[app], opts.timeoutMs);
  } catch (err) {
    await child.stop(opts.notReadyStopBoundMs ?? opts.stopBoundMs);
    throw err;
  }
  const stop = async (boundMs = opts.stopBoundMs) => {
    await child.stop(boundMs);
  };
  return { app, proc: child.proc, pid: child.pid, url: m.groups?.url ?? "", output: child.output, exited: child.exited, kill: child.kill, stop };
}

/** PIDs of a launcher's child `name` (e.g. decode-0), in start order, from the worker ready lines the launcher echoes. */
export function launcherChildPids(launcher: { readonly output: string[] }, name: string): number[] {
  return launcher.output.flatMap((l) => {
    const echoed = parseEchoedLine(l);
    const ready = echoed?.name === name ? parseWorkerReadyLine(echoed.line) : undefined;
    return ready ? [ready.pid] : [];
  });
}
