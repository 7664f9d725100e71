import { traceStage } from "@trtd/process";
import type { Codec } from "./codec.js";
import {
  CancelledError,
  ClosedError,
  NoRespondersError,
  RequestPlaneError,
  ServerGoneError,
  StreamBrokenError,
  TimeoutError,
  errorFromFrame,
} from "./errors.js";
import type { InboxMux } from "./inbox-mux.js";
import { ClientLink, type Carrier, type LinkUser } from "./link-pool.js";
import { isObj, type ControlMsg, type Frame, type HbFrame } from "./protocol.js";
import type { Transport, TransportMsg } from "./transport.js";

export interface ReplyStreamParams {
  readonly transport: Transport;
  readonly mux: InboxMux;
  readonly codec: Codec;
  readonly requestId: string;
  /** Subject the request went to (for NoRespondersError). */
  readonly subject: string;
  readonly window: number;
  /** Bound on hearing the `acc` frame, ms. */
  readonly acceptTimeoutMs: number;
  /** Missed heartbeats before the server is declared gone (default 3). */
  readonly missedHeartbeats: number;
  readonly deadline: number | undefined;
  readonly signal: AbortSignal | undefined;
  /**
   * Called when nobody received the request on `subject`. Returns another subject to try (the request was
   * delivered to no one, so resending cannot run it twice), or undefined to fail with NoRespondersError.
   */
  readonly onNoResponders?: (subject: string) => string | undefined;
  /**
   * The direct link to the chosen instance (open, or being opened: the request waits for it, bounded, then goes
   * over NATS if it did not open). Absent: NATS.
   */
  readonly link?: ClientLink | Promise<ClientLink | undefined>;
  /** The chosen instance, for the error when its link drops before it answered. */
  readonly instanceHint?: string;
  /** Told once how the request went out (true: the direct link). */
  readonly onSent?: (direct: boolean) => void;
}

type Waiter = { resolve: (r: IteratorResult<unknown>) => void; reject: (e: unknown) => void };

/**
 * The client side of one request: an async iterable of replies, in order. Errors (remote, timeout, server
 * gone, no responders) are thrown from the iteration. Leaving the loop early (break/return) or aborting the
 * signal sends a cancel to the serving instance. At most `window` replies are buffered: the server waits for
 * credit, so a slow consumer slows the handler instead of growing memory.
 */
export class ReplyStream<T = unknown> implements AsyncIterableIterator<T>, LinkUser {
  readonly requestId: string;
  /** Where the request went and where cancel and credit go: the transport, or the instance's direct link. */
  private carrier: Carrier;
  private detachLink: (() => void) | undefined;
  private route: { subject: string; release: () => void } | undefined;
  /** The server's control subject for this request (reply subject of its frames): cancel and credit go there. */
  private controlSubject: string | undefined;
  /** Cancelled before the server's first frame: stay registered (bounded) to deliver the cancel then. */
  private pendingCancel: string | undefined;
  private readonly buffer: unknown[] = [];
  private waiter: Waiter | undefined;
  private error: unknown;
  private ended = false;
  private finished = false; // resources released
  private expectSeq = 1;
  private consumed = 0;
  private credited = 0;
  private instance: string | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private tombstone: NodeJS.Timeout | undefined;
  private lastFrameAt = 0;
  private published = false;
  /** Where the request went last (changes when it is rerouted after no responders). */
  private subject: string;
  /** Kept until the server's first frame, to reroute after no responders. */
  private requestBytes: Uint8Array | undefined;
  private hbBoundMs: number;
  private readonly onAbort = () => this.fail(abortReason(this.p.signal), true, true);
  private acceptedResolve!: (id: string | undefined) => void;
  /** Resolves with the serving instance's id once it accepted the request (undefined if it never did). */
  readonly accepted: Promise<string | undefined>;

