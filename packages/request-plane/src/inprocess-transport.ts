import { ClosedError, PayloadTooLargeError } from "./errors.js";
import type {
  Transport,
  TransportMsg,
  TransportPublishOptions,
  TransportStatus,
  TransportSubscribeOptions,
  TransportSubscription,
} from "./transport.js";

interface Sub {
  readonly tokens: string[];
  readonly queue: string | undefined;
  readonly callback: (m: TransportMsg) => void;
  readonly owner: InProcessTransport;
  active: boolean;
}

function matches(pattern: string[], subject: string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p === ">") return subject.length > i;
    if (i >= subject.length) return false;
    if (p !== "*" && p !== subject[i]) return false;
  }
  return pattern.length === subject.length;
}

/**
 * A message bus inside one process with NATS semantics the protocol relies on: `*`/`>` wildcards,
 * queue groups (one random member), no-responders status on publish-with-reply, asynchronous in-order
 * delivery. Several {@link InProcessTransport}s on one bus behave like several NATS connections.
 */
export class InProcessBus {
  private readonly subs = new Set<Sub>();
  private readonly pending: Array<{ sub: Sub; msg: TransportMsg }> = [];
  private scheduled = false;
  private inboxSeq = 0;
  readonly id = Math.random().toString(36).slice(2, 10);

  constructor(readonly maxPayload = 1024 * 1024) {}

  /** Live subscriptions on the bus (tests use it to check that nothing leaks). */
  get subscriptionCount(): number {
    return this.subs.size;
  }

  add(sub: Sub): void {
    this.subs.add(sub);
  }
  remove(sub: Sub): void {
    sub.active = false;
    this.subs.delete(sub);
  }
  nextInbox(): string {
    return `_INBOX.${this.id}.${++this.inboxSeq}`;
  }

  publish(subject: string, data: Uint8Array, reply: string | undefined): void {
    const tokens = subject.split(".");
    const plain: Sub[] = [];
    const groups = new Map<string, Sub[]>();
    for (const s of this.subs) {
      if (!matches(s.tokens, tokens)) continue;
      if (s.queue === undefined) plain.push(s);
      else {
        const g = groups.get(s.queue);
        if (g) g.push(s);
        else groups.set(s.queue, [s]);
      }
    }
    for (const g of groups.values()) plain.push(g[Math.floor(Math.random() * g.length)]);
    if (plain.length === 0) {
      if (reply !== undefined) this.publishStatus(reply);
      return;
    }
    // Each subscriber gets its own copy, as from a socket: nobody can mutate another's bytes.
    for (const sub of plain) this.enqueue(sub, { subject, data: data.slice(), reply, noResponders: false });
  }

  private publishStatus(reply: string): void {
    const tokens = reply.split(".");
    for (const s of this.subs) {
      if (matches(s.tokens, tokens)) this.enqueue(s, { subject: reply, data: new Uint8Array(0), noResponders: true });
    }
  }

  private enqueue(sub: Sub, msg: TransportMsg): void {
    this.pending.push({ sub, msg });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  /** Resolves after everything queued so far was delivered. */
  settled(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
  }

  private drain(): void {
    this.scheduled = false;
    // Deliver what is queued now; messages published by callbacks go to the next turn (bounded work per tick).
    const batch = this.pending.splice(0, this.pending.length);
    for (const { sub, msg } of batch) {
      if (!sub.active) continue;
      try {
        sub.callback(msg);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}

/** A {@link Transport} on an {@link InProcessBus}: single-process deployments and unit tests. */
export class InProcessTransport implements Transport {
  readonly kind = "in-process" as const;
  private readonly mine = new Set<Sub>();
  private readonly listeners = new Set<(s: TransportStatus) => void>();
  private closed = false;

  constructor(readonly bus: InProcessBus = new InProcessBus()) {}

  get maxPayload(): number {
    return this.bus.maxPayload;
  }
  get isClosed(): boolean {
    return this.closed;
  }

  publish(subject: string, data: Uint8Array, options?: TransportPublishOptions): void {
    if (this.closed) throw new ClosedError("in-process transport is closed");
    if (data.byteLength > this.bus.maxPayload) throw new PayloadTooLargeError(data.byteLength, this.bus.maxPayload, "message");
    this.bus.publish(subject, data, options?.reply);
  }

  subscribe(subject: string, callback: (msg: TransportMsg) => void, options?: TransportSubscribeOptions): TransportSubscription {
    if (this.closed) throw new ClosedError("in-process transport is closed");
    const sub: Sub = { tokens: subject.split("."), queue: options?.queue, callback, owner: this, active: true };
    this.bus.add(sub);
    this.mine.add(sub);
    return {
      unsubscribe: () => {
        this.bus.remove(sub);
        this.mine.delete(sub);
      },
    };
  }

  newInbox(): string {
    return this.bus.nextInbox();
  }

  flush(): Promise<void> {
    return this.bus.settled();
  }

  onStatus(listener: (s: TransportStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.bus.settled(); // like a NATS drain: let queued deliveries land first
    this.closed = true;
    for (const s of this.mine) this.bus.remove(s);
    this.mine.clear();
    for (const l of this.listeners) l("closed");
  }
}
