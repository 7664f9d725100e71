import type { MiddlewareHandler } from "hono";
import { RequestTooLargeError } from "../errors.js";

export interface BodyLimitOptions {
  /** Over the limit, at most this many more bytes are read and dropped before the answer (default 16 MiB). */
  drainMaxBytes?: number;
  /** ... and for at most this long (default 2000 ms). */
  drainMaxMs?: number;
}

export const BODY_DRAIN_DEFAULTS = { drainMaxBytes: 16 << 20, drainMaxMs: 2000 } as const;

/**
 * Refuses a body over `maxBytes` (a Content-Length over it, or a chunked body that grows past it) with
 * RequestTooLargeError: 413, answered with `Connection: close` by app.onError.
 *
 * Before answering it reads the rest of the body and drops it, up to `drainMaxBytes` more and `drainMaxMs`, so that
 * the connection is closed with nothing left unread: closing a socket with unread input makes the kernel send a
 * reset, which can destroy the answer before the client reads it (the official OpenAI client then reports
 * "Connection error"), and a keep-alive client's next request on that connection would fail. A body beyond the
 * drain bound is cut off (the client may then see a reset); the server never reads more than the bound.
 * Bodies within the limit are passed on unchanged (a chunked one is buffered, as hono's own bodyLimit does).
 */
export function bodyLimit(maxBytes: number, options: BodyLimitOptions = {}): MiddlewareHandler {
  const { drainMaxBytes = BODY_DRAIN_DEFAULTS.drainMaxBytes, drainMaxMs = BODY_DRAIN_DEFAULTS.drainMaxMs } = options;
  return async function bodyLimitMiddleware(c, next) {
    const raw = c.req.raw;
    // The declared length first: touching raw.body makes @hono/node-server build a web Request with a stream body
    // for the rest of the request's life, and then read the body through web streams instead of straight from the
    // socket (arrival to parsed body 0.67 -> 0.19 ms in an in-process measurement on the loaded 2-core VM).
    const length = raw.headers.has("transfer-encoding") ? undefined : raw.headers.get("content-length");
    if (length !== undefined && length !== null && Number(length) <= maxBytes) return next();
    if (!raw.body) return next();
    const reader = raw.body.getReader();
    let size = 0;
    if (length === undefined || length === null) {
      // No declared length: read up to the limit.
      const chunks: Uint8Array[] = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          c.req.raw = new Request(raw, { body: Buffer.concat(chunks) });
          return next();
        }
        size += value.length;
        if (size > maxBytes) break;
        chunks.push(value);
      }
    }
    await drain(reader, drainMaxBytes, drainMaxMs);
    throw new RequestTooLargeError(maxBytes);
  };
}

/** Reads and drops what is left of a body, up to `maxBytes` and `maxMs`; past either it cancels the body. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, maxBytes: number, maxMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), maxMs);
  });
  try {
    let dropped = 0;
    for (;;) {
      const r = await Promise.race([reader.read(), timedOut]);
      if (r === "timeout") break;
      if (r.done) return;
      dropped += r.value.length;
      if (dropped > maxBytes) break;
    }
    await reader.cancel().catch(() => {}); // past the bound: the rest is not read
  } catch {
    // the client went away while we drained: nothing left to protect
  } finally {
    clearTimeout(timer);
  }
}
