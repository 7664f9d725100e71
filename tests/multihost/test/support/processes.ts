// Processes inside a namespace: started with `ip netns exec`, read until a ready line (bounded), stopped by PID.
// Node apps also get their own UTS namespace and hostname, as on separate machines: kv-transfer offers shared
// memory only to a puller with the same boot id + hostname, so distinct hostnames make the KV move over TCP.
import { spawnChild } from "@trtd/process";
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

export async function startInNamespace(o: StartOptions): Promise<NsProcess> {
  const cmd = o.hostname
    ? ["netns", "exec", o.ns, "unshare", "--uts", "sh", "-c", `hostname ${o.hostname} && exec "$0" "$@"`, ...o.argv]
    : ["netns", "exec", o.ns, ...o.argv];
  // ip, unshare and sh all exec: the PID we hold is the app's own.
  const child = spawnChild({ name: o.name, command: "ip", args: cmd, cwd: repoRoot, env: { ...process.env, TRTD_PARENT_PID: String(process.pid) }, keepLines: 100_000 });
  const kill = async () => {
    child.kill("SIGKILL");
    await child.exited;
  };
  let ready: RegExpExecArray;
  try {
    ready = await child.waitForLine(o.ready, o.timeoutMs ?? 90_000);
  } catch (err) {
    await kill();
    throw err;
  }
  return {
    name: o.name,
    pid: child.pid,
    output: child.output,
    ready,
    exited: child.exited.then(() => undefined),
    isRunning: child.alive,
    stop: async (graceMs = 10_000) => {
      await child.stop(graceMs);
    },
    kill,
  };
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
