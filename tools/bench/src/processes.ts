import { createWriteStream, type WriteStream } from "node:fs";
import { spawnChild } from "@trtd/process";
import { createServer } from "node:net";
import { ServerStartupError } from "./errors.js";

export { descendantPids } from "@trtd/process";

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
 * Starts a command as the leader of a new process group (`@trtd/process` with `stopTree`), its output lines
 * appended to `logFile`. The caller owns it and must `stop()` it.
 */
export function startProcess(name: string, command: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; logFile?: string } = {}): ManagedProcess {
  const log: WriteStream | undefined = opts.logFile ? createWriteStream(opts.logFile, { flags: "a" }) : undefined;
  const child = spawnChild({
    name,
    command,
    args,
    cwd: opts.cwd,
    env: opts.env,
    stopTree: true,
    keepLines: 10_000,
    onLine: log
      ? (line) => {
          if (!log.writableEnded) log.write(`${line}\n`);
        }
      : undefined,
  });
  // Output can still arrive between "exit" and "close" (the pipes drain after the process is gone): the log is
  // ended once every pipe has closed (or the spawn failed).
  child.proc.once("close", () => log?.end());
  child.proc.once("error", () => log?.end());
  return {
    pid: child.pid,
    name,
    exited: child.exited.then(({ code, signal }) => code ?? signal ?? "spawn-error"),
    tail: () => child.output.join("\n").slice(-4000),
    waitForLine: (re, timeoutMs) =>
      child.waitForLine(re, timeoutMs).catch((err: Error) => {
        throw new ServerStartupError(err.message);
      }),
    stop: async (graceMs = 5000) => {
      await child.stop(graceMs);
    },
  };
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
