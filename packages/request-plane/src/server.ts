import type { Codec } from "./codec.js";
import { traceStage } from "@trtd/process";
import { CancelledError, PayloadTooLargeError, RequestPlaneError, TimeoutError } from "./errors.js";
import type { LinkAddress, LinkListener, LinkServed } from "./link-listener.js";
import type { Carrier } from "./link-pool.js";
import { LinkFrameType, type LinkSocket } from "./link-socket.js";
import { instancePath, newInstanceId, subjects, validateInstanceId, type EndpointId } from "./names.js";
import { DEFAULT_WINDOW, isObj, type ControlMsg, type Frame, type ReqMsg, type UpMsg } from "./protocol.js";
import type { Transport, TransportMsg, TransportService, TransportServiceRegistration, TransportSubscription } from "./transport.js";

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
  /**
   * Also appear as a NATS micro service (default true where the transport supports it): `nats micro ls` lists
   * the instance (name `<ns>-<comp>`, metadata with the exact names), `nats micro stats` shows its load.
   */
  microService?: boolean;
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
  /** Merges `metrics` into the published load record and announces it (now, or within 50 ms when called more often). */
  setMetrics(metrics: Record<string, unknown>): void;
  /** Leaves the queue group, announces `down`, lets in-flight requests finish (bounded), aborts the rest. */
  stop(options?: StopOptions): Promise<void>;
}

/** A client cannot make the server run further ahead than this many unconsumed replies. */
const MAX_WINDOW = 4096;
/** `setMetrics` announces at most this often. */
const MIN_ANNOUNCE_GAP_MS = 50;

interface Active {
  readonly id: string;
  readonly reply: string;
  /** Our control subject for this request: frames carry it as their reply subject. */
  readonly control: string;
  readonly ac: AbortController;
  /** What the request came over (the transport or a client's direct link): every frame of it goes back there. */
  readonly via: Carrier;
  readonly window: number;
  seq: number;
  credited: number;
  lastSent: number;
  accepted: boolean;
  /** The client sent a control message, so it knows the control subject: data frames may omit it. */
  controlKnown: boolean;
  /** When a data frame last carried the control subject (ms). */
  lastControlSent: number;
  creditWaiter: (() => void) | undefined;
  done: Promise<void>;
}

export interface ServerDeps {
  readonly transport: Transport;
  readonly codec: Codec;
  readonly heartbeatMs: number;
  readonly leaseMs: number;
  /** The plane's direct-link listener; absent when the plane has direct links off. */
  readonly links?: LinkListener;
  readonly onStopped: (s: Server) => void;
}

