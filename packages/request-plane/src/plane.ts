import { binaryCodec } from "./codec-binary.js";
import type { Codec } from "./codec.js";
import { EndpointClient, type ClientOptions } from "./client.js";
import { InstanceWatcher } from "./discovery.js";
import { CancelledError, ClosedError, NoRespondersError, TimeoutError } from "./errors.js";
import { InboxMux } from "./inbox-mux.js";
import { LinkListener, resolveLinkOptions, type DirectLinkOptions, type ResolvedLinkOptions } from "./link-listener.js";
import { LinkPool } from "./link-pool.js";
import { endpointId, endpointPath, validateName, type EndpointId } from "./names.js";
import { Server, type Handler, type ServeOptions, type ServedEndpoint, type StopOptions } from "./server.js";
import type { Transport, TransportSubscribeOptions, TransportSubscription } from "./transport.js";

export interface PlaneOptions {
  /** Wire codec (default `binaryCodec`, chosen by `nx run request-plane:bench`). All parties must agree. */
  codec?: Codec;
  /** Default stream heartbeat interval, ms (default 1000): a dead server is detected within 3× this. */
  heartbeatMs?: number;
  /** Default discovery lease, ms (default 3000). */
  leaseMs?: number;
  /**
   * The direct data path (README, "Direct data path"): request and reply frames of a request to a chosen instance go
   * over a TCP link to it instead of through nats-server, when it offers one and it can be reached; NATS stays the
   * control plane and the fallback. `false` turns it off; an object sets its addresses and bounds. Default: on for a
   * NATS plane, off for an in-process one.
   */
  directLink?: boolean | DirectLinkOptions;
}

export interface RawRequestOptions {
  /** Bound on the wait for the reply, ms. */
  timeoutMs: number;
  /** Aborting rejects the request with CancelledError (a reply arriving later is dropped). */
  signal?: AbortSignal;
}

/** Anything that names an endpoint: an {@link EndpointId}, an {@link Endpoint}, or `"ns/comp/ep"`. */
export type EndpointRef = EndpointId | string;

/**
 * The request plane on one transport: serve endpoints, make clients, close everything in one call.
 * Obtain one with `connect()` (NATS) or `createInProcessPlane()`.
 */
export class RequestPlane {
  readonly codec: Codec;
  readonly heartbeatMs: number;
  readonly leaseMs: number;
  private readonly servers = new Set<Server>();
  private readonly clients = new Set<EndpointClient<any, any>>();
  private readonly watchers = new Map<string, InstanceWatcher>();
  private closing: Promise<void> | undefined;
  /** Shared reply inbox of every request this plane sends. */
  readonly mux: InboxMux;
  /** Direct-link settings (`enabled` false: every request goes through the transport). */
  readonly directLink: ResolvedLinkOptions;
  /** This plane's client links to the instances it calls (absent when direct links are off). */
  private readonly links: LinkPool | undefined;
  /** The listener of the instances this plane serves, opened with the first of them. */
  private listener: Promise<LinkListener> | undefined;

  constructor(
    readonly transport: Transport,
    options: PlaneOptions = {},
  ) {
    this.codec = options.codec ?? binaryCodec;
    this.heartbeatMs = options.heartbeatMs ?? 1000;
    this.leaseMs = options.leaseMs ?? 3000;
    this.mux = new InboxMux(transport, this.codec);
    this.directLink = resolveLinkOptions(options.directLink, transport.kind);
    if (this.directLink.enabled) {
      this.links = new LinkPool(this.directLink, () => transport.maxPayload, (m, via) => this.mux.deliver(m, via));
      // A plane whose transport closed for good is finished (as a crashed process): its links go with it, so peers
      // learn at once (a client's requests fail as from a dead instance; a server's handlers lose their client).
      transport.onStatus((st) => {
        if (st === "closed") void this.closeLinks();
      });
    }
  }

