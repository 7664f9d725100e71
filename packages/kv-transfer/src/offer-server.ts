import { createServer, type Server, type Socket } from "node:net";
import { closeSync, writevSync } from "node:fs";
import { hostname } from "node:os";
import type { RequestPlane } from "@trtd/request-plane";
import { CHECKSUM_ALGORITHM } from "./checksum.js";
import { KvClosedError, KvErrorCodes, KvProtocolError, KvTimeoutError, KvTransferError, KvUnauthorizedError, type KvErrorCode } from "./errors.js";
import { FrameReader, parseJson } from "./frame-reader.js";
import type { KvEndpoint, KvHandle } from "./handle.js";
import type { KvLayout } from "@trtd/model";
import { Semaphore, transferTimeoutMs, type TransferTimeoutOptions } from "./limits.js";
import { NatsOfferResponder, DEFAULT_NATS_MAX_BYTES, kvNatsSubjects } from "./nats-transport.js";
import { beginDigest, OfferRegistry, type HostStaging, type Offer, type OfferRegistryStats, type OfferReleaseReason } from "./offer-registry.js";
import type { KvSource } from "./segments.js";
import { mapFile, type Mapping } from "./native.js";
import { StagingSegmentPool, type StagingPoolStats } from "./shm-staging.js";
import { createRing, DEFAULT_SHM_DIR, localHostId, shmAvailable, sweepStaleRings, unlinkQuiet } from "./shm.js";
import { TransportCounters, type KvTransportStatsByName } from "./transport-stats.js";
import { controlFrame, encodeHeader, FrameType, type ErrorBody, type FrameHeader, type PullBegin, type PullRequest, type ReleaseBody } from "./wire.js";

export interface KvOfferServerOptions {
  /** Layout of this side's KV (e.g. `layoutFromExecutor(ex.kvLayout())`). */
  layout: KvLayout;
  /** Address to listen on. @default "127.0.0.1" */
  host?: string;
  /** Port; 0 lets the OS choose. @default 0 */
  port?: number;
  /** Address put in handles (another host must reach it). @default host, or os.hostname() for a wildcard host */
  advertiseHost?: string;
  /**
   * Transports to offer. "cuda-ipc" is offered only for sources with a device descriptor (and is served over
   * this server's TCP listener). @default ["cuda-ipc", "shm", "tcp"] plus "nats" when `nats` is given
   */
  transports?: Array<"cuda-ipc" | "tcp" | "shm" | "nats">;
  /**
   * The "nats" transport, the small-KV fallback, served on the request plane (NATS, or in-process in single-process
   * mode). `subject` @default kvNatsSubjects.offerServer(instance); `maxBytes` @default DEFAULT_NATS_MAX_BYTES
   */
  nats?: { requestPlane: RequestPlane; subject?: string; maxBytes?: number };
  /** Offer lifetime before it is released unpulled. @default 30000 */
  ttlMs?: number;
  /** Checksum/framing chunk size. @default 524288 (fits a default 1 MiB NATS payload with its header) */
  chunkBytes?: number;
  /** Transfers sending at once; more pulls wait (bounded by their deadline). @default 16 */
  maxConcurrentTransfers?: number;
  /** Size-scaled transfer deadline, wait for the ack, and longest silence from a puller. */
  timeouts?: TransferTimeoutOptions & { ackMs?: number; idleMs?: number };
  /**
   * Shared memory. `staging` (single copy): an eager offer's KV is copied into a pooled memfd segment at offer time,
   * fused with its chunk CRCs, and a same-host puller copies from there straight into its import; at most
   * `stagingIdleBytes` of segments are kept for reuse between offers. Without it (or for a lazy offer, whose KV is
   * staged on pull), shm goes through a ring of `slots` chunks in `dir` (two copies, pipelined).
   * @default { dir: "/dev/shm", slots: 8, staging: true, stagingIdleBytes: 2 GiB }
   */
  shm?: { dir?: string; slots?: number; staging?: boolean; stagingIdleBytes?: number };
  /**
   * With single-copy staging: an offer without a device path takes its segment in offer() but is copied into it (with
   * its chunk CRCs) in the next turn of the event loop, so that offer() returns before the copy, e.g. for a prefill
   * worker whose answer then leaves first. Its handle (v2) carries no digest: BEGIN has it, and a segment puller reads
   * it in the segment's header. A puller that comes before the copy pulls over its connection instead.
   * @default false
   */
  deferStaging?: boolean;
}

