import { SegmentMappings } from "./shm-staging.js";
import type { RequestPlane } from "@trtd/request-plane";
import {
  asKvError,
  KvAbortedError,
  KvClosedError,
  KvNoTransportError,
  KvOfferExpiredError,
  KvPayloadTooLargeError,
  KvSizeMismatchError,
  KvTransferError,
  KvTransportError,
} from "./errors.js";
import { TRANSPORT_PREFERENCE, parseKvHandle, type KvEndpoint, type KvHandle, type KvTransportName, type NatsEndpoint } from "./handle.js";
import type { KvLayout } from "@trtd/model";
import { assertLayoutCompatible } from "./layout.js";
import { Semaphore, transferTimeoutMs, type TransferTimeoutOptions } from "./limits.js";
import { mapSegments, type KvSink, type SegmentMap } from "./segments.js";
import { localHostId, shmAvailable } from "./shm.js";
import { ConnectionPool } from "./tcp-client.js";
import { TransportCounters, type KvTransportStatsByName } from "./transport-stats.js";
import { KvFallbackError, PULL_TRANSPORTS, transportOf, type ControlSender, type NegotiationSink, type PullerEnv, type PullJob } from "./transports/index.js";

export interface KvPullerOptions {
  /** Layout of this side's KV (e.g. `layoutFromExecutor(ex.kvLayout())`); handles with another are refused. */
  layout: KvLayout;
  /** Transports this side may use. @default ["cuda-ipc", "engine", "shm", "tcp", "nats"] (nats only with `requestPlane`) */
  transports?: KvTransportName[];
  /** The request plane (NATS or in-process), for the "nats" small-KV fallback and its acks. */
  requestPlane?: RequestPlane;
  /** Pulls running at once; more wait (bounded by their own timeout). @default 16 */
  maxConcurrentPulls?: number;
  /** @default 5000 */
  connectTimeoutMs?: number;
  /** Longest silence from the offering side during a transfer. @default 10000 */
  idleTimeoutMs?: number;
  /** Default transfer deadline: base + bytes at a minimum rate (default 5 s + 50 MB/s). */
  timeouts?: TransferTimeoutOptions;
  /** Idle pooled connections kept per offering server, and for how long. @default { maxIdlePerEndpoint: 4, idleMs: 30000 } */
  pool?: { maxIdlePerEndpoint?: number; idleMs?: number };
  /**
   * cuda-ipc: whether this side's device (the sink's `deviceUuid`) can read the memory of the offering device.
   * Default: only the same device (equal UUIDs). A hook for GPUs with peer access (NVLink, PCIe P2P): answering true
   * for such a pair makes the puller try the device path, and the executor's import answers UNSUPPORTED (the pull
   * then falls back) when it cannot. Untested with two GPUs.
   */
  canReachDevice?: (localUuid: string, remoteUuid: string) => boolean;
}

export interface PullOptions {
  signal?: AbortSignal;
  /** Overall bound for this pull (queueing included). @default size-scaled, see KvPullerOptions.timeouts */
  timeoutMs?: number;
  /** Restrict the transports for this pull (e.g. to measure one). */
  transports?: KvTransportName[];
}

export interface PullResult {
  /** The transport that moved the KV. */
  transport: KvTransportName;
  bytes: number;
  /** Wall time of the pull, fractional (sub-millisecond resolution). */
  ms: number;
  /** Transports tried first that gave the pull up (cuda-ipc whose device import failed), with why. */
  fallbacks: Array<{ transport: KvTransportName; error: KvTransferError }>;
}

export interface KvPullerStats {
  active: number;
  queued: number;
  /** Most pulls running at once since start. */
  peakActive: number;
  pooledConnections: { idle: number; busy: number };
  completed: number;
  failed: number;
  /** Per transport: pulls completed / failed / fallen back from, their bytes and seconds. */
  transports: KvTransportStatsByName;
}