  constructor(private readonly p: ReplyStreamParams) {
    this.requestId = p.requestId;
    this.subject = p.subject;
    this.carrier = p.transport;
    this.hbBoundMs = p.acceptTimeoutMs;
    this.accepted = new Promise((r) => (this.acceptedResolve = r));
  }

  /** The id of the instance serving this request, once known. */
  get instanceId(): string | undefined {
    return this.instance;
  }

  /** Publishes the request. Errors (oversize, closed) become the stream's error. */
  start(encodedRequest: Uint8Array | (() => Uint8Array)): this {
    try {
      if (this.p.signal?.aborted) throw abortReason(this.p.signal);
      const bytes = typeof encodedRequest === "function" ? encodedRequest() : encodedRequest;
      this.route = this.p.mux.register(
        (m, via) => {
          // a link delivers only the frames of its own requests
          if (via === this.carrier || via === this.p.transport) this.onMsg(m);
        },
        () => {
          this.pendingCancel = undefined;
          this.fail(new ClosedError(`request plane closed while request ${this.requestId} was in flight`), true, true);
        },
      );
      this.p.signal?.addEventListener("abort", this.onAbort, { once: true });
      this.armWatchdog(); // it watches the deadline too
      this.requestBytes = bytes;
      const link = this.p.link;
      if (link instanceof Promise) {
        // bounded by the pool's connect timeout; a stream that ended meanwhile never sends
        void link.then((l) => {
          if (!this.ended && !this.finished) this.publishOn(l ?? this.p.transport);
        });
      } else this.publishOn(link ?? this.p.transport);
    } catch (err) {
      this.fail(err, false);
    }
    return this;
  }

  private publishOn(carrier: Carrier): void {
    try {
      this.carrier = carrier;
      if (carrier instanceof ClientLink) this.detachLink = carrier.attach(this);
      traceStage?.("plane.request_out");
      carrier.publish(this.subject, this.requestBytes!, { reply: this.route!.subject });
      this.published = true;
      this.p.onSent?.(carrier !== this.p.transport);
    } catch (err) {
      this.fail(err, false);
    }
  }

  /** The direct link carrying this request dropped: the same error as an instance that died. */
  linkLost(reason: string): void {
    this.detachLink = undefined;
    const instance = this.instance ?? this.p.instanceHint;
    this.fail(new ServerGoneError(`${reason}; instance ${instance} lost request ${this.requestId}`, instance), false);
  }

  /**
   * One timer per stream, not one per frame: frames only stamp `lastFrameAt`; when the timer fires early
   * it re-arms for the remaining time (setTimeout churn per frame cost ~30% of streaming throughput). The same
   * timer watches the request's deadline: it never sleeps past it (one timer per request instead of two).
   */
  private armWatchdog(): void {
    this.lastFrameAt = Date.now();
    if (this.watchdog === undefined && !this.ended && !this.finished) this.scheduleWatchdog(this.hbBoundMs);
  }

  private scheduleWatchdog(ms: number): void {
    const deadline = this.p.deadline;
    if (deadline !== undefined) ms = Math.min(ms, Math.max(0, deadline - Date.now()));
    this.watchdog = setTimeout(() => {
      this.watchdog = undefined;
      if (this.ended || this.finished) return;
      if (deadline !== undefined && Date.now() >= deadline) {
        this.fail(new TimeoutError(`request ${this.requestId} exceeded its deadline`), true);
        return;
      }
      const left = this.lastFrameAt + this.hbBoundMs - Date.now();
      if (left > 0) return this.scheduleWatchdog(left);
      if (this.instance === undefined) this.fail(new TimeoutError(`no instance accepted request ${this.requestId} on ${this.subject} within ${this.hbBoundMs} ms`), true);
      else this.fail(new ServerGoneError(`instance ${this.instance} sent nothing for ${this.hbBoundMs} ms (request ${this.requestId})`, this.instance), true);
    }, ms);
  }