export interface OfferOptions {
  /** @default the server's ttlMs */
  ttlMs?: number;
}

export interface KvOfferServerStats extends OfferRegistryStats {
  transfersActive: number;
  transfersQueued: number;
  /** Most transfers sending at once / waiting at once since start. */
  transfersPeak: number;
  transfersQueuedPeak: number;
  connections: number;
  /** Per transport: transfers acked / failed / fallen back from, their bytes and seconds (cuda-ipc: lease to ack). */
  transports: KvTransportStatsByName;
  /** The single-copy shm staging segments (null when staging is off). */
  shmStaging: StagingPoolStats | null;
}

interface ServerTransfer {
  offer: Offer;
  /** "cuda-ipc": a lease (nothing is sent; the puller copies device to device, then acks or falls back). */
  mode: "tcp" | "shm" | "cuda-ipc";
  started: number;
  stage: "queued" | "sending" | "await-ack";
  timer: NodeJS.Timeout | null;
  releaseSlot: (() => void) | null;
  aborted: boolean;
  /** wakes the send loop (slot freed, ring opened, abort) */
  wake: (() => void) | null;
  shm: { ring: ServerRing; free: number[] } | null;
}

/** A shared-memory ring of one connection, kept across its pulls (creation, mapping and page faults paid once). */
interface ServerRing {
  path: string;
  fd: number;
  map: Mapping | null;
  slotBytes: number;
  opened: boolean;
  unlinked: boolean;
}

interface ServerConn {
  sock: Socket;
  transfer: ServerTransfer | null;
  ring: ServerRing | null;
}

/**
 * The offering (prefill) side: holds offers in a registry and serves pulls over TCP, same-host shared memory
 * (controlled over the same TCP connection), device-to-device leases (cuda-ipc, same connection) and, for small
 * KV, NATS.
 */
export class KvOfferServer {
  readonly layout: KvLayout;
  readonly registry: OfferRegistry;
  readonly hostId = localHostId();
  private readonly server: Server;
  private readonly conns = new Set<ServerConn>();
  private readonly slots: Semaphore;
  private readonly o: Required<Pick<KvOfferServerOptions, "ttlMs" | "chunkBytes" | "deferStaging">> & { ackMs: number; idleMs: number; timeouts: TransferTimeoutOptions };
  private readonly transports: Set<string>;
  private readonly shmDir: string;
  private readonly shmSlots: number;
  private readonly staging: StagingSegmentPool | null;
  private nats: NatsOfferResponder | null = null;
  private readonly counters = new TransportCounters();
  private advertise = "";
  private boundPort = 0;
  private closed = false;