  /**
   * Test hook (`@trtd/request-plane/testing`, `breakDirectLinks`): destroys this plane's client links as a network
   * failure would, leaving everything else running.
   */
  breakClientLinks(): void {
    this.links?.breakAll();
  }

  private async closeLinks(): Promise<void> {
    this.links?.close();
    const listener = await this.listener?.catch(() => undefined);
    await listener?.close();
  }

  /** Open direct links from this plane's clients (tests use it to check that nothing stays open). */
  get openLinks(): number {
    return this.links?.openCount ?? 0;
  }

  /** `host:port` where this plane's instances take direct links, once one is served (undefined when off). */
  async linkAddress(): Promise<string | undefined> {
    if (!this.listener) return undefined;
    const l = await this.listener;
    return `${l.host}:${l.port}`;
  }

  /**
   * One request, one reply, on a plain subject outside the endpoint protocol (no streaming, heartbeats, cancel or
   * discovery): for small side protocols that ride the plane on either transport, such as kv-transfer's small-KV
   * fallback. The reply comes to this plane's shared inbox. Rejects with TimeoutError after `timeoutMs`,
   * NoRespondersError when nobody subscribes to `subject`, CancelledError on `signal`, ClosedError when the plane
   * closes first, PayloadTooLargeError (thrown by the transport) when `data` exceeds its limit.
   */
  request(subject: string, data: Uint8Array, options: RawRequestOptions): Promise<Uint8Array> {
    if (this.isClosed) return Promise.reject(new ClosedError());
    const { timeoutMs, signal } = options;
    if (signal?.aborted) return Promise.reject(new CancelledError("request aborted", { cause: signal.reason }));
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        route.release();
        signal?.removeEventListener("abort", onAbort);
        fn();
      };
      const onAbort = () => settle(() => reject(new CancelledError("request aborted", { cause: signal?.reason })));
      const route = this.mux.register(
        (m) => settle(() => (m.noResponders ? reject(new NoRespondersError(subject)) : resolve(m.data))),
        () => settle(() => reject(new ClosedError())),
      );
      const timer = setTimeout(() => settle(() => reject(new TimeoutError(`no reply on ${subject} within ${timeoutMs} ms`))), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        this.transport.publish(subject, data, { reply: route.subject });
      } catch (err) {
        settle(() => reject(err));
      }
    });
  }

  /**
   * Answers {@link request}s on `subject`: `handler` returns the reply bytes (or undefined to send none: the requester
   * times out). It must not throw. Resolves once subscribed; the caller owns the subscription (the plane's close()
   * ends it too). `options.queue` spreads requests over a group; `options.onError` hears a refused subscription.
   */
  async reply(subject: string, handler: (data: Uint8Array) => Uint8Array | undefined, options: TransportSubscribeOptions = {}): Promise<TransportSubscription> {
    if (this.isClosed) throw new ClosedError();
    const sub = this.transport.subscribe(
      subject,
      (m) => {
        if (!m.reply || m.noResponders) return;
        const out = handler(m.data);
        if (out === undefined || this.transport.isClosed) return;
        try {
          this.transport.publish(m.reply, out);
        } catch {
          // closing, or the reply is over the limit: the requester times out
        }
      },
      options,
    );
    await this.transport.flush();
    return sub;
  }

  get isClosed(): boolean {
    return this.closing !== undefined || this.transport.isClosed;
  }

  namespace(name: string): Namespace {
    return new Namespace(this, validateName(name, "namespace"));
  }

  /** `endpoint("ns", "comp", "ep")` or `endpoint("ns/comp/ep")`. */
  endpoint(namespace: string, component?: string, endpoint?: string): Endpoint {
    const id = endpointId(namespace, component, endpoint);
    return new Endpoint(this, id.namespace, id.component, id.endpoint);
  }

  /** Registers an instance serving `endpoint` with `handler`; resolves once it is subscribed and announced. */
  async serve<Req = unknown, Res = unknown>(endpoint: EndpointRef, handler: Handler<Req, Res>, options: ServeOptions = {}): Promise<ServedEndpoint> {
    if (this.isClosed) throw new ClosedError();
    const id = toId(endpoint);
    let links: LinkListener | undefined;
    if (this.directLink.enabled) {
      this.listener ??= LinkListener.open(this.directLink, this.transport.maxPayload);
      try {
        links = await this.listener;
      } catch (err) {
        this.listener = undefined; // a later serve() may try again
        throw err;
      }
    }
    const server = new Server(id, handler, options, {
      transport: this.transport,
      codec: this.codec,
      heartbeatMs: this.heartbeatMs,
      leaseMs: this.leaseMs,
      links,
      onStopped: (s) => this.servers.delete(s),
    });
    this.servers.add(server);
    try {
      await server.start();
    } catch (err) {
      await server.stop({ graceMs: 0 });
      throw err;
    }
    return server;
  }

  /** A client of `endpoint`. Discovery starts now; `close()` it (or the plane) when done. */
  client<Req = unknown, Res = unknown>(endpoint: EndpointRef, options: ClientOptions<Req> = {}): EndpointClient<Req, Res> {
    if (this.isClosed) throw new ClosedError();
    const id = toId(endpoint);
    const key = endpointPath(id);
    let watcher = this.watchers.get(key);
    if (!watcher) {
      watcher = new InstanceWatcher(id, this.transport, this.codec, Math.max(25, Math.floor(this.leaseMs / 4)));
      this.watchers.set(key, watcher);
      watcher.probe();
    }
    watcher.refs++;
    const w = watcher;
    const client = new EndpointClient<Req, Res>(id, options, {
      transport: this.transport,
      codec: this.codec,
      watcher: w,
      mux: this.mux,
      links: this.links,
      onClosed: (c) => {
        this.clients.delete(c);
        if (--w.refs === 0) {
          w.close();
          this.watchers.delete(key);
        }
      },
    });
    this.clients.add(client);
    return client;
  }

  /**
   * Stops served endpoints (in-flight requests get `graceMs`), closes clients, ends this plane's own
   * in-flight requests with ClosedError (cancelling them on their servers), drains and closes the transport.
   */
  close(options: StopOptions = {}): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.servers].map((s) => s.stop(options)));
      for (const c of [...this.clients]) c.close();
      this.mux.close();
      await this.closeLinks();
      await this.transport.close();
    })();
    return this.closing;
  }
}

