import type { Codec } from "./codec.js";
import { ClosedError, PayloadTooLargeError, RemoteError, TimeoutError } from "./errors.js";
import type { InstanceInfo, InstanceWatcher } from "./discovery.js";
import type { InboxMux } from "./inbox-mux.js";
import type { LinkPool } from "./link-pool.js";
import { endpointPath, instancePath, subjects, validateInstanceId, type EndpointId } from "./names.js";
import { DEFAULT_WINDOW, type ReqMsg } from "./protocol.js";
import { ReplyStream } from "./reply-stream.js";
import { random, roundRobin, type InstanceChooser, type RouterMode } from "./routers.js";
import type { Transport } from "./transport.js";

export interface ClientOptions<Req = unknown> {
  /** How to pick an instance (default "round-robin"); a function plugs in load- or KV-aware routing. */
  router?: RouterMode | InstanceChooser<Req>;
  /** Replies the server may send ahead of the consumer (default 1024; credit goes back every window / 2 consumed). */
  window?: number;
  /** Bound on an instance accepting the request, ms (default 5000). */
  acceptTimeoutMs?: number;
  /** Heartbeats missed before the server is declared gone (default 3). */
  missedHeartbeats?: number;
}

export interface RequestOptions {
  /** Send to this instance (direct routing), bypassing the router. */
  instanceId?: string;
  signal?: AbortSignal;
  /** Relative deadline, ms. */
  timeoutMs?: number;
  /** Absolute deadline, epoch ms (the earlier of the two wins). */
  deadline?: number;
  headers?: Record<string, string>;
  /** Defaults to a random id. */
  requestId?: string;
}

export interface WaitForInstancesOptions {
  /** How many instances to wait for (default 1). */
  count?: number;
  /** Bound, ms (default 10000); throws TimeoutError when it passes. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** How many requests went to one instance over its direct link and over NATS (`EndpointClient.carrierCounts`). */
export interface CarrierCounts {
  direct: number;
  nats: number;
}

export interface ClientDeps {
  readonly transport: Transport;
  readonly codec: Codec;
  readonly watcher: InstanceWatcher;
  readonly mux: InboxMux;
  /** The plane's direct links; absent when the plane has them off. */
  readonly links?: LinkPool;
  readonly onClosed: (c: EndpointClient<any, any>) => void;
}

/** Sends requests to one endpoint and tracks its live instances. Created by `RequestPlane.client`. */
export class EndpointClient<Req = unknown, Res = unknown> {
  private readonly chooser: InstanceChooser<Req> | undefined;
  private readonly window: number;
  private readonly acceptTimeoutMs: number;
  private readonly missedHeartbeats: number;
  private closed = false;
  private readonly listeners = new Set<() => void>();
  private readonly carriers = new Map<string, CarrierCounts>();

  constructor(
    readonly endpoint: EndpointId,
    options: ClientOptions<Req>,
    private readonly deps: ClientDeps,
  ) {
    const r = options.router ?? "round-robin";
    this.chooser = r === "queue" ? undefined : r === "round-robin" ? roundRobin() : r === "random" ? random() : r;
    this.window = Math.max(2, options.window ?? DEFAULT_WINDOW);
    this.acceptTimeoutMs = options.acceptTimeoutMs ?? 5000;
    this.missedHeartbeats = options.missedHeartbeats ?? 3;
  }

  /** Live instances, sorted by id, with their latest load metrics. */
  instances(): InstanceInfo[] {
    return this.deps.watcher.list();
  }

  /**
   * Calls `listener` whenever the set of live instances or their published load changes (an announcement, a
   * departure, an expiry); returns the function that removes it. Closing the client removes them all.
   */
  onInstancesChange(listener: () => void): () => void {
    const off = this.deps.watcher.onChange(listener);
    this.listeners.add(off);
    return () => {
      this.listeners.delete(off);
      off();
    };
  }