  private onMsg(m: TransportMsg): void {
    traceStage?.("plane.reply_in");
    if (this.pendingCancel !== undefined) {
      // first sign of the server after we cancelled: tell it, then let go of the inbox. A data frame may
      // come without the control subject (protocol.ts): wait (bounded by the tombstone) for one that has it.
      if (!m.noResponders && !m.reply) return;
      if (!m.noResponders) this.sendControl(m.reply!, { k: "cancel", r: this.pendingCancel });
      this.pendingCancel = undefined;
      this.unroute();
      return;
    }
    if (this.ended || this.finished) return;
    if (m.noResponders) {
      const next = this.p.onNoResponders?.(this.subject);
      if (next !== undefined && this.requestBytes && this.route) {
        this.subject = next;
        // another instance: over NATS (its link, if any, is not this one)
        this.detachLink?.();
        this.detachLink = undefined;
        this.carrier = this.p.transport;
        try {
          this.p.transport.publish(next, this.requestBytes, { reply: this.route.subject });
          return;
        } catch (err) {
          this.fail(err, false);
          return;
        }
      }
      this.fail(new NoRespondersError(this.subject), false);
      return;
    }
    this.requestBytes = undefined;
    let f: Frame;
    try {
      const v = this.p.codec.decode(m.data);
      if (!isObj(v) || typeof v.k !== "string") throw new Error("not a frame");
      f = v as unknown as Frame;
    } catch (err) {
      this.fail(new StreamBrokenError(`undecodable reply frame for request ${this.requestId}`, { cause: err }), true);
      return;
    }
    if (this.instance === undefined && f.k !== "hb" && typeof f.i === "string") {
      this.instance = f.i;
      this.controlSubject = m.reply;
      this.hbBoundMs = Math.max(50, (typeof f.hb === "number" ? f.hb : 1000) * this.p.missedHeartbeats);
      this.acceptedResolve(f.i);
      // the accept bound becomes the heartbeat bound
      clearTimeout(this.watchdog);
      this.watchdog = undefined;
      this.armWatchdog();
    }
    // A frame's reply subject, when it has one, is the control subject: take it from any frame, so a lost
    // `acc` cannot leave the stream unable to send credit (heartbeats always carry it).
    if (this.controlSubject === undefined && m.reply) this.controlSubject = m.reply;
    this.lastFrameAt = Date.now();
    switch (f.k) {
      case "acc":
        return;
      case "hb":
        this.checkHeartbeat(f);
        return;
      case "d":
        if (f.s !== this.expectSeq) {
          this.fail(new StreamBrokenError(`reply ${f.s} arrived, expected ${this.expectSeq} (request ${this.requestId})`), true);
          return;
        }
        this.expectSeq++;
        if (this.waiter) {
          const w = this.waiter;
          this.waiter = undefined;
          this.consumed++;
          this.maybeCredit();
          w.resolve({ value: f.p, done: false });
        } else this.buffer.push(f.p);
        if (f.e === 1) this.finish();
        return;
      case "end":
        if (f.s !== this.expectSeq - 1) {
          this.fail(new StreamBrokenError(`stream ended after ${f.s} replies, received ${this.expectSeq - 1} (request ${this.requestId})`), true);
          return;
        }
        this.finish();
        return;
      case "err":
        this.fail(errorFromFrame(f.c, f.m, { name: f.n, instanceId: this.instance, size: f.sz, maxPayload: f.mx }), false);
        return;
    }
  }

  /**
   * Heartbeats prove the server alive, not the stream intact: NATS core drops messages across a reconnect.
   * Replies the server sent that never came would leave us waiting while it waits for our credit, both alive,
   * until the deadline; a lost credit message does the same. The heartbeat's counters reveal both.
   */
  private checkHeartbeat(f: HbFrame): void {
    const received = this.expectSeq - 1;
    if (typeof f.s === "number" && f.s > received) {
      this.fail(new StreamBrokenError(`replies ${received + 1}..${f.s} of request ${this.requestId} were lost in transit (connection interrupted?)`), true);
      return;
    }
    if (typeof f.c === "number" && f.c < this.credited) this.control({ k: "credit", n: this.credited });
  }

