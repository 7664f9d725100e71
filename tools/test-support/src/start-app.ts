// An app as a real child process: read until it prints its ready line (bounded), stopped by PID
// (SIGTERM, then SIGKILL after a bound).
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { appArgv, repoRoot } from "./paths.js";

export interface AppExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface AppProcess<App extends string = string> {
  readonly app: App;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Group 1 of the ready line, if the pattern has one (the URL an api or launcher announces); else "". */
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
  /** A stdout line matching this means ready; its group 1, if any, becomes `url`. */
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
export function startApp<App extends string>(app: App, args: string[], opts: StartAppOptions): Promise<AppProcess<App>> {
  const [node, ...argv] = appArgv(app, args);
  const proc = spawn(node, argv, {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    // If this test process dies without stopping it, the app (and a launcher's children) stop on their own.
    env: { ...process.env, TRTD_PARENT_PID: String(process.pid), ...opts.env },
  });
  const output: string[] = [];
  const exited = new Promise<AppExit>((r) => proc.once("exit", (code, signal) => r({ code, signal })));
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const kill = (signal: NodeJS.Signals) => {
    if (alive()) proc.kill(signal);
  };
  const stop = async (boundMs = opts.stopBoundMs) => {
    kill("SIGTERM");
    const t = setTimeout(() => kill("SIGKILL"), boundMs);
    await exited;
    clearTimeout(t);
  };
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      void stop(opts.notReadyStopBoundMs ?? opts.stopBoundMs);
      reject(new Error(`${app} not ready after ${opts.timeoutMs} ms:\n${output.join("\n")}`));
    }, opts.timeoutMs);
    createInterface({ input: proc.stderr! }).on("line", (l) => output.push(l));
    createInterface({ input: proc.stdout! }).on("line", (l) => {
      output.push(l);
      const m = opts.ready.exec(l);
      if (m) {
        clearTimeout(timer);
        resolveStart({ app, proc, pid: proc.pid!, url: m[1] ?? "", output, exited, kill, stop });
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${app} exited (${code ?? signal}) before it was ready:\n${output.join("\n")}`));
    });
  });
}
