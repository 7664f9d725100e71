import type { Codec } from "./codec.js";
import type { LinkAddress } from "./link-listener.js";
import { instancePath, subjects, type EndpointId } from "./names.js";
import { isObj } from "./protocol.js";
import type { Transport, TransportSubscription } from "./transport.js";

/** A live instance of an endpoint as a client sees it. */
export interface InstanceInfo {
  readonly id: string;
  /** `ns/comp/ep/id` */
  readonly path: string;
  readonly endpoint: EndpointId;
  /** Last published load record (`activeRequests` plus whatever the worker reports). */
  readonly metrics: Readonly<Record<string, unknown>>;
  /** Static description from `ServeOptions.meta`. */
  readonly meta: Readonly<Record<string, unknown>>;
  /** `host:port` of the instance's direct data path, when it offers one (its secret is not shown here). */
  readonly directLink?: string;
  /** When the last announcement arrived (epoch ms). */
  readonly lastSeen: number;
  /** The instance is dropped if nothing is heard by then (epoch ms). */
  readonly expiresAt: number;
}

/**
 * Heartbeat discovery with client-side expiry (no KV, so nats-server 2.9's ignored per-key TTL does not
 * matter): instances announce `up` every lease/3 on `rpd.<ns>.<comp>.<ep>`; a watcher keeps the instances
 * heard within one lease, drops them on `down`, on lease expiry, or when a request to them finds no responders.
 * Bound: a crashed instance disappears from `instances()` at most `lease + lease/4` after its last announcement.
 */
export class InstanceWatcher {
  private readonly map = new Map<string, InstanceInfo>();
  /** Direct-link addresses (with their secrets) of the instances that announce one. */
  private readonly links = new Map<string, LinkAddress>();
  private readonly sub: TransportSubscription;
  private readonly sweep: NodeJS.Timeout;
  private readonly changeListeners = new Set<() => void>();
  private closed = false;
  refs = 0;

  constructor(
    readonly endpoint: EndpointId,
    private readonly transport: Transport,
    private readonly codec: Codec,
    sweepMs: number,
  ) {
    this.sub = transport.subscribe(subjects.announce(endpoint), (m) => {
      let v: unknown;
      try {
        v = codec.decode(m.data);
      } catch {
        return;
      }
      if (!isObj(v) || typeof v.i !== "string") return;
      if (v.k === "up" && typeof v.lease === "number") {
        const now = Date.now();
        const l = v.l;
        const link = isObj(l) && typeof l.h === "string" && typeof l.p === "number" && typeof l.s === "string" ? { host: l.h, port: l.p, secret: l.s } : undefined;
        if (link) this.links.set(v.i, link);
        else this.links.delete(v.i);
        this.map.set(v.i, {
          id: v.i,
          path: instancePath(endpoint, v.i),
          endpoint,
          metrics: isObj(v.m) ? v.m : {},
          meta: isObj(v.meta) ? v.meta : {},
          ...(link ? { directLink: `${link.host}:${link.port}` } : {}),
          lastSeen: now,
          expiresAt: now + v.lease,
        });
        this.changed();
      } else if (v.k === "down") {
        this.remove(v.i);
      }
    });
    this.sweep = setInterval(() => this.expire(), sweepMs);
    this.sweep.unref();
  }

  /** Asks every instance to announce now (a new watcher learns the current set within one round trip). */
  probe(): void {
    try {
      this.transport.publish(subjects.probe(this.endpoint), this.codec.encode({ k: "probe" }));
    } catch {
      // closed: nothing to probe
    }
  }

  list(): InstanceInfo[] {
    this.expire();
    return [...this.map.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(id: string): InstanceInfo | undefined {
    return this.map.get(id);
  }

  /** Where the live instance `id` takes direct links, if it offers them. */
  linkOf(id: string): LinkAddress | undefined {
    return this.map.has(id) ? this.links.get(id) : undefined;
  }

  remove(id: string): void {
    this.links.delete(id);
    if (this.map.delete(id)) this.changed();
  }

  onChange(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  private expire(): void {
    const now = Date.now();
    let any = false;
    for (const [id, info] of this.map) {
      if (info.expiresAt <= now) {
        this.map.delete(id);
        this.links.delete(id);
        any = true;
      }
    }
    if (any) this.changed();
  }

  private changed(): void {
    for (const l of this.changeListeners) l();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweep);
    this.sub.unsubscribe();
    this.map.clear();
    this.links.clear();
    this.changed();
    this.changeListeners.clear();
  }
}