/**
 * The pulling (decode) side. `pull(handle, sink)` moves the offered KV into `sink` with the best transport both
 * sides have, verifies every chunk, and acknowledges (which releases the offer). On any failure it throws a
 * KvTransferError, aborts the sink, and makes sure the offering side releases the offer: the caller recomputes.
 */
export class KvPuller {
  readonly layout: KvLayout;
  readonly hostId = localHostId();
  private readonly allowed: Set<KvTransportName>;
  private readonly slots: Semaphore;
  private readonly pool: ConnectionPool;
  private readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly timeouts: TransferTimeoutOptions;
  private readonly env: PullerEnv;
  private readonly counters = new TransportCounters();
  private completed = 0;
  private failed = 0;
  private closed = false;

  constructor(o: KvPullerOptions) {
    this.layout = o.layout;
    const t = o.transports ?? ["cuda-ipc", "engine", "shm", "tcp", "nats"];
    this.allowed = new Set(t.filter((x) => (x !== "nats" || !!o.requestPlane) && (x !== "shm" || shmAvailable())));
    this.slots = new Semaphore(o.maxConcurrentPulls ?? 16);
    this.pool = new ConnectionPool(o.pool?.maxIdlePerEndpoint ?? 4, o.pool?.idleMs ?? 30_000);
    this.connectTimeoutMs = o.connectTimeoutMs ?? 5000;
    this.idleTimeoutMs = o.idleTimeoutMs ?? 10_000;
    this.timeouts = o.timeouts ?? {};
    const canReach = o.canReachDevice ?? ((local: string, remote: string) => local === remote);
    this.env = {
      hostId: this.hostId,
      requestPlane: o.requestPlane,
      pool: this.pool,
      connectTimeoutMs: this.connectTimeoutMs,
      idleTimeoutMs: this.idleTimeoutMs,
      canReachDevice: canReach,
      ack: (h) => this.ack(h),
      segments: new SegmentMappings(),
    };
  }

  /** The transport `pull` would use for this handle and sink (the best both sides have), or an error. */
  negotiate(handle: KvHandle, sink?: NegotiationSink, only?: KvTransportName[]): KvEndpoint {
    return this.candidates(handle, sink, only)[0]!;
  }

  /** Every endpoint this side can use for the handle and sink, best first; throws when there is none. */
  private candidates(handle: KvHandle, sink: NegotiationSink | undefined, only: KvTransportName[] | undefined): KvEndpoint[] {
    const usable = (e: KvEndpoint): boolean =>
      this.allowed.has(e.transport) && (!only || only.includes(e.transport)) && transportOf(e).usable(e, handle, sink, this.env);
    // An engine-only offer (no bytes outside the engine): its tcp/shm/nats endpoints serve only the ack.
    const engineOnly = handle.bytes === 0 && handle.endpoints.some((e) => e.transport === "engine");
    if (engineOnly) {
      const eng = handle.endpoints.find((e) => e.transport === "engine")!;
      if (usable(eng)) return [eng];
      throw new KvNoTransportError("the offer is engine-native only (its engine moves the KV) and this sink cannot import engine state");
    }
    const candidates = handle.endpoints.filter(usable);
    candidates.sort((a, b) => TRANSPORT_PREFERENCE.indexOf(a.transport) - TRANSPORT_PREFERENCE.indexOf(b.transport));
    if (candidates.length > 0) return candidates;
    const nats = handle.endpoints.find((e): e is NatsEndpoint => e.transport === "nats");
    const others = handle.endpoints.some((e) => e.transport !== "nats" && usable(e));
    if (nats && this.allowed.has("nats") && !others && nats.maxBytes < handle.bytes) {
      throw new KvPayloadTooLargeError(
        `KV of ${handle.bytes} bytes exceeds the NATS transport limit of ${nats.maxBytes} bytes and no other transport is shared`,
        handle.bytes,
        nats.maxBytes,
      );
    }
    throw new KvNoTransportError(
      `no common transport: offer has [${handle.endpoints.map((e) => e.transport).join(", ")}], this side allows [${[...this.allowed].join(", ")}]`,
    );
  }

