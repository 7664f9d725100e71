// Processes inside a namespace: started with `ip netns exec`, read until a ready line (bounded), stopped by PID.
// Node apps also get their own UTS namespace and hostname, as on separate machines: kv-transfer offers shared
// memory only to a puller with the same boot id + hostname, so distinct hostnames make the KV move over TCP.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import * as support from "@trtd/test-support";
import { repoRoot } from "@trtd/test-support";

export { repoRoot, modelDir } from "@trtd/test-support";

export interface NsProcess {
  readonly name: string;
  readonly pid: number;
  readonly output: string[];
  /** The first match of the ready pattern. */
  readonly ready: RegExpExecArray;
  readonly exited: Promise<void>;
  isRunning(): boolean;
  /** SIGTERM, SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
  kill(): Promise<void>;
}

export interface StartOptions {
  name: string;
  ns: string;
  /** Set for node apps: run in a fresh UTS namespace with this hostname. */
  hostname?: string;
  argv: string[];
  ready: RegExp;
  timeoutMs?: number;
}

export function startInNamespace(o: StartOptions): Promise<NsProcess> {
  const cmd = o.hostname
    ? ["netns", "exec", o.ns, "unshare", "--uts", "sh", "-c", `hostname ${o.hostname} && exec "$0" "$@"`, ...o.argv]
    : ["netns", "exec", o.ns, ...o.argv];
  // ip, unshare and sh all exec: the PID we hold is the app's own.
  const proc: ChildProcess = spawn("ip", cmd, {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TRTD_PARENT_PID: String(process.pid) },
  });
  const output: string[] = [];
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const running = () => proc.exitCode === null && proc.signalCode === null;
  const stop = async (graceMs = 10_000) => {
    if (!running()) return;
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(t);
  };
  const kill = async () => {
    if (!running()) return;
    proc.kill("SIGKILL");
    await exited;
  };
  const timeoutMs = o.timeoutMs ?? 90_000;
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      void kill();
      reject(new Error(`${o.name} not ready after ${timeoutMs} ms:\n${output.slice(-40).join("\n")}`));
    }, timeoutMs);
    const onLine = (l: string) => {
      output.push(l);
      const m = o.ready.exec(l);
      if (m) {
        clearTimeout(timer);
        resolveStart({ name: o.name, pid: proc.pid!, output, ready: m, exited, isRunning: running, stop, kill });
      }
    };
    createInterface({ input: proc.stdout! }).on("line", onLine);
    createInterface({ input: proc.stderr! }).on("line", onLine);
    proc.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${o.name} exited (${code ?? signal}) before it was ready:\n${output.slice(-40).join("\n")}`));
    });
  });
}

/** `node --import tsx --conditions=source apps/<app>/src/main.ts ...args` */
export function appArgv(app: "api" | "prefill" | "decode", args: string[]): string[] {
  return support.appArgv(app, args);
}

/** The launcher: `node --import tsx --conditions=source apps/launcher/src/main.ts ...args` */
export function launcherArgv(args: string[]): string[] {
  return support.appArgv("launcher", args);
}

/** Polls `check` every 200 ms (a check that throws means "not yet") until it returns true; throws after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  await support.eventually(check, timeoutMs, what, { intervalMs: 200 });
}
