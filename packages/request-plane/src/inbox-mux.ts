import type { Transport, TransportMsg, TransportSubscription } from "./transport.js";

/**
 * One wildcard inbox subscription per plane (`<inbox>.>`), shared by all requests: each request gets
 * `<inbox>.<n>` without a SUB/UNSUB round per request (nats.js's request mux works the same way).
 * If the client process dies, the subscription dies with its connection and servers see no-responders.
 */
export class InboxMux {
  private readonly prefix: string;
  private readonly routes = new Map<string, { onMsg: (m: TransportMsg) => void; onClose: () => void }>();
  private sub: TransportSubscription | undefined;
  private next = 0;

  constructor(private readonly transport: Transport) {
    this.prefix = transport.newInbox();
    this.sub = transport.subscribe(`${this.prefix}.>`, (m) => this.routes.get(m.subject.slice(this.prefix.length + 1))?.onMsg(m));
  }

  /** Reserves an inbox subject; `release()` stops delivery to it; `onClose` runs if the mux closes first. */
  register(onMsg: (m: TransportMsg) => void, onClose: () => void): { subject: string; release: () => void } {
    const token = (++this.next).toString(36);
    this.routes.set(token, { onMsg, onClose });
    return { subject: `${this.prefix}.${token}`, release: () => this.routes.delete(token) };
  }

  /** Requests still registered (tests use it to check nothing leaks). */
  get size(): number {
    return this.routes.size;
  }

  /** Ends every request still waiting for replies (their `onClose`), then unsubscribes. */
  close(): void {
    for (const r of [...this.routes.values()]) r.onClose();
    this.routes.clear();
    this.sub?.unsubscribe();
    this.sub = undefined;
  }
}