  /**
   * Pulls the KV named by `handle` into `sink`. Takes ownership of `sink` on failure (aborts it); on success the
   * caller passes it to its executor (generation-only request). Tries the usable transports best first; one that
   * gives up while leaving the offer pullable (cuda-ipc whose device import failed) hands over to the next.
   */
  async pull(handleInput: KvHandle | string, sink: KvSink, opts: PullOptions = {}): Promise<PullResult> {
    const started = Date.now();
    const startedPrecise = performance.now(); // PullResult.ms: a single-copy shm pull of a small KV takes under 1 ms
    let handle: KvHandle | undefined;
    let release: (() => void) | undefined;
    let contacted = false;
    let chosen: KvTransportName | undefined;
    let job: PullJob | undefined;
    const fallbacks: PullResult["fallbacks"] = [];
    try {
      if (this.closed) throw new KvClosedError("KvPuller is closed");
      handle = parseKvHandle(handleInput);
      assertLayoutCompatible(this.layout, handle.layout);
      if (Date.now() >= handle.expiresAt) throw new KvOfferExpiredError(`offer ${handle.id} expired ${Date.now() - handle.expiresAt} ms ago`);
      const candidates = this.candidates(handle, sink, opts.transports);
      chosen = candidates[0]!.transport;
      const h = handle;
      let map: SegmentMap | undefined;
      const segments = () => (map ??= mapSegments("import sink", sink, h.bytes));
      // A sink of the wrong size is refused before anyone is contacted.
      const check = transportOf(candidates[0]!).sizeCheck;
      if (check === "segments") segments();
      else if (check === "bytes" && sink.bytes !== handle.bytes) {
        throw new KvSizeMismatchError(`import sink: holds ${sink.bytes} bytes, the handle announces ${handle.bytes}`);
      }
      const deadline = started + (opts.timeoutMs ?? transferTimeoutMs(handle.bytes, this.timeouts));
      release = await this.slots.acquire(deadline, opts.signal, "pull slot");
      if (opts.signal?.aborted) throw new KvAbortedError("pull aborted", { cause: opts.signal.reason });
      contacted = true;
      job = { handle, sink, deadline, signal: opts.signal, segments, lease: undefined };
      for (let i = 0; ; ) {
        const ep = candidates[i]!;
        const transport = transportOf(ep);
        chosen = ep.transport;
        const t0 = performance.now(); // sub-millisecond: a single-copy shm pull of a small KV takes less than 1 ms
        try {
          await transport.pull(ep, job, this.env);
          this.counters.completed(ep.transport, handle.bytes, performance.now() - t0);
          break;
        } catch (err) {
          if (!(err instanceof KvFallbackError)) throw err;
          const j = job;
          const next = candidates.findIndex((c, k) => k > i && transportOf(c).canContinue(c, j));
          if (next < 0 || opts.signal?.aborted) throw asTransportError(err.reason, `${ep.transport} failed and no other transport can go on with the offer`);
          this.counters.fallback(ep.transport);
          fallbacks.push({ transport: ep.transport, error: asTransportError(err.reason, `${ep.transport} failed`) });
          i = next;
        }
      }
      this.completed++;
      return { transport: chosen, bytes: handle.bytes, ms: performance.now() - startedPrecise, fallbacks };
    } catch (err) {
      this.failed++;
      if (chosen && contacted) this.counters.failed(chosen);
      const e = asKvError(err, (x) => new KvTransportError(String((x as Error)?.message ?? x), { cause: x }));
      // A lease nobody went on with: dropping its connection releases the offer.
      if (job?.lease) {
        job.lease.destroy();
        this.pool.release(job.lease);
        job.lease = undefined;
      }
      sink.abort();
      // TCP/shm/cuda-ipc: the server releases when the connection drops. Otherwise tell it, bounded, so nothing waits for expiry.
      if (handle && !(contacted && chosen && PULL_TRANSPORTS[chosen].releasesOnFailure)) await this.nack(handle, 1000, chosen);
      throw e;
    } finally {
      release?.();
    }
  }