  private constructor(opts: KvOfferServerOptions) {
    this.layout = opts.layout;
    this.slots = new Semaphore(opts.maxConcurrentTransfers ?? 16);
    const chunkBytes = opts.chunkBytes ?? 512 * 1024;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 4096 || chunkBytes > 64 * 1024 * 1024) {
      throw new RangeError(`chunkBytes must be an integer in [4096, 64 MiB] (got ${chunkBytes})`);
    }
    this.o = {
      ttlMs: opts.ttlMs ?? 30_000,
      chunkBytes,
      ackMs: opts.timeouts?.ackMs ?? 10_000,
      idleMs: opts.timeouts?.idleMs ?? 15_000,
      timeouts: opts.timeouts ?? {},
      deferStaging: opts.deferStaging ?? false,
    };
    this.shmDir = opts.shm?.dir ?? DEFAULT_SHM_DIR;
    this.shmSlots = opts.shm?.slots ?? 8;
    const wanted = opts.transports ?? ["cuda-ipc", "shm", "tcp", ...(opts.nats ? (["nats"] as const) : [])];
    this.transports = new Set(wanted.filter((t) => t !== "shm" || shmAvailable(this.shmDir)));
    if (this.transports.has("nats") && !opts.nats) throw new RangeError('transport "nats" needs options.nats.requestPlane');
    const idleBytes = opts.shm?.stagingIdleBytes ?? 2 * 1024 * 1024 * 1024;
    if (!Number.isSafeInteger(idleBytes) || idleBytes < 0) throw new RangeError(`shm.stagingIdleBytes must be a non-negative integer (got ${idleBytes})`);
    this.staging = this.transports.has("shm") && opts.shm?.staging !== false ? new StagingSegmentPool(idleBytes) : null;
    this.registry = new OfferRegistry(
      this.staging
        ? { sharedStaging: this.staging, segmentClaimMs: (bytes) => transferTimeoutMs(bytes, this.o.timeouts) + this.o.ackMs }
        : {},
    );
    this.server = createServer((sock) => this.onConnection(sock));
  }

  /** Starts listening (and the NATS responder when configured). */
  static async start(opts: KvOfferServerOptions): Promise<KvOfferServer> {
    const s = new KvOfferServer(opts);
    const host = opts.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      s.server.once("error", reject);
      s.server.listen(opts.port ?? 0, host, () => {
        s.server.off("error", reject);
        resolve();
      });
    });
    const addr = s.server.address();
    s.boundPort = typeof addr === "object" && addr ? addr.port : 0;
    const wildcard = host === "0.0.0.0" || host === "::";
    s.advertise = opts.advertiseHost ?? (wildcard ? hostname() : host);
    if (s.transports.has("shm")) sweepStaleRings(s.shmDir);
    if (s.transports.has("nats") && opts.nats) {
      s.nats = new NatsOfferResponder({
        plane: opts.nats.requestPlane,
        subject: opts.nats.subject ?? kvNatsSubjects.offerServer(s.registry.instanceId),
        maxBytes: opts.nats.maxBytes ?? DEFAULT_NATS_MAX_BYTES,
        registry: s.registry,
        chunkBytes: s.o.chunkBytes,
        timeouts: s.o.timeouts,
        idleMs: s.o.idleMs,
        counters: s.counters,
      });
      await s.nats.start();
    }
    return s;
  }

  /** Where the server listens (the advertised host and the bound port). */
  get address(): { host: string; port: number } {
    return { host: this.advertise, port: this.boundPort };
  }

  /**
   * Offers a request's KV. The server owns `source` from now on: it calls `source.release()` exactly once, on the
   * puller's ack, a failed transfer, expiry or close(). Returns the handle to send to the puller.
   * A source with a device path (cuda-ipc served here) is not staged now: its segments and chunk CRCs are taken when
   * a host transfer starts, and its handle (v2) carries no digest (BEGIN does). Any other source is staged now (v1).
   */
  offer(source: KvSource, opts: OfferOptions = {}): KvHandle {
    if (this.closed) {
      source.release();
      throw new KvClosedError("KvOfferServer is closed");
    }
    const ttl = opts.ttlMs ?? this.o.ttlMs;
    const offer = this.registry.add(source, this.layout, ttl, this.o.chunkBytes, { lazy: this.transports.has("cuda-ipc"), deferShared: this.o.deferStaging });
    const endpoints: KvEndpoint[] = [];
    if (offer.device && this.transports.has("cuda-ipc")) {
      endpoints.push({
        transport: "cuda-ipc",
        hostId: this.hostId,
        deviceUuid: offer.device.uuid,
        descriptor: Buffer.from(offer.device.descriptor).toString("base64"),
        host: this.advertise,
        port: this.boundPort,
      });
    }
    if (offer.engineState) endpoints.push({ transport: "engine", state: Buffer.from(offer.engineState).toString("base64") });
    if (this.transports.has("shm")) {
      const seg = offer.host?.shared ?? offer.pendingShared;
      endpoints.push({
        transport: "shm",
        hostId: this.hostId,
        host: this.advertise,
        port: this.boundPort,
        ...(seg ? { segment: { pid: process.pid, fd: seg.fd, ino: seg.ino, capacity: seg.capacity } } : {}),
      });
    }
    if (this.transports.has("tcp")) endpoints.push({ transport: "tcp", host: this.advertise, port: this.boundPort });
    if (this.nats) endpoints.push({ transport: "nats", subject: this.nats.subject, maxBytes: this.nats.maxBytes });
    const checksum: KvHandle["checksum"] = { algorithm: CHECKSUM_ALGORITHM, chunkBytes: offer.chunkBytes, chunks: offer.chunks };
    if (offer.advertisedDigest !== undefined) checksum.digest = offer.advertisedDigest;
    return {
      v: offer.lazy ? 2 : 1, // v2: no digest in the handle, BEGIN carries it (the KV is staged when a host transfer starts)
      id: offer.id,
      secret: offer.secret.toString("hex"),
      layout: this.layout,
      numTokens: offer.numTokens,
      bytes: offer.bytes,
      checksum,
      endpoints,
      expiresAt: offer.expiresAt,
    };
  }

  /** Releases an offer nobody will pull. */
  withdraw(offerId: string): boolean {
    return this.registry.release(offerId, "withdrawn");
  }

  stats(): KvOfferServerStats {
    return { ...this.registry.stats(), transfersActive: this.slots.inUse, transfersQueued: this.slots.waiting, transfersPeak: this.slots.peakInUse, transfersQueuedPeak: this.slots.peakWaiting, connections: this.conns.size, transports: this.counters.snapshot(), shmStaging: this.staging?.stats() ?? null };
  }

  /** Stops serving, ends transfers in progress (their pullers get an error) and releases every offer. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of [...this.conns]) c.sock.destroy();
    await this.nats?.close();
    this.registry.close();
    this.staging?.close(); // after the offers gave their segments back
    await done;
  }

  // ---- connections ----

  private onConnection(sock: Socket): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    sock.setNoDelay(true);
    const conn: ServerConn = { sock, transfer: null, ring: null };
    this.conns.add(conn);
    const reader = new FrameReader();
    sock.on("data", (d: Buffer) => {
      try {
        reader.push(d, (h, p) => this.onFrame(conn, h, p));
      } catch (err) {
        this.fail(conn, err);
      }
    });
    sock.on("error", () => {
      /* 'close' follows and does the cleanup */
    });
    sock.on("close", () => {
      this.conns.delete(conn);
      if (conn.transfer) this.endTransfer(conn, "failed");
      if (conn.ring) closeRing(conn.ring);
      conn.ring = null;
    });
  }

  private fail(conn: ServerConn, err: unknown): void {
    const e = err instanceof KvTransferError ? err : new KvProtocolError(String(err), { cause: err });
    if (!conn.sock.destroyed && conn.sock.writable) {
      for (const b of controlFrame(FrameType.Error, { code: e.code, message: e.message } satisfies ErrorBody)) conn.sock.write(b);
      conn.sock.end();
      setTimeout(() => conn.sock.destroy(), 1000).unref();
    }
    if (conn.transfer) this.endTransfer(conn, "failed", conn.transfer.stage === "sending");
  }

  private sendError(conn: ServerConn, code: KvErrorCode, message: string): void {
    for (const b of controlFrame(FrameType.Error, { code, message } satisfies ErrorBody)) conn.sock.write(b);
  }

  private onFrame(conn: ServerConn, h: FrameHeader, payload: Buffer): void {
    const t = conn.transfer;
    switch (h.type) {
      case FrameType.Pull: {
        const req = parseJson<PullRequest>(payload, "PULL");
        if (t) {
          // A puller whose device import failed goes on with the same offer over this connection: its lease holds the claim.
          if (t.mode === "cuda-ipc" && t.offer.id === req.offerId && req.transport !== "cuda-ipc") return this.continueLease(conn, t, req);
          throw new KvProtocolError("PULL while a transfer is in progress on this connection");
        }
        this.onPull(conn, req);
        return;
      }
      case FrameType.Ack:
      case FrameType.Nack: {
        const reason: OfferReleaseReason = h.type === FrameType.Ack ? "ack" : "failed";
        const id = h.offerId.toString("hex");
        if (t && t.offer.id === id) {
          if (h.type === FrameType.Ack && t.stage !== "await-ack") throw new KvProtocolError("ACK before END");
          this.endTransfer(conn, reason);
        } else {
          // An ack outside a transfer: the engine transport (the engine moved the bytes) or a puller that
          // failed before pulling. Only an unclaimed offer can be released this way, by the handle's holder.
          // A single-copy shm puller (it claimed the offer in the staging segment) acks and nacks this way too.
          const o = this.registry.get(id);
          if (!o) return;
          let body: Partial<ReleaseBody> | null | undefined;
          try {
            body = payload.length > 0 ? parseJson<Partial<ReleaseBody> | null>(payload, h.type === FrameType.Ack ? "ACK" : "NACK") : undefined;
            this.registry.authorize(o, body?.secret);
          } catch (err) {
            if (!(err instanceof KvUnauthorizedError)) throw err;
            return this.sendError(conn, err.code, err.message);
          }
          const { ok, viaSegment } = this.registry.releasableOutsideTransfer(o);
          if (!ok || !this.registry.release(id, reason)) return;
          if (viaSegment && reason === "ack") this.counters.completed("shm", o.bytes, Number(body?.ms) || 0);
          else if (viaSegment) this.counters.failed("shm");
          else if (reason === "ack" && o.engineState) this.counters.completed("engine", o.bytes, 0);
        }
        return;
      }
      case FrameType.ShmOpened:
        if (!t?.shm) throw new KvProtocolError("SHM_OPENED without a shared-memory transfer");
        t.shm.ring.opened = true;
        unlinkQuiet(t.shm.ring.path); // both sides hold it open now: a killed process leaves no file behind
        t.shm.ring.unlinked = true;
        t.wake?.();
        return;
      case FrameType.ShmFree:
        if (!t?.shm || h.slot >= this.shmSlots || t.shm.free.includes(h.slot)) throw new KvProtocolError("bad SHM_FREE");
        t.shm.free.push(h.slot);
        t.wake?.();
        return;
      default:
        throw new KvProtocolError(`unexpected frame type ${h.type} from puller`);
    }
  }

  private onPull(conn: ServerConn, req: PullRequest): void {
    const offer = typeof req.offerId === "string" ? this.registry.get(req.offerId) : undefined;
    if (!offer || offer.claimed) {
      const e = this.registry.unavailable(String(req.offerId), req.secret); // a late pull: KV_LEASE_EXPIRED
      this.sendError(conn, e.code, e.message);
      return;
    }
    try {
      this.registry.authorize(offer, req.secret);
    } catch (err) {
      // not released: the holder of the handle may still pull it (else it expires as usual)
      if (err instanceof KvUnauthorizedError) return this.sendError(conn, err.code, err.message);
      throw err;
    }
    const refuse = (code: KvErrorCode, message: string) => {
      this.sendError(conn, code, message);
      this.registry.release(offer.id, "failed"); // offers are single-consumer: a refused pull ends it
    };
    if (req.fingerprint !== offer.layout.fingerprint) {
      return refuse(KvErrorCodes.LayoutMismatch, `puller layout ${String(req.fingerprint)} differs from offered ${offer.layout.fingerprint}`);
    }
    if (req.bytes !== offer.bytes || req.digest !== offer.advertisedDigest) {
      return refuse(KvErrorCodes.SizeMismatch, `puller expects ${req.bytes} bytes / digest ${req.digest}, offer has ${offer.bytes} / ${offer.advertisedDigest}`);
    }
    const unserved = this.unserved(offer, req);
    if (unserved) return refuse(KvErrorCodes.NoTransport, unserved);
    if (!this.registry.claim(offer.id)) {
      // a segment puller claimed it (single-copy shm): offers are single-consumer
      const e = this.registry.unavailable(offer.id, req.secret);
      return this.sendError(conn, e.code, e.message);
    }
    if (req.transport === "cuda-ipc") return this.grantLease(conn, offer);
    this.startTransfer(conn, offer, req.transport);
  }

  /** Why this server does not serve `req.transport` for `offer` to this puller; null when it does. */
  private unserved(offer: Offer, req: PullRequest): string | null {
    const tr = req.transport as string;
    if (tr !== "tcp" && tr !== "shm" && tr !== "cuda-ipc") return `transport ${tr} is not served over TCP`;
    if (!this.transports.has(tr) || (tr !== "tcp" && req.hostId !== this.hostId)) return `transport ${tr} not available to this puller`;
    if (tr === "cuda-ipc" && !offer.device) return "this offer has no device descriptor";
    return null;
  }

  /**
   * cuda-ipc: the offer is claimed for this connection (so neither expiry nor another puller can release the
   * export while the puller's executor copies from its device memory) and nothing is sent. It ends with the
   * puller's ACK (released), a PULL of "tcp"/"shm" for the same offer (the device import failed: fall back on
   * this connection), NACK or a closed connection (released as failed), or the deadline.
   */
  private grantLease(conn: ServerConn, offer: Offer): void {
    const t: ServerTransfer = { offer, mode: "cuda-ipc", started: Date.now(), stage: "await-ack", timer: null, releaseSlot: null, aborted: false, wake: null, shm: null };
    conn.transfer = t;
    const ms = transferTimeoutMs(offer.bytes, this.o.timeouts) + this.o.ackMs;
    t.timer = setTimeout(() => this.fail(conn, new KvTimeoutError("no ACK for the device transfer in time")), ms);
    t.timer.unref();
    const begin: PullBegin = { bytes: offer.bytes, chunkBytes: offer.chunkBytes, chunks: offer.chunks, lease: true };
    for (const b of controlFrame(FrameType.Begin, begin, offer.idBytes)) conn.sock.write(b);
  }

  /** The puller's device import failed: the leased offer is sent over tcp/shm on the same connection. */
  private continueLease(conn: ServerConn, t: ServerTransfer, req: PullRequest): void {
    const unserved = this.unserved(t.offer, req);
    if (unserved) {
      this.sendError(conn, KvErrorCodes.NoTransport, unserved);
      this.endTransfer(conn, "failed", false);
      return;
    }
    this.counters.fallback("cuda-ipc");
    if (t.timer) clearTimeout(t.timer);
    t.aborted = true;
    conn.transfer = null;
    this.startTransfer(conn, t.offer, req.transport as "tcp" | "shm");
  }

  private startTransfer(conn: ServerConn, offer: Offer, mode: "tcp" | "shm"): void {
    const t: ServerTransfer = { offer, mode, started: Date.now(), stage: "queued", timer: null, releaseSlot: null, aborted: false, wake: null, shm: null };
    conn.transfer = t;
    const deadline = Date.now() + transferTimeoutMs(offer.bytes, this.o.timeouts);
    t.timer = setTimeout(() => this.fail(conn, new KvTimeoutError("transfer deadline passed on the offering side")), deadline - Date.now());
    t.timer.unref();
    this.slots
      .acquire(deadline)
      .then((release) => {
        t.releaseSlot = release;
        if (t.aborted) return release();
        // A lazy offer's KV is staged here, by the transfer that claimed it (within its slot and deadline). A
        // staging failure ends this transfer like any other failure: ERROR to the puller, the offer released.
        const host = this.registry.stage(offer);
        t.stage = "sending";
        return mode === "shm" ? this.sendShm(conn, t, host) : this.sendTcp(conn, t, host);
      })
      .catch((err) => {
        if (!t.aborted) this.fail(conn, err);
      });
  }

  private async sendTcp(conn: ServerConn, t: ServerTransfer, host: HostStaging): Promise<void> {
    const { sock } = conn;
    const { offer } = t;
    const begin: PullBegin = { bytes: offer.bytes, chunkBytes: offer.chunkBytes, chunks: offer.chunks, ...beginDigest(offer, host) };
    for (const b of controlFrame(FrameType.Begin, begin, offer.idBytes)) sock.write(b);
    for (let seq = 0; seq < offer.chunks; seq++) {
      if (t.aborted) return;
      const offset = seq * offer.chunkBytes;
      const length = Math.min(offer.chunkBytes, offer.bytes - offset);
      // Zero-copy: the exported views go to the socket as they are (writev under cork).
      sock.cork();
      sock.write(encodeHeader({ type: FrameType.Data, offerId: offer.idBytes, seq, crc: host.crcs[seq]!, offset, length }));
      let ok = true;
      for (const s of host.map.slices(offset, length)) ok = sock.write(s);
      sock.uncork();
      if (!ok) await drained(sock, t);
    }
    this.finishSending(conn, t);
  }

  private async sendShm(conn: ServerConn, t: ServerTransfer, host: HostStaging): Promise<void> {
    const { sock } = conn;
    const { offer } = t;
    let ring = conn.ring;
    const reuse = ring !== null && ring.slotBytes === offer.chunkBytes && ring.opened;
    if (!reuse) {
      if (ring) closeRing(ring);
      const created = createRing(this.shmDir, this.shmSlots, offer.chunkBytes);
      let map: Mapping | null = null;
      try {
        map = mapFile(created.fd, this.shmSlots * offer.chunkBytes, true); // null: no mmap here, pwritev instead
      } catch {
        map = null;
      }
      ring = { ...created, map, slotBytes: offer.chunkBytes, opened: false, unlinked: false };
      conn.ring = ring;
    }
    t.shm = { ring: ring!, free: Array.from({ length: this.shmSlots }, (_, i) => i) };
    const shm = t.shm;
    const begin: PullBegin = {
      bytes: offer.bytes,
      chunkBytes: offer.chunkBytes,
      chunks: offer.chunks,
      ...beginDigest(offer, host),
      slots: this.shmSlots,
      ...(reuse ? { reuseRing: true } : { shmPath: ring!.path }),
    };
    for (const b of controlFrame(FrameType.Begin, begin, offer.idBytes)) sock.write(b);
    while (!shm.ring.opened) {
      await new Promise<void>((r) => (t.wake = r));
      if (t.aborted) return;
    }
    for (let seq = 0; seq < offer.chunks; seq++) {
      while (shm.free.length === 0) {
        await new Promise<void>((r) => (t.wake = r));
        if (t.aborted) return;
      }
      if (t.aborted) return;
      const slot = shm.free.shift()!;
      const offset = seq * offer.chunkBytes;
      const length = Math.min(offer.chunkBytes, offer.bytes - offset);
      let pos = slot * offer.chunkBytes;
      for (const s of host.map.slices(offset, length)) {
        if (shm.ring.map) {
          shm.ring.map.bytes.set(s, pos);
          pos += s.byteLength;
          continue;
        }
        let done = 0;
        while (done < s.byteLength) done += writevSync(shm.ring.fd, [s.subarray(done)], pos + done);
        pos += s.byteLength;
      }
      sock.write(encodeHeader({ type: FrameType.ShmChunk, offerId: offer.idBytes, seq, crc: host.crcs[seq]!, offset, length, slot }));
    }
    this.finishSending(conn, t);
  }

  private finishSending(conn: ServerConn, t: ServerTransfer): void {
    for (const b of controlFrame(FrameType.End, undefined, t.offer.idBytes)) conn.sock.write(b);
    t.stage = "await-ack";
    t.releaseSlot?.();
    t.releaseSlot = null;
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(() => this.fail(conn, new KvTimeoutError("no ACK from the puller in time")), this.o.ackMs);
    t.timer.unref();
  }

  /** Ends a transfer: the offer goes back through the registry's one release path. */
  private endTransfer(conn: ServerConn, reason: OfferReleaseReason, destroy = reason !== "ack"): void {
    const t = conn.transfer;
    if (!t) return;
    conn.transfer = null;
    t.aborted = true;
    if (t.timer) clearTimeout(t.timer);
    t.releaseSlot?.();
    t.wake?.();
    if (t.shm && reason !== "ack" && conn.ring) {
      closeRing(conn.ring); // a failed transfer's ring is not reused
      conn.ring = null;
    }
    if (destroy && !conn.sock.destroyed) conn.sock.destroy(); // stops pending writes before the views go
    if (this.registry.release(t.offer.id, reason)) {
      if (reason === "ack") this.counters.completed(t.mode, t.offer.bytes, Date.now() - t.started);
      else this.counters.failed(t.mode);
    }
  }
}

function closeRing(ring: ServerRing): void {
  if (!ring.unlinked) unlinkQuiet(ring.path);
  ring.unlinked = true;
  ring.map?.unmap();
  ring.map = null;
  try {
    closeSync(ring.fd);
  } catch {
    /* already closed */
  }
}

/** Waits for 'drain' (or for the transfer to end). */
function drained(sock: Socket, t: ServerTransfer): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sock.off("drain", done);
      sock.off("close", done);
      t.wake = null;
      resolve();
    };
    sock.on("drain", done);
    sock.on("close", done);
    t.wake = done;
  });
}
