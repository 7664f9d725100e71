import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { ExecutorStats } from "@trtd/trtllm";
import type { KvOfferServerStats, KvPullerStats } from "../src/index.js";

/** The kv-peer's "stats" reply: its offer server's, executor's and puller's stats. */
export interface PeerStats {
  server: KvOfferServerStats;
  executor: ExecutorStats;
  puller: KvPullerStats;
}

/** A kv-peer child process (test/fixtures/kv-peer.ts) with a bounded request/response over IPC. */
export interface Peer {
  pid: number;
  call<T = Record<string, unknown>>(msg: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  stats(): Promise<PeerStats>;
  /** Starts a call without waiting (for kill-mid-transfer tests). */
  start(msg: Record<string, unknown>): Promise<unknown>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  exit(): Promise<void>;
}

export class PeerError extends Error {
  code?: string;
  constructor(e: { name: string; code?: string; message: string }) {
    super(e.message);
    this.name = e.name;
    this.code = e.code;
  }
}

export async function spawnPeer(env: Record<string, string> = {}, readyTimeoutMs = 60_000): Promise<Peer> {
  const child: ChildProcess = fork(fileURLToPath(new URL("./fixtures/kv-peer.ts", import.meta.url)), [], {
    execArgv: ["--import", "tsx", "--conditions=source"],
    env: { ...process.env, ...env },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let rid = 0;
  child.on("message", (m: { rid?: number; result?: unknown; error?: { name: string; code?: string; message: string } }) => {
    if (m.rid === undefined) return;
    const p = pending.get(m.rid);
    pending.delete(m.rid);
    if (m.error) p?.reject(new PeerError(m.error));
    else p?.resolve(m.result);
  });
  child.once("exit", (code, sig) => {
    for (const p of pending.values()) p.reject(new Error(`peer exited (${code ?? sig})`));
    pending.clear();
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("peer not ready in time"));
    }, readyTimeoutMs);
    child.once("message", () => {
      clearTimeout(t);
      resolve();
    });
    child.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`peer exited during start (${code})`));
    });
  });
  const start = (msg: Record<string, unknown>) =>
    new Promise<unknown>((resolve, reject) => {
      const id = ++rid;
      pending.set(id, { resolve, reject });
      child.send({ ...msg, rid: id });
    });
  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  const call = async <T>(msg: Record<string, unknown>, timeoutMs = 30_000) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return (await Promise.race([
        start(msg),
        new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`peer call ${String(msg.cmd)} timed out`)), timeoutMs))),
      ])) as T;
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    pid: child.pid!,
    start,
    call,
    stats: () => call<PeerStats>({ cmd: "stats" }),
    kill,
    exit: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
      child.send({ cmd: "exit", rid: -1 });
      await exited;
      clearTimeout(t);
    },
  };
}
