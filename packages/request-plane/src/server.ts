import type { Codec } from "./codec.js";
import { CancelledError, PayloadTooLargeError, RequestPlaneError, TimeoutError } from "./errors.js";
import { instancePath, newInstanceId, subjects, validateInstanceId, type EndpointId } from "./names.js";
import { isObj, type Frame, type InstanceInbound, type ReqMsg, type UpMsg } from "./protocol.js";
import type { Transport, TransportMsg, TransportSubscription } from "./transport.js";

/** What a handler gets besides the request. */
export interface RequestContext {
  readonly requestId: string;
  /** Fires on client cancel, client gone, deadline, or server stop; `signal.reason` is a typed error. */
  readonly signal: AbortSignal;
  readonly headers: Readonly<Record<string, string>>;
  /** Absolute deadline (epoch ms), if the client set one. */
  readonly deadline: number | undefined;
  readonly instanceId: string;
  readonly endpoint: EndpointId;
}

/**
 * A handler yields a stream of replies (async generator / async iterable / generator object), or returns
 * one reply (value or promise). Throwing sends an error frame: `code` and `message` of the error reach the
 * client as a `RemoteError`.
 */
export type Handler<Req = unknown, Res = unknown> = (
  request: Req,
  ctx: RequestContext,
) => AsyncIterable<Res> | Iterator<Res> | Promise<Res> | Res;

export interface ServeOptions {
  /** Instance id, lowercase `[a-z0-9-_]` (default: 16 random hex digits). */
  instanceId?: string;
  /** Interval of stream heartbeats, ms (default: the plane's, 1000). Clients declare the server dead after 3 missed. */
  heartbeatMs?: number;
  /** Discovery lease, ms (default: the plane's, 3000). Re-announced every lease/3; clients drop the instance after a lease of silence. */
  leaseMs?: number;
  /** Load metrics sampled at every announcement, merged over `activeRequests` (e.g. kvBlocksFree). */
  metrics?: () => Record<string, unknown>;
  /** Static description published with the instance (role, kv-transfer address...). */
  meta?: Record<string, unknown>;
  /** Join the endpoint's queue group (default true); false = reachable only by direct routing. */
  queueGroup?: boolean;
}

export interface StopOptions {
  /** How long in-flight requests may finish before their handlers are aborted (default 5000 ms). */
  graceMs?: number;
}

/** A registered instance of an endpoint. */
export interface ServedEndpoint {
  readonly endpoint: EndpointId;
  readonly instanceId: string;
  /** `ns/comp/ep/id` */
  readonly path: string;
  readonly activeRequests: number;
  /** Merges `metrics` into the published load record and announces now. */
  setMetrics(metrics: Record<string, unknown>): void;
  /** Leaves the queue group, announces `down`, lets in-flight requests finish (bounded), aborts the rest. */
  stop(options?: StopOptions): Promise<void>;
}

interface Active {
  readonly id: string;
  readonly reply: string;
  readonly goneSubject: string;
  readonly ac: AbortController;
  readonly window: number;
  seq: number;
  credited: number;
  lastSent: number;
  creditWaiter: (() => void) | undefined;
  done: Promise<void>;
}

export interface ServerDeps {
  readonly transport: Transport;
  readonly codec: Codec;
  readonly heartbeatMs: number;
  readonly leaseMs: number;
  readonly onStopped: (s: Server) => void;
}

/** One instance serving one endpoint. Created by `RequestPlane.serve`. */
export class Server implements ServedEndpoint {
  readonly instanceId: string;
  readonly path: string;
  private readonly heartbeatMs: number;
  private readonly leaseMs: number;
  private readonly active = new Map<string, Active>();
  private readonly byGoneKey = new Map<string, Active>();
  private readonly subs: TransportSubscription[] = [];
  private queueSub: TransportSubscription | undefined;
  private readonly goneInbox: string;
  private readonly timers: NodeJS.Timeout[] = [];
  private extraMetrics: Record<string, unknown> = {};
  private nextKey = 0;
  private stopping: Promise<void> | undefined;

  constructor(
    readonly endpoint: EndpointId,
    private readonly handler: Handler<any, any>,
    private readonly options: ServeOptions,
    private readonly deps: ServerDeps,
  ) {
    this.instanceId = validateInstanceId(options.instanceId ?? newInstanceId());
    this.path = instancePath(endpoint, this.instanceId);
    this.heartbeatMs = options.heartbeatMs ?? deps.heartbeatMs;
    this.leaseMs = options.leaseMs ?? deps.leaseMs;
    this.goneInbox = deps.transport.newInbox();
  }

  get activeRequests(): number {
    return this.active.size;
  }

