import type { Transport, TransportMsg, TransportSubscription } from "./transport.js";

/**
 * One wildcard inbox subscription per plane (`<inbox>.>`), shared by all requests: each request gets
 * `<inbox>.<n>` without a SUB/UNSUB round per request (nats.js's request mux works the same way).
 * If the client process dies, the subscription dies with its connection and servers see no-responders.
 */
export class InboxMux {
  private readonly prefix: string;
  private readonly routes = new Map<string, (m: TransportMsg) => void>();
  private sub: TransportSubscription | undefined;
  private next = 0;

  constructor(private readonly transport: Transport) {
    this.prefix = transport.newInbox();
    this.sub = transport.subscribe(`${this.prefix}.>`, (m) => this.routes.get(m.subject.slice(this.prefix.length + 1))?.(m));
  }

  /** Reserves an inbox subject; `release()` stops delivery to it. */
  register(handler: (m: TransportMsg) => void): { subject: string; release: () => void } {
    const token = (++this.next).toString(36);
    this.routes.set(token, handler);
    return { subject: `${this.prefix}.${token}`, release: () => this.routes.delete(token) };
  }

  /** Requests still registered (tests use it to check nothing leaks). */
  get size(): number {
    return this.routes.size;
  }

  close(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
    this.routes.clear();
  }
}