  /** Resolves with the instances once at least `count` are live; TimeoutError after `timeoutMs`. */
  waitForInstances(options: WaitForInstancesOptions = {}): Promise<InstanceInfo[]> {
    const count = options.count ?? 1;
    const timeoutMs = options.timeoutMs ?? 10_000;
    const now = this.instances();
    if (now.length >= count) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const done = (err?: unknown) => {
        clearTimeout(timer);
        off();
        options.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(this.instances());
      };
      const onAbort = () => done(options.signal?.reason ?? new ClosedError("wait aborted"));
      const timer = setTimeout(
        () => done(new TimeoutError(`${endpointPath(this.endpoint)}: ${this.instances().length} of ${count} instances after ${timeoutMs} ms`)),
        timeoutMs,
      );
      const off = this.deps.watcher.onChange(() => {
        if (this.closed) done(new ClosedError("client closed"));
        else if (this.instances().length >= count) done();
      });
      options.signal?.addEventListener("abort", onAbort, { once: true });
      this.deps.watcher.probe();
    });
  }

  /** Sends `request` and returns the stream of replies. Never throws: failures come out of the iteration. */
  generate(request: Req, options: RequestOptions = {}): ReplyStream<Res> {
    const t = this.deps.transport;
    const requestId = options.requestId ?? nextRequestId();
    let deadline = options.deadline;
    if (options.timeoutMs !== undefined) {
      const d = Date.now() + options.timeoutMs;
      deadline = deadline === undefined ? d : Math.min(deadline, d);
    }
    let subject: string;
    let routed: string | undefined;
    const tried = new Set<string>();
    let pickError: unknown;
    try {
      if (this.closed) throw new ClosedError("client closed");
      routed = options.instanceId !== undefined ? validateInstanceId(options.instanceId) : this.pick(request);
      subject = routed !== undefined ? subjects.instance(this.endpoint, routed) : subjects.queue(this.endpoint);
      tried.add(subject);
    } catch (err) {
      pickError = err;
      subject = subjects.queue(this.endpoint);
    }
    const linkTo = routed !== undefined && !pickError ? this.deps.watcher.linkOf(routed) : undefined;
    const link = linkTo && this.deps.links?.get(instancePath(this.endpoint, routed!), linkTo);
    const stream = new ReplyStream<Res>({
      transport: t,
      codec: this.deps.codec,
      requestId,
      subject,
      mux: this.deps.mux,
      window: this.window,
      acceptTimeoutMs: this.acceptTimeoutMs,
      missedHeartbeats: this.missedHeartbeats,
      deadline,
      signal: options.signal,
      onNoResponders: (failed) => this.reroute(request, failed, options.instanceId !== undefined, tried),
      link,
      instanceHint: routed,
      onSent: (direct) => this.countCarrier(routed ?? "queue", direct),
    });
    return stream.start(() => {
      if (pickError) throw pickError;
      const msg: ReqMsg = { k: "req", id: requestId, p: request, w: this.window };
      if (deadline !== undefined) msg.dl = deadline;
      if (options.headers) msg.h = options.headers;
      const bytes = this.deps.codec.encode(msg);
      if (bytes.byteLength > t.maxPayload) throw new PayloadTooLargeError(bytes.byteLength, t.maxPayload, "request");
      return bytes;
    });
  }

  /**
   * Requests sent so far per instance id (`queue` for those left to the queue group), by carrier: `direct` over the
   * instance's direct link, `nats` through nats-server (no link offered, the link failed to open, or turned off).
   */
  carrierCounts(): Record<string, CarrierCounts> {
    return Object.fromEntries([...this.carriers].map(([id, c]) => [id, { ...c }]));
  }

  private countCarrier(instance: string, direct: boolean): void {
    let c = this.carriers.get(instance);
    if (!c) {
      // bounded: the counts of departed instances go once many have come and gone
      if (this.carriers.size >= 1024) for (const id of this.carriers.keys()) if (!this.deps.watcher.get(id)) this.carriers.delete(id);
      c = { direct: 0, nats: 0 };
      this.carriers.set(instance, c);
    }
    if (direct) c.direct++;
    else c.nats++;
  }

  /** One request, one reply: the first reply of the stream (the rest, if any, is cancelled). */
  async request(request: Req, options: RequestOptions = {}): Promise<Res> {
    const stream = this.generate(request, options);
    for await (const reply of stream) return reply; // leaving the loop cancels whatever follows
    throw new RemoteError(`${endpointPath(this.endpoint)}: the handler ended without a reply`, { code: "no_reply" });
  }

  /**
   * After no responders on `failed`: forget that instance (it is dead: no subscriber on its subject) and, unless
   * the caller named the instance, try another one the router picks, then the queue group (at most 3 tries).
   */
  private reroute(request: Req, failed: string, direct: boolean, tried: Set<string>): string | undefined {
    const prefix = subjects.instance(this.endpoint, "");
    if (failed.startsWith(prefix)) this.deps.watcher.remove(failed.slice(prefix.length));
    if (direct || this.closed || tried.size >= 3) return undefined;
    let next: string;
    try {
      const id = this.pick(request, tried);
      next = id !== undefined ? subjects.instance(this.endpoint, id) : subjects.queue(this.endpoint);
    } catch {
      return undefined; // the chooser threw: report no responders
    }
    if (tried.has(next)) return undefined;
    tried.add(next);
    return next;
  }

  private pick(request: Req, exclude?: Set<string>): string | undefined {
    if (!this.chooser) return undefined;
    let list = this.instances();
    if (exclude) list = list.filter((i) => !exclude.has(subjects.instance(this.endpoint, i.id)));
    if (list.length === 0) return undefined; // not discovered yet: let the queue group route it
    const choice = this.chooser(list, request);
    return typeof choice === "string" ? choice : choice?.id;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const off of this.listeners) off();
    this.listeners.clear();
    this.deps.onClosed(this);
  }
}

// Request ids: a random per-process prefix plus a counter (unique without a random draw per request).
const idPrefix = Buffer.from(crypto.getRandomValues(new Uint8Array(9))).toString("base64url");
let idCounter = 0;
function nextRequestId(): string {
  return `${idPrefix}${(++idCounter).toString(36)}`;
}