  /** Subscribes and announces; resolves once the subscriptions reached the server. */
  async start(): Promise<void> {
    const t = this.deps.transport;
    this.subs.push(t.subscribe(subjects.instance(this.endpoint, this.instanceId), (m) => this.onInstanceMsg(m)));
    this.subs.push(t.subscribe(`${this.goneInbox}.>`, (m) => this.onGone(m)));
    this.subs.push(t.subscribe(subjects.probe(this.endpoint), () => this.announce()));
    if (this.options.queueGroup !== false) {
      this.queueSub = t.subscribe(subjects.queue(this.endpoint), (m) => this.onInstanceMsg(m), { queue: subjects.queueGroup });
    }
    this.timers.push(setInterval(() => this.heartbeat(), this.heartbeatMs));
    this.timers.push(setInterval(() => this.announce(), Math.max(50, Math.floor(this.leaseMs / 3))));
    for (const tm of this.timers) tm.unref();
    await t.flush();
    this.announce();
  }

  setMetrics(metrics: Record<string, unknown>): void {
    this.extraMetrics = { ...this.extraMetrics, ...metrics };
    this.announce();
  }

  private metrics(): Record<string, unknown> {
    let sampled: Record<string, unknown> = {};
    try {
      sampled = this.options.metrics?.() ?? {};
    } catch {
      // a failing metrics callback must not take the instance down; publish what we have
    }
    return { activeRequests: this.active.size, ...this.extraMetrics, ...sampled };
  }

  private announce(): void {
    if (this.stopping || this.deps.transport.isClosed) return;
    const msg: UpMsg = { k: "up", i: this.instanceId, lease: this.leaseMs, m: this.metrics() };
    if (this.options.meta) msg.meta = this.options.meta;
    this.safePublish(subjects.announce(this.endpoint), this.deps.codec.encode(msg));
  }

  private safePublish(subject: string, data: Uint8Array, reply?: string): boolean {
    try {
      if (data.byteLength > this.deps.transport.maxPayload) return false;
      this.deps.transport.publish(subject, data, reply ? { reply } : undefined);
      return true;
    } catch {
      return false; // connection closed or draining: the stream's watchdog on the client covers it
    }
  }

  private decode(m: TransportMsg): InstanceInbound | undefined {
    try {
      const v = this.deps.codec.decode(m.data);
      return isObj(v) && typeof v.k === "string" && typeof v.id === "string" ? (v as unknown as InstanceInbound) : undefined;
    } catch {
      return undefined; // garbage on our subject: drop it, it must not disturb other requests
    }
  }

  private onInstanceMsg(m: TransportMsg): void {
    if (m.noResponders) return;
    const msg = this.decode(m);
    if (!msg) return;
    if (msg.k === "req") {
      if (m.reply) this.onRequest(msg, m.reply);
    } else if (msg.k === "cancel") {
      const a = this.active.get(msg.id);
      a?.ac.abort(new CancelledError(msg.r ? `cancelled by client: ${msg.r}` : "cancelled by client"));
    } else if (msg.k === "credit") {
      const a = this.active.get(msg.id);
      if (a && typeof msg.n === "number" && msg.n > a.credited) {
        a.credited = msg.n;
        const w = a.creditWaiter;
        a.creditWaiter = undefined;
        w?.();
      }
    }
  }

  /** A 503 on our gone-inbox: the client's inbox has no subscriber any more (client finished, died or left). */
  private onGone(m: TransportMsg): void {
    if (!m.noResponders) return;
    const key = m.subject.slice(this.goneInbox.length + 1);
    this.byGoneKey.get(key)?.ac.abort(new CancelledError("client gone"));
  }

  private send(a: Active, frame: Frame): void {
    a.lastSent = Date.now();
    this.safePublish(a.reply, this.deps.codec.encode(frame), a.goneSubject);
  }

  private heartbeat(): void {
    const now = Date.now();
    for (const a of this.active.values()) if (now - a.lastSent >= this.heartbeatMs * 0.9) this.send(a, { k: "hb" });
  }

  private onRequest(req: ReqMsg, reply: string): void {
    const key = String(++this.nextKey);
    const a: Active = {
      id: req.id,
      reply,
      goneSubject: `${this.goneInbox}.${key}`,
      ac: new AbortController(),
      window: typeof req.w === "number" && req.w > 0 ? req.w : 256,
      seq: 0,
      credited: 0,
      lastSent: 0,
      creditWaiter: undefined,
      done: Promise.resolve(),
    };
    if (this.stopping) {
      this.send(a, { k: "err", s: 0, c: "closed", m: `instance ${this.path} is stopping`, n: "ClosedError" });
      return;
    }
    if (this.active.has(req.id)) {
      this.send(a, { k: "err", s: 0, c: "duplicate_request_id", m: `request id ${req.id} is already active`, n: "Error" });
      return;
    }
    this.active.set(req.id, a);
    this.byGoneKey.set(key, a);
    a.done = this.run(a, req, key);
  }

