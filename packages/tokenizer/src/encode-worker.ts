import { Worker } from "node:worker_threads";
import { encodingJsonPath, tiktokenModulePath, type EncoderSpec } from "./encodings.js";
import { EncodeAbortedError, EncodeTimeoutError, EncodeWorkerError, TokenizerFreedError } from "./errors.js";

// Plain CommonJS evaluated in the worker: works the same from TypeScript sources (vitest, tsx) and from dist/.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { Tiktoken } = require(workerData.tiktokenPath);
let enc;
if (workerData.jsonPath) {
  const j = require(workerData.jsonPath);
  enc = new Tiktoken(j.bpe_ranks, workerData.specials, j.pat_str);
} else {
  enc = new Tiktoken(workerData.ranksText, workerData.specials, workerData.pattern);
}
parentPort.on("message", (m) => {
  let ids;
  try {
    ids = enc.encode(m.text, m.allowed, m.disallowed);
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
    return;
  }
  parentPort.postMessage({ id: m.id, ids }, [ids.buffer]);
});
`;

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
  #worker: Worker | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  constructor(spec: EncoderSpec) {
    this.#spec = spec;
  }

  #start(): Worker {
    const s = this.#spec;
    const workerData =
      s.kind === "named"
        ? { tiktokenPath: tiktokenModulePath(), jsonPath: encodingJsonPath(s.name), specials: s.specials }
        : { tiktokenPath: tiktokenModulePath(), ranksText: s.ranksText, pattern: s.pattern, specials: s.specials };
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

  encode(text: string, allowed: "all" | string[], disallowed: "all" | string[], timeoutMs: number, signal?: AbortSignal): Promise<Uint32Array> {
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
      w.postMessage({ id, text, allowed, disallowed });
    });
  }

  get running(): boolean {
    return this.#worker !== undefined;
  }

  get pending(): number {
    return this.#pending.size;
  }

  /** Rejects pending requests and stops the thread. */
  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    const e = new TokenizerFreedError();
    for (const [id, p] of [...this.#pending]) {
      this.#settle(id);
      p.reject(e);
    }
    if (w) await w.terminate();
  }
}
