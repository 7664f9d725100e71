import { binaryCodec } from "./codec-binary.js";
import type { Codec } from "./codec.js";
import { EndpointClient, type ClientOptions } from "./client.js";
import { InstanceWatcher } from "./discovery.js";
import { CancelledError, ClosedError, NoRespondersError, TimeoutError } from "./errors.js";
import { InboxMux } from "./inbox-mux.js";
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

  constructor(
    readonly transport: Transport,
    options: PlaneOptions = {},
  ) {
    this.codec = options.codec ?? binaryCodec;
    this.heartbeatMs = options.heartbeatMs ?? 1000;
    this.leaseMs = options.leaseMs ?? 3000;
    this.mux = new InboxMux(transport, this.codec);
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
    const server = new Server(id, handler, options, {
      transport: this.transport,
      codec: this.codec,
      heartbeatMs: this.heartbeatMs,
      leaseMs: this.leaseMs,
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