/** One instance serving one endpoint. Created by `RequestPlane.serve`. */
export class Server implements ServedEndpoint, LinkServed {
  readonly instanceId: string;
  readonly path: string;
  private readonly heartbeatMs: number;
  private readonly leaseMs: number;
  /** In-flight requests by control key (the last token of their control subject). */
  private readonly active = new Map<string, Active>();
  private readonly subs: TransportSubscription[] = [];
  private queueSub: TransportSubscription | undefined;
  private directSub: TransportSubscription | undefined;
  private service: TransportService | undefined;
  private readonly controlInbox: string;
  private readonly timers: NodeJS.Timeout[] = [];
  private extraMetrics: Record<string, unknown> = {};
  /** Pending reply frames, flat: subject, bytes, reply subject, carrier, ... (see enqueue). */
  private outq: Array<string | Uint8Array | Carrier | undefined> = [];
  private readonly directSubject: string;
  private link: { address: LinkAddress; unregister: () => void } | undefined;
  private flushScheduled = false;
  private lastAnnounce = 0;
  private announceTimer: NodeJS.Timeout | undefined;
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
    this.controlInbox = deps.transport.newInbox();
    this.directSubject = subjects.instance(endpoint, this.instanceId);
  }

  get activeRequests(): number {
    return this.active.size;
  }

  /** Subscribes and announces; resolves once the subscriptions reached the server. */
  async start(): Promise<void> {
    const t = this.deps.transport;
    // A subscription the server refuses (the account may not serve this endpoint) fails start(), not silently.
    let refused: Error | undefined;
    const onError = (err: Error) => (refused ??= err);
    this.subs.push(t.subscribe(`${this.controlInbox}.>`, (m) => this.onControl(m), { onError }));
    this.subs.push(t.subscribe(subjects.probe(this.endpoint), () => this.announce(), { onError }));
    const onMsg = (m: TransportMsg) => this.onInstanceMsg(m, t);
    const direct = this.directSubject;
    const queued = this.options.queueGroup !== false;
    if (t.registerService && this.options.microService !== false) {
      const { namespace, component, endpoint } = this.endpoint;
      const endpoints: TransportServiceRegistration["endpoints"] = [{ name: `${endpoint}-direct`, subject: direct, callback: onMsg }];
      if (queued) endpoints.unshift({ name: endpoint, subject: subjects.queue(this.endpoint), queue: subjects.queueGroup, callback: onMsg });
      this.service = await t.registerService({
        name: `${namespace}-${component}`,
        version: "0.1.0",
        description: `trtd request-plane instance ${this.path}`,
        metadata: { namespace, component, endpoint, instance: this.instanceId, path: this.path },
        endpoints,
        stats: () => this.metrics(),
      });
    } else {
      this.directSub = t.subscribe(direct, onMsg, { onError });
      if (queued) this.queueSub = t.subscribe(subjects.queue(this.endpoint), onMsg, { queue: subjects.queueGroup, onError });
    }
    // ticks at half the interval: a quiet stream hears from us at least every 1.5 intervals (clients allow 3)
    this.timers.push(setInterval(() => this.heartbeat(), Math.max(10, Math.floor(this.heartbeatMs / 2))));
    this.timers.push(setInterval(() => this.announce(), Math.max(50, Math.floor(this.leaseMs / 3))));
    for (const tm of this.timers) tm.unref();
    await t.flush(); // the server answers a refused SUB before this PONG
    if (refused) throw refused;
    this.link = this.deps.links?.register(this);
    this.announce();
  }

  setMetrics(metrics: Record<string, unknown>): void {
    this.extraMetrics = { ...this.extraMetrics, ...metrics };
    // at most one announcement per MIN_ANNOUNCE_GAP_MS however often metrics change (e.g. per token)
    const wait = this.lastAnnounce + MIN_ANNOUNCE_GAP_MS - Date.now();
    if (wait <= 0) this.announce();
    else if (!this.announceTimer) {
      this.announceTimer = setTimeout(() => {
        this.announceTimer = undefined;
        this.announce();
      }, wait);
      this.announceTimer.unref();
    }
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
    this.lastAnnounce = Date.now();
    const msg: UpMsg = { k: "up", i: this.instanceId, lease: this.leaseMs, m: this.metrics() };
    if (this.options.meta) msg.meta = this.options.meta;
    if (this.link) msg.l = { h: this.link.address.host, p: this.link.address.port, s: this.link.address.secret };
    this.safePublish(subjects.announce(this.endpoint), this.deps.codec.encode(msg));
  }

  private safePublish(subject: string, data: Uint8Array, reply?: string, via: Carrier = this.deps.transport): void {
    try {
      if (data.byteLength > this.deps.transport.maxPayload) return;
      via.publish(subject, data, reply ? { reply } : undefined);
    } catch {
      // connection closed or draining: the stream's watchdog on the client covers it
    }
  }

  /**
   * Reply frames are queued and published together once per event-loop turn (a request's first data frame goes
   * at once: sendData). nats.js flushes its socket on a microtask, and an async-generator handler resumes on
   * microtasks too, so publishing each frame at once costs one socket write per reply; batching per turn measured
   * ~2x the streamed replies/s. The queue holds at most the credit window of each stream (the handler waits for
   * credit, which needs a new turn).
   */
  private enqueue(subject: string, data: Uint8Array, reply: string | undefined, via: Carrier): void {
    this.outq.push(subject, data, reply, via);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushOut);
    }
  }

  private readonly flushOut = (): void => {
    this.flushScheduled = false;
    if (this.outq.length === 0) return; // sent already, by a first frame's flush in the same turn
    traceStage?.("plane.reply_flush");
    const q = this.outq;
    this.outq = [];
    for (let i = 0; i < q.length; i += 4) this.safePublish(q[i] as string, q[i + 1] as Uint8Array, q[i + 2] as string | undefined, q[i + 3] as Carrier);
  };

  /**
   * A message on a client's direct link bound to this instance: its requests and its control messages, as they
   * would have come through nats-server. Nothing else may be addressed this way (the link is not a way around the
   * NATS permissions): any other subject, or a request once we are stopping, gets the no-responders NATS would give.
   */
  onLinkMessage(subject: string, reply: string | undefined, data: Uint8Array, link: LinkSocket): void {
    const m: TransportMsg = { subject, data, reply, noResponders: false };
    if (subject === this.directSubject && !this.stopping) this.onInstanceMsg(m, link);
    else if (subject.startsWith(this.controlInbox) && subject.charCodeAt(this.controlInbox.length) === 46 /* . */) this.onControl(m);
    else if (reply) link.write(LinkFrameType.NoResponders, reply, undefined);
  }

  /** The client's end of a direct link is gone: its requests have lost their client (as a no-responders on NATS). */
  onLinkClosed(link: LinkSocket): void {
    for (const a of this.active.values()) if (a.via === link) a.ac.abort(new CancelledError("client gone (its direct link closed)"));
  }

  private onInstanceMsg(m: TransportMsg, via: Carrier): void {
    traceStage?.("plane.request_in");
    if (m.noResponders || !m.reply) return;
    let req: ReqMsg;
    try {
      const v = this.deps.codec.decode(m.data);
      if (!isObj(v) || v.k !== "req" || typeof v.id !== "string") return;
      req = v as unknown as ReqMsg;
    } catch {
      return; // garbage on our subject: drop it, it must not disturb other requests
    }
    this.onRequest(req, m.reply, via);
  }

  /** Cancel and credit from the client, or a 503 meaning the client's inbox is gone (its connection died). */
  private onControl(m: TransportMsg): void {
    const a = this.active.get(m.subject.slice(this.controlInbox.length + 1));
    if (!a) return;
    if (m.noResponders) {
      a.ac.abort(new CancelledError("client gone"));
      return;
    }
    let msg: ControlMsg;
    try {
      const v = this.deps.codec.decode(m.data);
      if (!isObj(v)) return;
      msg = v as unknown as ControlMsg;
    } catch {
      return;
    }
    a.controlKnown = true;
    if (msg.k === "cancel") {
      a.ac.abort(new CancelledError(msg.r ? `cancelled by client: ${msg.r}` : "cancelled by client"));
    } else if (msg.k === "credit" && typeof msg.n === "number" && msg.n > a.credited) {
      a.credited = msg.n;
      const w = a.creditWaiter;
      a.creditWaiter = undefined;
      w?.();
    }
  }

  private send(a: Active, frame: Frame): void {
    if (!a.accepted && frame.k !== "hb") {
      a.accepted = true;
      if (frame.k !== "acc") {
        frame.i = this.instanceId;
        frame.hb = this.heartbeatMs;
      }
    }
    a.lastSent = Date.now();
    const bytes = this.deps.codec.encode(frame);
    if (bytes.byteLength <= this.deps.transport.maxPayload) this.enqueue(a.reply, bytes, a.control, a.via);
  }

  private heartbeat(): void {
    const now = Date.now();
    // s and c let the client spot replies or credit lost in a reconnect (protocol.ts, hb)
    for (const a of this.active.values()) if (now - a.lastSent >= this.heartbeatMs * 0.9) this.send(a, { k: "hb", s: a.seq, c: a.credited });
  }

  private onRequest(req: ReqMsg, reply: string, via: Carrier): void {
    const key = (++this.nextKey).toString(36);
    const a: Active = {
      id: req.id,
      reply,
      control: `${this.controlInbox}.${key}`,
      ac: new AbortController(),
      via,
      window: typeof req.w === "number" && req.w > 0 ? Math.min(req.w, MAX_WINDOW) : DEFAULT_WINDOW,
      seq: 0,
      credited: 0,
      lastSent: 0,
      accepted: false,
      controlKnown: false,
      lastControlSent: 0,
      creditWaiter: undefined,
      done: Promise.resolve(),
    };
    if (this.stopping) {
      this.send(a, { k: "err", s: 0, c: "closed", m: `instance ${this.path} is stopping`, n: "ClosedError" });
      return;
    }
    this.active.set(key, a);
    // Accept explicitly only if the handler has not produced a frame by the next turn of the event loop:
    // a quick one-reply request is then a single frame.
    setImmediate(() => {
      if (!a.accepted && this.active.get(key) === a) this.send(a, { k: "acc", i: this.instanceId, hb: this.heartbeatMs });
    });
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
    try {
      if (typeof req.dl === "number") {
        const left = req.dl - Date.now();
        if (left <= 0) throw new TimeoutError("deadline passed before the request started");
        deadlineTimer = setTimeout(() => a.ac.abort(new TimeoutError(`deadline exceeded on ${this.path}`)), left);
      }
      const ctx: RequestContext = {
        requestId: a.id,
        signal,
        headers: isObj(req.h) ? (req.h as Record<string, string>) : {},
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
          this.sendData(a, r.value, false);
        }
        if (signal.aborted) throw signal.reason;
        this.send(a, { k: "end", s: a.seq });
      } else {
        if (signal.aborted) throw signal.reason;
        this.sendData(a, out, true);
      }
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
      this.active.delete(key);
    }
  }

  private sendData(a: Active, value: unknown, last: boolean): void {
    const frame: Frame = { k: "d", s: a.seq + 1, p: value };
    if (last) frame.e = 1;
    if (!a.accepted) {
      frame.i = this.instanceId;
      frame.hb = this.heartbeatMs;
    }
    const bytes = this.deps.codec.encode(frame);
    const max = this.deps.transport.maxPayload;
    if (bytes.byteLength > max) throw new PayloadTooLargeError(bytes.byteLength, max, "reply");
    // Data frames carry the control subject (their reply subject) until the client's first control message
    // (credit) proves it has it, and after that one frame per half heartbeat interval still does; acc, hb,
    // end and err frames always carry it. The others go without: ~35 bytes less per reply each way through
    // nats-server. The periodic one keeps "client gone" (NATS answers no-responders only to a publish with
    // a reply subject) and stray-frame cancels within a heartbeat interval on a busy stream.
    const now = Date.now();
    let reply: string | undefined;
    if (!a.controlKnown || now - a.lastControlSent >= this.heartbeatMs / 2) {
      reply = a.control;
      a.lastControlSent = now;
    }
    a.seq++;
    a.accepted = true;
    a.lastSent = now;
    this.enqueue(a.reply, bytes, reply, a.via);
    // A stream's first data frame (time to first token) and a unary reply (its only frame) gain nothing from
    // waiting for the turn's other frames: they leave now, with whatever is queued before them.
    if (a.seq === 1) this.flushOut();
  }

  stop(options: StopOptions = {}): Promise<void> {
    this.stopping ??= this.doStop(options.graceMs ?? 5000);
    return this.stopping;
  }

  private async doStop(graceMs: number): Promise<void> {
    // no new requests: leave the queue group and the direct subject (direct callers now get no-responders)
    this.queueSub?.unsubscribe();
    this.queueSub = undefined;
    this.directSub?.unsubscribe();
    this.directSub = undefined;
    await this.service?.stop();
    this.service = undefined;
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
    clearTimeout(this.announceTimer);
    this.flushOut(); // the last frames of finished requests go out before we let go
    this.link?.unregister(); // after the flush: a link sends what it has queued, then closes
    this.link = undefined;
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