function toId(e: EndpointRef): EndpointId {
  return typeof e === "string" ? endpointId(e) : endpointId(e.namespace, e.component, e.endpoint);
}

/** Dynamo-style builder: `plane.namespace("trtd").component("decode").endpoint("generate")`. */
export class Namespace {
  constructor(
    readonly plane: RequestPlane,
    readonly name: string,
  ) {}
  component(name: string): Component {
    return new Component(this.plane, this.name, validateName(name, "component"));
  }
}

export class Component {
  constructor(
    readonly plane: RequestPlane,
    readonly namespace: string,
    readonly name: string,
  ) {}
  endpoint(name: string): Endpoint {
    return new Endpoint(this.plane, this.namespace, this.name, validateName(name, "endpoint"));
  }
}

/** An endpoint bound to a plane; usable wherever an {@link EndpointId} is expected. */
export class Endpoint implements EndpointId {
  constructor(
    readonly plane: RequestPlane,
    readonly namespace: string,
    readonly component: string,
    readonly endpoint: string,
  ) {}
  /** `ns/comp/ep` */
  get path(): string {
    return endpointPath(this);
  }
  serve<Req = unknown, Res = unknown>(handler: Handler<Req, Res>, options?: ServeOptions): Promise<ServedEndpoint> {
    return this.plane.serve(this, handler, options);
  }
  client<Req = unknown, Res = unknown>(options?: ClientOptions<Req>): EndpointClient<Req, Res> {
    return this.plane.client(this, options);
  }
  toString(): string {
    return this.path;
  }
}
