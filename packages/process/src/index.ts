// @trtd/process: the one child-process helper of trtd. Spawn, a readiness signal (a line matching a pattern),
// output lines with a prefix, stop by PID with a bounded grace (SIGTERM, then SIGKILL), exit reporting. No
// process-wide handlers: whoever starts a child owns its stop.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

export type ChildStream = "stdout" | "stderr";

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnChildOptions {
  /** Names the child in errors and in the `echo` prefix (`[name] line`). */
  name: string;
  command: string;
  args?: string[];
  cwd?: string;
  /** The child's whole environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Own process group (default false): a terminal's Ctrl-C to this process's group does not reach it. */
  detached?: boolean;
  /** Called for every line of its stdout and stderr. */
  onLine?: (line: string, stream: ChildStream) => void;
  /** Echo each line as `[name] line` to this process's stdout/stderr (default false). */
  echo?: boolean;
  /** Lines kept in `output` (default 2000; older ones are dropped). */
  keepLines?: number;
  /**
   * stop() ends the child's whole tree (implies `detached`): it records the child's descendants (some may have
   * moved to process groups of their own), sends SIGTERM to the child's group, gives the child and then the
   * descendants `graceMs` each, then SIGKILLs the group and every recorded descendant still alive, and waits
   * (bounded) until they are gone. For children that start servers of their own (a launcher, a shell).
   */
  stopTree?: boolean;
  /**
   * Called with every message the child sends over a Node IPC channel (`process.send` in the child). Giving it
   * opens the channel (a fourth stdio entry, "ipc"); without it the child has none.
   */
  onMessage?: (message: unknown) => void;
}

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The last `keepLines` lines it printed, stdout and stderr (for failure messages). */
  readonly output: string[];
  /** Resolves once it exited (never rejects; a failed spawn reports code null, signal null). */
  readonly exited: Promise<ChildExit>;
  alive(): boolean;
  /** Sends `signal` if it is still running. */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL after `graceMs`; resolves with how it exited. Idempotent. */
  stop(graceMs: number): Promise<ChildExit>;
  /**
   * Resolves with the match once a line matches `pattern`, counting lines already printed; rejects with
   * {@link ChildNotReadyError} when it exits first or `timeoutMs` passes.
   */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
}

export const ProcessErrorCode = { NotReady: "child_not_ready", SpawnFailed: "child_spawn_failed" } as const;
export type ProcessErrorCode = (typeof ProcessErrorCode)[keyof typeof ProcessErrorCode];

/** A child did not print its ready line: it exited first, or the bound passed. The message carries its output. */
export class ChildNotReadyError extends Error {
  readonly code = ProcessErrorCode.NotReady;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ChildNotReadyError";
  }
}

/** How `echo` shows a line of child `name`: `[name] line`. */
export function echoedLine(name: string, line: string): string {
  return `[${name}] ${line}`;
}

/** A line `echo` wrote, back as the child's name and its own line; undefined for any other line. */
export function parseEchoedLine(line: string): { name: string; line: string } | undefined {
  const m = /^\[([^\]\s]+)\] (.*)$/.exec(line);
  return m ? { name: m[1]!, line: m[2]! } : undefined;
}

