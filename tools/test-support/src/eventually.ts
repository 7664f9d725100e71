export interface EventuallyOptions {
  /** Pause between checks (default 100 ms). */
  intervalMs?: number;
  /** Treat a check that throws as "not yet" (default true); false lets the error through at once. */
  retryOnError?: boolean;
}

/**
 * Polls `check` (sync or async) until it returns true and resolves with the ms it took; throws after `timeoutMs`,
 * naming `what`. Never returns quietly on a timeout: a wait that ran out is a failure.
 */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, opts: EventuallyOptions = {}): Promise<number> {
  const intervalMs = opts.intervalMs ?? 100;
  const retryOnError = opts.retryOnError ?? true;
  const start = Date.now();
  for (;;) {
    const ok = Promise.resolve().then(check);
    if (await (retryOnError ? ok.catch(() => false) : ok)) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
