import type { Codec } from "./codec.js";
import type { CancelMsg } from "./protocol.js";
import type { Carrier } from "./link-pool.js";
import type { Transport, TransportMsg, TransportSubscription } from "./transport.js";

/**
 * One wildcard inbox subscription per plane (`<inbox>.>`), shared by all requests: each request gets
 * `<inbox>.<n>` without a SUB/UNSUB round per request (nats.js's request mux works the same way).
 * If the client process dies, the subscription dies with its connection and servers see no-responders.
 * A frame for a request no longer registered (it ended here, but our cancel was lost, e.g. in a NATS
 * reconnect) is answered with a cancel to its control subject, so the server does not hold the request
 * (and its resources) until the deadline: its next heartbeat brings the cancel again.
 * Direct links (link-pool.ts) deliver the frames of their requests here too, with the link as `via`.
 */
export class InboxMux {
  private readonly prefix: string;
  private readonly routes = new Map<string, { onMsg: (m: TransportMsg, via: Carrier) => void; onClose: () => void }>();
  private sub: TransportSubscription | undefined;
  private next = 0;

  constructor(
    private readonly transport: Transport,
    private readonly codec: Codec,
  ) {
    this.prefix = transport.newInbox();
    this.sub = transport.subscribe(`${this.prefix}.>`, (m) => this.deliver(m, transport));
  }

  /** A message for one of this plane's inboxes, arrived over `via` (the transport or a direct link). */
  deliver(m: TransportMsg, via: Carrier): void {
    const route = this.routes.get(m.subject.slice(this.prefix.length + 1));
    if (route) route.onMsg(m, via);
    else if (m.reply && !m.noResponders) this.cancelStray(m.reply, via);
  }

  private cancelStray(control: string, via: Carrier): void {
    const msg: CancelMsg = { k: "cancel", r: "the client no longer awaits this request" };
    try {
      via.publish(control, this.codec.encode(msg));
    } catch {
      // closed: the server sees no-responders or its deadline
    }
  }

  /** Reserves an inbox subject; `release()` stops delivery to it; `onClose` runs if the mux closes first. */
  register(onMsg: (m: TransportMsg, via: Carrier) => void, onClose: () => void): { subject: string; release: () => void } {
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