  private finish(): void {
    this.ended = true;
    this.release();
    this.wake();
  }

  private maybeCredit(): void {
    if (this.ended) return;
    if (this.consumed - this.credited < Math.max(1, this.p.window >> 1)) return;
    this.credited = this.consumed;
    this.control({ k: "credit", n: this.consumed });
  }

  private control(msg: ControlMsg): void {
    if (this.controlSubject !== undefined) this.sendControl(this.controlSubject, msg);
  }

  private sendControl(subject: string, msg: ControlMsg): void {
    try {
      this.carrier.publish(subject, this.p.codec.encode(msg));
    } catch {
      // connection closed: the server learns through the no-responders status or its deadline
    }
  }

  /** Cancels the request: the handler's signal fires on the server; iteration ends with CancelledError. */
  cancel(reason = "cancelled by caller"): void {
    this.fail(new CancelledError(reason), true, true);
  }

  /** Ends the stream with `err`. Replies already received stay readable unless the caller cancelled (`drop`). */
  private fail(err: unknown, notifyServer: boolean, drop = false): void {
    if (this.ended || this.finished) return;
    this.error = err ?? new CancelledError();
    this.ended = true;
    const reason = err instanceof Error ? err.message : String(err);
    if (notifyServer) {
      if (this.controlSubject !== undefined) this.control({ k: "cancel", r: reason });
      else if (this.route && this.published) this.pendingCancel = reason; // keep the inbox until the server shows up
    }
    if (drop) this.buffer.length = 0;
    this.release();
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    if (this.buffer.length) {
      this.consumed++;
      w.resolve({ value: this.buffer.shift(), done: false });
    } else if (this.error != null) {
      const e = this.error;
      this.error = null; // report once, then done
      w.reject(e);
    } else w.resolve({ value: undefined, done: true });
  }

  private release(): void {
    if (this.finished) return;
    this.finished = true;
    this.requestBytes = undefined;
    this.detachLink?.();
    this.detachLink = undefined;
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    this.p.signal?.removeEventListener("abort", this.onAbort);
    if (this.pendingCancel !== undefined) {
      // bounded: the server's first frame comes within its accept time, or never
      this.tombstone = setTimeout(() => this.unroute(), this.p.acceptTimeoutMs);
      this.tombstone.unref();
    } else this.unroute();
    this.acceptedResolve(this.instance);
  }

  private unroute(): void {
    clearTimeout(this.tombstone);
    this.pendingCancel = undefined;
    this.route?.release();
    this.route = undefined;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.buffer.length) {
      this.consumed++;
      const value = this.buffer.shift() as T;
      this.maybeCredit();
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) {
      if (this.error !== undefined && this.error !== null) {
        const e = this.error;
        this.error = null;
        return Promise.reject(e);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    if (this.waiter) return Promise.reject(new Error("ReplyStream.next() called while a previous next() is pending"));
    return new Promise((resolve, reject) => (this.waiter = { resolve: resolve as Waiter["resolve"], reject }));
  }

  /** Called by `break` in for-await: cancels a request that has not ended. */
  return(): Promise<IteratorResult<T>> {
    if (!this.ended) this.fail(new CancelledError("consumer stopped reading"), true, true);
    this.error = null;
    this.buffer.length = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Reads every reply into an array. */
  async collect(): Promise<T[]> {
    const out: T[] = [];
    for await (const v of this) out.push(v);
    return out;
  }
}

function abortReason(signal: AbortSignal | undefined): Error {
  const r: unknown = signal?.reason;
  if (r instanceof RequestPlaneError) return r;
  if (r instanceof Error && r.name === "TimeoutError") return new TimeoutError(r.message, { cause: r });
  return new CancelledError(r instanceof Error ? r.message : "aborted by caller", { cause: r });
}
