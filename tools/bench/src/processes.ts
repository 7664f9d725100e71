import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { createServer } from "node:net";
import { ServerStartupError } from "./errors.js";

/** A free TCP port on 127.0.0.1 chosen by the OS (listen on 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface ManagedProcess {
  readonly pid: number;
  readonly name: string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** Last lines of its output, for error messages. */
  tail(): string;
  /** Resolves with the first output line matching `re` (seen from the start); rejects on exit or after timeoutMs. */
  waitForLine(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /**
   * Records the process's descendants (children may have moved to process groups of their own), sends SIGTERM
   * to the process's group, waits up to `graceMs` for it to exit, gives the descendants the same time again,
   * then SIGKILLs its group and every recorded descendant still alive, and waits (bounded) until they are gone.
   * Idempotent.
   */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts a command as the leader of a new process group, output appended to `logFile` (and kept in a short
 * in-memory tail). The caller owns it and must `stop()` it.
 */
export function startProcess(name: string, command: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; logFile?: string } = {}): ManagedProcess {
  const child: ChildProcess = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const log: WriteStream | undefined = opts.logFile ? createWriteStream(opts.logFile, { flags: "a" }) : undefined;
  let tail = "";
  // Whole lines seen so far (bounded), and waiters for a pattern.
  const lines: string[] = [];
  let partial = "";
  const waiters = new Set<(line: string) => void>();
  const keep = (d: Buffer) => {
    if (log && !log.writableEnded) log.write(d);
    const text = d.toString("utf8");
    tail = (tail + text).slice(-4000);
    const parts = (partial + text).split(/\r?\n/);
    partial = parts.pop() ?? "";
    for (const line of parts) {
      if (lines.length < 10_000) lines.push(line);
      for (const w of [...waiters]) w(line);
    }
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  let exitedFlag = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once("error", (err) => {
      tail += `\n${err.message}`;
      exitedFlag = true;
      log?.end();
      resolve("spawn-error");
    });
    child.once("exit", (code, signal) => {
      exitedFlag = true;
      resolve(code ?? signal ?? "unknown");
    });
    // Output can still arrive between "exit" and "close" (the pipes drain after the process is gone): the log is
    // ended once every pipe has closed.
    child.once("close", () => log?.end());
  });
  const pid = child.pid ?? -1;
  let stopping: Promise<void> | undefined;
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // The group is gone already.
    }
  };
  return {
    pid,
    name,
    exited,
    tail: () => tail,
    waitForLine(re, timeoutMs) {
      for (const l of lines) {
        const m = l.match(re);
        if (m) return Promise.resolve(m);
      }
      return new Promise((resolve, reject) => {
        const done = (err?: Error, m?: RegExpMatchArray) => {
          clearTimeout(timer);
          waiters.delete(onLine);
          if (err) reject(err);
          else resolve(m!);
        };
        const onLine = (l: string) => {
          const m = l.match(re);
          if (m) done(undefined, m);
        };
        const timer = setTimeout(() => done(new ServerStartupError(`${name} printed no line matching ${re} within ${timeoutMs} ms:\n${tail}`)), timeoutMs);
        waiters.add(onLine);
        void exited.then((code) => done(new ServerStartupError(`${name} exited (${code}) before printing a line matching ${re}:\n${tail}`)));
      });
    },
    stop(graceMs = 5000) {
      stopping ??= (async () => {
        if (pid <= 0) return;
        const family = descendantPids(pid);
        signalGroup("SIGTERM");
        if (!exitedFlag) await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs).unref())]);
        // Children get up to the grace period again to finish their own shutdown after the leader exits.
        const deadline = Date.now() + graceMs;
        while (Date.now() < deadline && family.some(pidAlive)) await new Promise((r) => setTimeout(r, 50));
        signalGroup("SIGKILL");
        for (const p of family) killPid(p, "SIGKILL");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 2000).unref())]);
        for (let i = 0; i < 40 && (groupAlive(pid) || family.some(pidAlive)); i++) await new Promise((r) => setTimeout(r, 50));
      })();
      return stopping;
    },
  };
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

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone already.
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `url` until it answers with a 2xx, the process exits, or `timeoutMs` passes. */
export async function waitForHttp(url: string, proc: ManagedProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void proc.exited.then(() => (gone = true));
  let lastError = "";
  while (Date.now() < deadline) {
    if (gone) throw new ServerStartupError(`${proc.name} exited before ${url} answered:\n${proc.tail()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) return;
      lastError = `HTTP ${res.status}`;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new ServerStartupError(`${url} did not answer within ${timeoutMs} ms (${lastError}); ${proc.name} output:\n${proc.tail()}`);
}
