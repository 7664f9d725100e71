// An app as a real child process, on @trtd/process (the one child-process helper): read until it prints its ready
// line (bounded), stopped by PID (SIGTERM, then SIGKILL after a bound).
import type { ChildProcess } from "node:child_process";
import { spawnChild, type ChildExit } from "@trtd/process";
import { appArgv, repoRoot } from "./paths.js";

export type AppExit = ChildExit;

export interface AppProcess<App extends string = string> {
  readonly app: App;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Group `url` of its ready line (an api's, a launcher's with an api; READY_PATTERNS of @trtd/apps-common); else "". */
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
  /** A line matching this means ready: the app's own pattern, `READY_PATTERNS[app]` of @trtd/apps-common. */
  ready: RegExp;
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
export async function startApp<App extends string>(app: App, args: string[], opts: StartAppOptions): Promise<AppProcess<App>> {
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
    m = await child.waitForLine(opts.ready, opts.timeoutMs);
  } catch (err) {
    await child.stop(opts.notReadyStopBoundMs ?? opts.stopBoundMs);
    throw err;
  }
  const stop = async (boundMs = opts.stopBoundMs) => {
    await child.stop(boundMs);
  };
  return { app, proc: child.proc, pid: child.pid, url: m.groups?.url ?? "", output: child.output, exited: child.exited, kill: child.kill, stop };
}