/** Starts a child process; see {@link Child}. */
export function spawnChild(o: SpawnChildOptions): Child {
  const proc = spawn(o.command, o.args ?? [], {
    cwd: o.cwd,
    env: o.env ?? process.env,
    stdio: o.onMessage ? ["ignore", "pipe", "pipe", "ipc"] : ["ignore", "pipe", "pipe"],
    detached: (o.detached || o.stopTree) ?? false,
  });
  if (o.onMessage) proc.on("message", o.onMessage);
  const keep = o.keepLines ?? 2000;
  const output: string[] = [];
  const waiters = new Set<(line: string) => void>();
  let spawnError: Error | undefined;
  const exited = new Promise<ChildExit>((resolve) => {
    proc.once("exit", (code, signal) => resolve({ code, signal }));
    proc.once("error", (err) => {
      spawnError = err;
      if (proc.pid === undefined) resolve({ code: null, signal: null });
    });
  });
  const line = (stream: ChildStream) => (l: string) => {
    output.push(l);
    if (output.length > keep) output.shift();
    if (o.echo) (stream === "stdout" ? process.stdout : process.stderr).write(`${echoedLine(o.name, l)}\n`);
    o.onLine?.(l, stream);
    for (const w of waiters) w(l);
  };
  createInterface({ input: proc.stdout! }).on("line", line("stdout"));
  createInterface({ input: proc.stderr! }).on("line", line("stderr"));
  const alive = () => proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null;
  const kill = (signal: NodeJS.Signals) => {
    if (alive()) proc.kill(signal);
  };
  let stopping: Promise<ChildExit> | undefined;
  const stopChild = async (graceMs: number) => {
    kill("SIGTERM");
    const t = setTimeout(() => kill("SIGKILL"), graceMs);
    const e = await exited;
    clearTimeout(t);
    return e;
  };
  const stop = (graceMs: number) => (stopping ??= o.stopTree && proc.pid !== undefined ? stopTree(proc.pid, exited, graceMs) : stopChild(graceMs));
  const describe = () => `${o.name}${spawnError ? ` (${spawnError.message})` : ""}:\n${output.join("\n")}`;
  const waitForLine = (pattern: RegExp, timeoutMs: number) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const seen = output.map((l) => pattern.exec(l)).find((m) => m !== null);
      if (seen) return resolve(seen);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(onLine);
      };
      const onLine = (l: string) => {
        const m = pattern.exec(l);
        if (m) {
          done();
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new ChildNotReadyError(`${o.name} printed no line matching ${pattern} within ${timeoutMs} ms: ${describe()}`));
      }, timeoutMs);
      waiters.add(onLine);
      void exited.then(async ({ code, signal }) => {
        // lines it printed just before exiting may still be in the pipe: read them first (bounded)
        if (proc.stdout && !proc.stdout.readableEnded) await Promise.race([new Promise((r) => proc.stdout!.once("close", r)), new Promise((r) => setTimeout(r, 200))]);
        if (!waiters.has(onLine)) return;
        done();
        reject(new ChildNotReadyError(`${o.name} exited (${code ?? signal ?? "spawn failed"}) before a line matched ${pattern}: ${describe()}`));
      });
    });
  return { name: o.name, proc, pid: proc.pid ?? -1, output, exited, alive, kill, stop, waitForLine };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function signal(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false; // gone already
  }
}

/** The stop of a `stopTree` child (see SpawnChildOptions.stopTree): `pid` leads its own process group. */
async function stopTree(pid: number, exited: Promise<ChildExit>, graceMs: number): Promise<ChildExit> {
  const family = descendantPids(pid);
  let done = false;
  void exited.then(() => (done = true));
  signal(-pid, "SIGTERM");
  if (!done) await Promise.race([exited, sleep(graceMs)]);
  // Descendants get the grace period again to finish their own shutdown after the leader exits.
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && family.some((p) => signal(p, 0))) await sleep(50);
  signal(-pid, "SIGKILL");
  for (const p of family) signal(p, "SIGKILL");
  // (code and signal null: no exit was reported within 2 s of the SIGKILL)
  const e = await Promise.race([exited, sleep(2000).then((): ChildExit => ({ code: null, signal: null }))]);
  for (let i = 0; i < 40 && (signal(-pid, 0) || family.some((p) => signal(p, 0))); i++) await sleep(50);
  return e;
}

/** Whether a process with this PID exists (signal 0; one that exists but is not ours counts: EPERM). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Every live descendant of `root` (children, their children, ...), from `ps`; [] where ps is unavailable. */
export function descendantPids(root: number): number[] {
  let table: string;
  try {
    table = execFileSync("ps", ["-eo", "pid=,ppid="], { encoding: "utf8", timeout: 5000 });
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const line of table.split("\n")) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number);
    if (!pid) continue;
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    for (const c of children.get(stack.pop()!) ?? []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

export { parseStageLine, STAGE_FLUSH_AFTER_MS, STAGE_LINE_PREFIX, traceStage } from "./stage-trace.js";