  private waitCredit(a: Active): Promise<void> | undefined {
    if (a.seq - a.credited < a.window) return undefined;
    return new Promise<void>((resolve) => {
      const onAbort = () => resolve();
      a.ac.signal.addEventListener("abort", onAbort, { once: true });
      a.creditWaiter = () => {
        a.ac.signal.removeEventListener("abort", onAbort);
        resolve();
      };
    });
  }

  private async run(a: Active, req: ReqMsg, key: string): Promise<void> {
    const signal = a.ac.signal;
    let deadlineTimer: NodeJS.Timeout | undefined;
    let iterator: AsyncIterator<unknown> | Iterator<unknown> | undefined;
    this.send(a, { k: "acc", id: a.id, i: this.instanceId, hb: this.heartbeatMs });
    try {
      if (typeof req.dl === "number") {
        const left = req.dl - Date.now();
        if (left <= 0) throw new TimeoutError("deadline passed before the request started");
        deadlineTimer = setTimeout(() => a.ac.abort(new TimeoutError(`deadline exceeded on ${this.path}`)), left);
      }
      const ctx: RequestContext = {
        requestId: a.id,
        signal,
        headers: req.h ?? {},
        deadline: req.dl,
        instanceId: this.instanceId,
        endpoint: this.endpoint,
      };
      const out = await this.handler(req.p, ctx);
      if (isStream(out)) {
        iterator = Symbol.asyncIterator in out ? out[Symbol.asyncIterator]() : (out as Iterator<unknown>);
        for (;;) {
          if (signal.aborted) break;
          const wait = this.waitCredit(a);
          if (wait) await wait;
          if (signal.aborted) break;
          const r = await iterator.next();
          if (r.done) {
            iterator = undefined;
            break;
          }
          this.sendData(a, r.value);
        }
      } else if (!signal.aborted) {
        this.sendData(a, out);
      }
      if (signal.aborted) throw signal.reason;
      this.send(a, { k: "end", s: a.seq });
    } catch (err) {
      this.send(a, errFrame(a.seq, signal.aborted ? signal.reason : err));
    } finally {
      clearTimeout(deadlineTimer);
      if (iterator?.return) {
        // closes the handler's generator so its finally blocks run (releases KV blocks etc.)
        try {
          await iterator.return();
        } catch {
          // the handler failed while closing; the client already has its error or end frame
        }
      }
      this.active.delete(a.id);
      this.byGoneKey.delete(key);
      if (!a.ac.signal.aborted) a.ac.abort(new CancelledError("request finished"));
    }
  }

  private sendData(a: Active, value: unknown): void {
    const s = a.seq + 1;
    const bytes = this.deps.codec.encode({ k: "d", s, p: value });
    const max = this.deps.transport.maxPayload;
    if (bytes.byteLength > max) throw new PayloadTooLargeError(bytes.byteLength, max, "reply");
    a.seq = s;
    a.lastSent = Date.now();
    this.safePublish(a.reply, bytes, a.goneSubject);
  }

  stop(options: StopOptions = {}): Promise<void> {
    this.stopping ??= this.doStop(options.graceMs ?? 5000);
    return this.stopping;
  }

  private async doStop(graceMs: number): Promise<void> {
    this.queueSub?.unsubscribe();
    this.queueSub = undefined;
    const t = this.deps.transport;
    if (!t.isClosed) {
      try {
        t.publish(subjects.announce(this.endpoint), this.deps.codec.encode({ k: "down", i: this.instanceId }));
      } catch {
        // closed meanwhile: clients expire us by lease
      }
    }
    const inflight = () => Promise.all([...this.active.values()].map((a) => a.done));
    if (this.active.size > 0) await boundedWait(inflight(), graceMs);
    for (const a of this.active.values()) a.ac.abort(new CancelledError(`instance ${this.path} stopped`));
    // handlers that ignore their signal get one more second, then we let go of them
    if (this.active.size > 0) await boundedWait(inflight(), 1000);
    for (const tm of this.timers) clearInterval(tm);
    for (const s of this.subs) s.unsubscribe();
    this.subs.length = 0;
    this.deps.onStopped(this);
  }
}

function isStream(v: unknown): v is AsyncIterable<unknown> | Iterator<unknown> {
  if (v === null || typeof v !== "object") return false;
  if (Symbol.asyncIterator in v) return true;
  return Symbol.iterator in v && typeof (v as unknown as Iterator<unknown>).next === "function";
}

function errFrame(seq: number, err: unknown): Frame {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = e instanceof RequestPlaneError ? e.code : typeof (e as { code?: unknown }).code === "string" ? (e as unknown as { code: string }).code : "remote_error";
  const f: Frame = { k: "err", s: seq, c: code, m: e.message, n: e.name };
  if (e instanceof PayloadTooLargeError) {
    f.sz = e.size;
    f.mx = e.maxPayload;
  }
  return f;
}

function boundedWait(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve();
      },
      () => {
        clearTimeout(t);
        resolve();
      },
    );
  });
}

