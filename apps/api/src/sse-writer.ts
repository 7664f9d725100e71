// Server-sent events straight onto Node's response (the fast path of app.ts's streaming; profiled in issue 19).
// hono's streamSSE goes through a TransformStream, a WritableStream writer and @hono/node-server's pump: several
// promises, a copy and a socket write per event. Here an event is one string appended to the response, events of
// the same event-loop turn leave in one write (cork until setImmediate), the first one is sent at once (time to
// first token), and a full socket buffer makes the producer wait for `drain`.
import type { ServerResponse } from "node:http";
import { traceStage } from "@trtd/apps-common";

/**
 * A JSON template with one string slot: `fill(s)` equals `JSON.stringify(make(s))`, with the constant parts
 * serialised once. `make` must place its argument in exactly one string value and be otherwise independent of it.
 */
export function jsonTemplate(make: (slot: string) => unknown): (s: string) => string {
  const marker = "\u0000trtd-slot\u0000";
  const whole = JSON.stringify(make(marker));
  const quoted = JSON.stringify(marker);
  const at = whole.indexOf(quoted);
  if (at < 0 || whole.indexOf(quoted, at + 1) >= 0) throw new Error("jsonTemplate: the slot must appear exactly once");
  const head = whole.slice(0, at);
  const tail = whole.slice(at + quoted.length);
  return (s) => head + JSON.stringify(s) + tail;
}

export class NodeSseWriter {
  private pending = "";
  private scheduled = false;
  private closed = false;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly res: ServerResponse, headers: Headers) {
    const h: Record<string, string> = {};
    headers.forEach((v, k) => (h[k] = v));
    h["content-type"] = "text/event-stream";
    h["cache-control"] = "no-cache";
    h.connection = "keep-alive";
    res.writeHead(200, h);
    res.once("close", () => {
      this.closed = true;
      this.wake();
    });
    res.on("drain", () => this.wake());
  }

  /** The client went away (or the response ended). */
  get aborted(): boolean {
    return this.closed;
  }

  /** Sends `data` as one event now (with anything queued before it): the write syscall happens before this returns. */
  async sendNow(data: string): Promise<void> {
    traceStage?.("api.sse_write_now");
    this.pending += `data: ${data}\n\n`;
    const written = this.flush();
    // Node's response corks its socket on a write until process.nextTick, and the nextTick queue waits for the
    // microtasks that follow, such as the router going on to the decode worker (disaggregated): the first token
    // reached the client about 1 ms later on the 2-core VM (README, "Results, 2026-12-08 (2)"). Uncorked, it leaves now.
    this.res.socket?.uncork();
    await written;
  }

  /** Queues `data` as one event; it leaves with the others of this event-loop turn. Waits while the socket is full. */
  async send(data: string): Promise<void> {
    this.pending += `data: ${data}\n\n`;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.flush());
    }
    if (this.res.writableNeedDrain && !this.closed) await new Promise<void>((r) => this.waiters.add(r));
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    if (this.pending === "" || this.closed) {
      this.pending = "";
      return;
    }
    const out = this.pending;
    this.pending = "";
    if (!this.res.write(out) && !this.closed) await new Promise<void>((r) => this.waiters.add(r));
  }

  /** Sends what is queued and ends the response. */
  end(): void {
    if (this.closed) return;
    const out = this.pending;
    this.pending = "";
    this.res.end(out);
  }

  private wake(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }
}
