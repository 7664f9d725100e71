import { KvAbortedError, KvTimeoutError } from "./errors.js";

/** A FIFO counting semaphore whose waits are bounded by a deadline and an AbortSignal. */
export class Semaphore {
  private active = 0;
  private readonly waiters: Array<() => void> = [];
  /** High-water marks, for stats and tests. */
  peakInUse = 0;
  peakWaiting = 0;
  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.active;
  }
  get waiting(): number {
    return this.waiters.length;
  }

  /** Resolves with a release function (call it exactly once). */
  acquire(deadline: number, signal?: AbortSignal, what = "transfer slot"): Promise<() => void> {
    const grant = (): (() => void) => {
      this.active++;
      this.peakInUse = Math.max(this.peakInUse, this.active);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        this.active--;
        this.waiters.shift()?.();
      };
    };
    if (this.active < this.limit && this.waiters.length === 0) return Promise.resolve(grant());
    return new Promise((resolve, reject) => {
      const wake = () => {
        cleanup();
        resolve(grant());
      };
      const onAbort = () => {
        cleanup();
        const i = this.waiters.indexOf(wake);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new KvAbortedError(`aborted while waiting for a ${what}`, { cause: signal?.reason }));
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(wake);
        if (i >= 0) this.waiters.splice(i, 1);
        cleanup();
        reject(new KvTimeoutError(`timed out waiting for a ${what} (${this.limit} in use)`));
      }, Math.max(0, deadline - Date.now()));
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(wake);
      this.peakWaiting = Math.max(this.peakWaiting, this.waiters.length);
    });
  }
}

/** Transfer timeouts that scale with size: base + bytes at a minimum rate. */
export interface TransferTimeoutOptions {
  /** Fixed part, ms. @default 5000 */
  baseMs?: number;
  /** Slowest acceptable rate, bytes/s. @default 50e6 */
  minBytesPerSecond?: number;
}

export function transferTimeoutMs(bytes: number, o: TransferTimeoutOptions = {}): number {
  const base = o.baseMs ?? 5000;
  const rate = o.minBytesPerSecond ?? 50e6;
  return Math.ceil(base + (bytes / rate) * 1000);
}