  /**
   * Releases an offer this side will not pull (e.g. the request was cancelled before decode started), so the
   * offering side frees its blocks now instead of at expiry. Bounded; never throws for an unreachable peer.
   */
  async decline(handleInput: KvHandle | string, timeoutMs = 1000): Promise<void> {
    const handle = parseKvHandle(handleInput);
    await this.nack(handle, timeoutMs);
  }

  /** Sends ACK outside a transfer (engine transport: the engine moved the bytes) over the best control path. */
  private async ack(handle: KvHandle): Promise<void> {
    const send = controlPaths(handle, this.env.requestPlane)[0];
    if (!send) throw new KvNoTransportError("engine transfer done but no control endpoint to acknowledge it");
    await send(handle, "ack", this.connectTimeoutMs);
  }

  /** Tells the offering side to release (through the transport holding the transfer, else any control path). */
  private nack(handle: KvHandle, timeoutMs = 1000, via?: KvTransportName): Promise<void> {
    return sendNack(handle, this.env.requestPlane, timeoutMs, via);
  }

  stats(): KvPullerStats {
    return {
      active: this.slots.inUse,
      queued: this.slots.waiting,
      peakActive: this.slots.peakInUse,
      pooledConnections: this.pool.size,
      completed: this.completed,
      failed: this.failed,
      transports: this.counters.snapshot(),
    };
  }

  /** Closes pooled connections; pulls in progress fail with a typed error. */
  close(): void {
    this.closed = true;
    this.pool.close();
    this.env.segments.close();
  }
}

/**
 * Releases an offer nobody will pull, for a party that holds no puller (the api's router, when no decode worker took
 * a prefill result): the handle stays opaque to it. A NACK over the offer's control path (the offering server's
 * TCP listener, else the request plane), bounded by `timeoutMs` (default 1000); never throws for an unreachable
 * peer, since the offer expires anyway. Throws KvInvalidHandleError for something that is not a handle.
 */
export async function declineKvOffer(kvHandle: unknown, options: { requestPlane?: RequestPlane; timeoutMs?: number } = {}): Promise<void> {
  await sendNack(parseKvHandle(kvHandle as KvHandle | string), options.requestPlane, options.timeoutMs ?? 1000);
}

/**
 * The handle's control paths this side can use, best first (the offering server's TCP listener, then the request
 * plane when there is one), with that of `via` (the transport that held the transfer) ahead of them.
 */
function controlPaths(handle: KvHandle, plane: RequestPlane | undefined, via?: KvTransportName): ControlSender[] {
  const rank = (e: KvEndpoint) => (e.transport === via ? -1 : TRANSPORT_PREFERENCE.indexOf(e.transport));
  return [...handle.endpoints].sort((a, b) => rank(a) - rank(b)).flatMap((e) => transportOf(e).control?.(e, plane) ?? []);
}

async function sendNack(handle: KvHandle, plane: RequestPlane | undefined, timeoutMs: number, via?: KvTransportName): Promise<void> {
  try {
    await controlPaths(handle, plane, via)[0]?.(handle, "nack", timeoutMs);
  } catch {
    /* unreachable: the offering side expires the offer */
  }
}

/** A transport's own failure as a typed error (already typed ones are kept). */
function asTransportError(reason: unknown, what: string): KvTransferError {
  if (reason instanceof KvTransferError) return reason;
  return new KvTransportError(`${what}: ${(reason as Error)?.message ?? String(reason)}`, { cause: reason });
}
