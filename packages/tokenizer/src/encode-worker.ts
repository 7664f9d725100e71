import { Worker } from "node:worker_threads";
import { encodingJsonPath, tiktokenModulePath, type EncoderSpec } from "./encodings.js";
import type { Part } from "./specials.js";
import { EncodeAbortedError, EncodeTimeoutError, EncodeWorkerError, TokenizerFreedError } from "./errors.js";

// Plain CommonJS evaluated in the worker: works the same from TypeScript sources (vitest, tsx) and from dist/.
// The main thread has already split out special tokens (specials.ts): a request is a list of parts, ordinary text
// (encoded with the native library when the main thread uses it, else with tiktoken WASM) or special ids.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
let ordinary;
let release = () => {};
if (workerData.native) {
  const n = workerData.native;
  const lib = require(n.koffiPath).load(n.libPath);
  const create = lib.func(n.signatures.create);
  const encode = lib.func(n.signatures.encode);
  const free = lib.func(n.signatures.free);
  const ranks = Buffer.from(workerData.jsonPath ? require(workerData.jsonPath).bpe_ranks : workerData.ranksText, "utf8");
  const handle = create(ranks, ranks.length, n.pattern);
  if (handle === null) throw new Error("trtd_bpe_create refused the ranks");
  // Freed on the close message; terminate() alone would leak it (exit handlers do not run then).
  release = () => free(handle);
  ordinary = (text) => {
    const buf = Buffer.from(text, "utf8");
    const ids = new Uint32Array(Math.max(buf.length, 1));
    const count = Number(encode(handle, buf, buf.length, ids, ids.length));
    if (count < 0) throw new Error("trtd_bpe_encode failed (" + count + ")");
    return ids.subarray(0, count);
  };
} else {
  const { Tiktoken } = require(workerData.tiktokenPath);
  let enc;
  if (workerData.jsonPath) {
    const j = require(workerData.jsonPath);
    enc = new Tiktoken(j.bpe_ranks, {}, j.pat_str);
  } else {
    enc = new Tiktoken(workerData.ranksText, {}, workerData.pattern);
  }
  ordinary = (text) => enc.encode_ordinary(text);
}
parentPort.on("message", (m) => {
  if (m.close) {
    release();
    process.exit(0);
  }
  let ids;
  try {
    const chunks = [];
    let total = 0;
    for (const p of m.parts) {
      const c = typeof p === "number" ? [p] : ordinary(p);
      chunks.push(c);
      total += c.length;
    }
    ids = new Uint32Array(total);
    let at = 0;
    for (const c of chunks) {
      ids.set(c, at);
      at += c.length;
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
    return;
  }
  parentPort.postMessage({ id: m.id, ids }, [ids.buffer]);
});
`;

/** What the worker needs to bind the native encoder (absent: it uses tiktoken WASM). */
export interface WorkerNative {
  libPath: string;
  koffiPath: string;
  pattern: number;
  signatures: Record<string, string>;
}

/** How long close() waits for the thread to finish its current encode and exit before terminating it. */
const CLOSE_GRACE_MS = 2_000;

interface Pending {
  resolve: (ids: Uint32Array) => void;
  reject: (err: unknown) => void;
  cleanup: () => void;
}

/**
 * One worker thread holding its own copy of the encoder. Requests are answered in order; a timed-out or aborted
 * request is rejected at once and its late answer dropped. The thread keeps the process alive only while
 * requests are pending.
 */
export class EncodeWorker {
  readonly #spec: EncoderSpec;
  readonly #native: WorkerNative | undefined;
  #worker: Worker | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  constructor(spec: EncoderSpec, native?: WorkerNative) {
    this.#spec = spec;
    this.#native = native;
  }

  #start(): Worker {
    const s = this.#spec;
    const workerData = {
      tiktokenPath: tiktokenModulePath(),
      native: this.#native,
      ...(s.kind === "named" ? { jsonPath: encodingJsonPath(s.name) } : { ranksText: s.ranksText, pattern: s.pattern }),
    };
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData });
    w.unref();
    w.on("message", (m: { id: number; ids?: Uint32Array; error?: string }) => {
      const p = this.#pending.get(m.id);
      if (!p) return; // timed out or aborted earlier
      this.#settle(m.id);
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.ids!);
    });
    const fail = (err: unknown): void => {
      if (this.#worker !== w) return;
      this.#worker = undefined;
      const e = new EncodeWorkerError(`encode worker failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      for (const [id, p] of [...this.#pending]) {
        this.#settle(id);
        p.reject(e);
      }
    };
    w.on("error", fail);
    w.on("exit", (code) => fail(new Error(`worker exited with code ${code}`)));
    return w;
  }

  #settle(id: number): void {
    const p = this.#pending.get(id);
    if (!p) return;
    p.cleanup();
    this.#pending.delete(id);
    if (this.#pending.size === 0) this.#worker?.unref();
  }

  /** Encodes parts (ordinary text, or special ids passed through) into one id array. */
  encode(parts: readonly Part[], timeoutMs: number, signal?: AbortSignal): Promise<Uint32Array> {
    if (signal?.aborted) return Promise.reject(new EncodeAbortedError({ cause: signal.reason }));
    const w = (this.#worker ??= this.#start());
    const id = this.#nextId++;
    return new Promise<Uint32Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#settle(id);
        reject(new EncodeTimeoutError(timeoutMs));
      }, timeoutMs);
      const onAbort = (): void => {
        this.#settle(id);
        reject(new EncodeAbortedError({ cause: signal?.reason }));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(id, {
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        },
      });
      w.ref();
      w.postMessage({ id, parts });
    });
  }

  get running(): boolean {
    return this.#worker !== undefined;
  }

  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Rejects pending requests and stops the thread: it frees its encoder and exits after the encode in progress,
   * if any; a thread still busy after CLOSE_GRACE_MS is terminated (a native encoder it holds then leaks).
   */
  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    const e = new TokenizerFreedError();
    for (const [id, p] of [...this.#pending]) {
      this.#settle(id);
      p.reject(e);
    }
    if (!w) return;
    const exited = new Promise<void>((resolve) => w.once("exit", () => resolve()));
    w.postMessage({ close: true });
    const timer = setTimeout(() => void w.terminate(), CLOSE_GRACE_MS);
    timer.unref();
    await exited;
    clearTimeout(timer);
  }
}
