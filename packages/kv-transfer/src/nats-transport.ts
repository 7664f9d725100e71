import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { crcOfSlices, digestOfChunks } from "./checksum.js";
import {
  errorFromCode,
  KvAbortedError,
  KvChecksumError,
  KvErrorCodes,
  KvPeerLostError,
  KvProtocolError,
  KvTimeoutError,
  KvTransferError,
  KvTransportError,
  KvUnauthorizedError,
  type KvErrorCode,
} from "./errors.js";
import type { KvHandle, NatsEndpoint } from "./handle.js";
import { transferTimeoutMs, type TransferTimeoutOptions } from "./limits.js";
import { beginDigest, type HostStaging, type Offer, type OfferRegistry } from "./offer-registry.js";
import type { SegmentMap } from "./segments.js";
import type { TransportCounters } from "./transport-stats.js";
import { decodeHeader, encodeHeader, FrameType, HEADER_BYTES, type ErrorBody, type PullBegin, expectedDigest } from "./wire.js";

/**
 * NATS fallback: request/reply per chunk on the offering side's subject. For small KV only (every byte is
 * copied into a NATS message and crosses the NATS server twice); larger KV is refused with
 * KvPayloadTooLargeError, never left to time out.
 */
export const DEFAULT_NATS_MAX_BYTES = 8 * 1024 * 1024;

/**
 * NATS subjects of the KV fallback: one per offer server, `trtd.kv.<instance>`; `all` matches every one (for NATS
 * account permissions: offering sides subscribe there, pulling sides publish requests there).
 */
export const kvNatsSubjects = {
  offerServer: (instanceId: string) => `trtd.kv.${instanceId}`,
  all: "trtd.kv.*",
} as const;

interface NatsRequest {
  op: "begin" | "chunk" | "ack" | "nack";
  offerId: string;
  /** The handle's offer secret, on every request: NATS request/reply has no connection to authenticate once. */
  secret?: string;
  seq?: number;
  fingerprint?: string;
  bytes?: number;
  digest?: string;
}

interface ActiveNatsTransfer {
  offer: Offer;
  host: HostStaging;
  started: number;
  deadline: NodeJS.Timeout;
  idle: NodeJS.Timeout;
}

const enc = new TextEncoder();

function errorReply(code: KvErrorCode, message: string): Uint8Array {
  const body = Buffer.from(JSON.stringify({ code, message } satisfies ErrorBody));
  return Buffer.concat([encodeHeader({ type: FrameType.Error, length: body.length }), body]);
}

/** The offering side's NATS responder (started by KvOfferServer when NATS is configured). */
export class NatsOfferResponder {
  readonly subject: string;
  readonly maxBytes: number;
  private readonly nc: NatsConnection;
  private readonly registry: OfferRegistry;
  private readonly timeouts: TransferTimeoutOptions;
  private readonly idleMs: number;
  private readonly chunkBytes: number;
  private readonly counters: TransportCounters | undefined;
  private sub: Subscription | null = null;
  private readonly active = new Map<string, ActiveNatsTransfer>();

  constructor(o: {
    connection: NatsConnection;
    subject: string;
    maxBytes: number;
    registry: OfferRegistry;
    chunkBytes: number;
    timeouts: TransferTimeoutOptions;
    idleMs: number;
    counters?: TransportCounters;
  }) {
    this.nc = o.connection;
    this.subject = o.subject;
    this.maxBytes = o.maxBytes;
    this.registry = o.registry;
    this.chunkBytes = o.chunkBytes;
    this.timeouts = o.timeouts;
    this.idleMs = o.idleMs;
    this.counters = o.counters;
  }

  async start(): Promise<void> {
    const max = this.nc.info?.max_payload;
    if (max !== undefined && this.chunkBytes + HEADER_BYTES > max) {
      throw new RangeError(`chunkBytes ${this.chunkBytes} + ${HEADER_BYTES} exceeds the NATS server's max_payload ${max}`);
    }
    this.sub = this.nc.subscribe(this.subject, { callback: (err, msg) => (err ? undefined : this.onMsg(msg)) });
    await this.nc.flush();
  }

  async close(): Promise<void> {
    for (const id of [...this.active.keys()]) this.end(id, "failed");
    this.sub?.unsubscribe();
    this.sub = null;
  }

  private end(id: string, reason: "ack" | "failed"): void {
    const a = this.active.get(id);
    if (a) {
      clearTimeout(a.deadline);
      clearTimeout(a.idle);
      this.active.delete(id);
    }
    if (this.registry.release(id, reason) && a) {
      if (reason === "ack") this.counters?.completed("nats", a.offer.bytes, Date.now() - a.started);
      else this.counters?.failed("nats");
    }
  }

  /** Whether `req` carries `offer`'s secret; answers a refusal (counted by the registry) when not. */
  private authorized(offer: Offer, req: NatsRequest, msg: Msg): boolean {
    try {
      this.registry.authorize(offer, req.secret);
      return true;
    } catch (err) {
      if (!(err instanceof KvUnauthorizedError)) throw err;
      msg.respond(errorReply(err.code, err.message));
      return false;
    }
  }

  private onMsg(msg: Msg): void {
    let req: NatsRequest;
    try {
      req = JSON.parse(new TextDecoder().decode(msg.data)) as NatsRequest;
    } catch {
      msg.respond(errorReply(KvErrorCodes.Protocol, "request is not JSON"));
      return;
    }
    const id = String(req.offerId);
    if (req.op === "begin") {
      const offer = this.registry.get(id);
      if (!offer || offer.claimed) {
        const e = this.registry.unavailable(id, req.secret); // a late pull: KV_LEASE_EXPIRED
        msg.respond(errorReply(e.code, e.message));
        return;
      }
      if (!this.authorized(offer, req, msg)) return; // refused, not released: the handle's holder may still pull it
      let refusal: [KvErrorCode, string] | null = null;
      if (offer.bytes > this.maxBytes) refusal = [KvErrorCodes.PayloadTooLarge, `KV of ${offer.bytes} bytes exceeds the NATS transport limit of ${this.maxBytes}`];
      else if (req.fingerprint !== offer.layout.fingerprint) refusal = [KvErrorCodes.LayoutMismatch, `puller layout ${String(req.fingerprint)} differs from offered ${offer.layout.fingerprint}`];
      else if (req.bytes !== offer.bytes || req.digest !== offer.advertisedDigest) refusal = [KvErrorCodes.SizeMismatch, "size or digest differs from the offer"];
      if (refusal) {
        msg.respond(errorReply(...refusal));
        this.registry.release(id, "failed"); // single-consumer: a refused pull ends the offer
        return;
      }
      this.registry.claim(id);
      let host: HostStaging;
      try {
        host = this.registry.stage(offer); // a lazy offer's KV is staged by the transfer that claimed it
      } catch (err) {
        const e = err instanceof KvTransferError ? err : new KvTransportError(String(err), { cause: err });
        msg.respond(errorReply(e.code, e.message));
        if (this.registry.release(id, "failed")) this.counters?.failed("nats");
        return;
      }
      const a: ActiveNatsTransfer = {
        offer,
        host,
        started: Date.now(),
        deadline: setTimeout(() => this.end(id, "failed"), transferTimeoutMs(offer.bytes, this.timeouts)),
        idle: setTimeout(() => this.end(id, "failed"), this.idleMs),
      };
      a.deadline.unref();
      a.idle.unref();
      this.active.set(id, a);
      const begin: PullBegin = { bytes: offer.bytes, chunkBytes: offer.chunkBytes, chunks: offer.chunks, ...beginDigest(offer, host) };
      const body = Buffer.from(JSON.stringify(begin));
      msg.respond(Buffer.concat([encodeHeader({ type: FrameType.Begin, offerId: offer.idBytes, length: body.length }), body]));
      return;
    }
    const a = this.active.get(id);
    if (!a) {
      // ack/nack outside a transfer: the engine transport, or a puller that gave up before pulling
      const o = this.registry.get(id);
      if ((req.op === "ack" || req.op === "nack") && o && !o.claimed) {
        if (!this.authorized(o, req, msg)) return;
        this.registry.release(id, req.op === "ack" ? "ack" : "failed");
        msg.respond(encodeHeader({ type: FrameType.End }));
        return;
      }
      msg.respond(errorReply(KvErrorCodes.OfferNotFound, `no NATS transfer of offer ${id} in progress`));
      return;
    }
    if (!this.authorized(a.offer, req, msg)) return;
    a.idle.refresh();
    if (req.op === "ack" || req.op === "nack") {
      this.end(id, req.op === "ack" ? "ack" : "failed");
      msg.respond(encodeHeader({ type: FrameType.End }));
      return;
    }
    const seq = req.seq ?? -1;
    const { offer, host } = a;
    if (req.op !== "chunk" || !Number.isSafeInteger(seq) || seq < 0 || seq >= offer.chunks) {
      msg.respond(errorReply(KvErrorCodes.Protocol, `bad request op ${String(req.op)} seq ${String(seq)}`));
      return;
    }
    const offset = seq * offer.chunkBytes;
    const length = Math.min(offer.chunkBytes, offer.bytes - offset);
    const out = Buffer.allocUnsafe(HEADER_BYTES + length); // the staging copy NATS needs
    encodeHeader({ type: FrameType.Data, offerId: offer.idBytes, seq, crc: host.crcs[seq]!, offset, length }, out);
    let pos = HEADER_BYTES;
    for (const s of host.map.slices(offset, length)) {
      out.set(s, pos);
      pos += s.byteLength;
    }
    msg.respond(out);
  }
}

function natsFailure(err: unknown, what: string): KvTransferError {
  if (err instanceof KvTransferError) return err;
  const e = err as { name?: string; message?: string; cause?: { name?: string }; isNoResponders?: () => boolean };
  if (e?.name === "TimeoutError" || e?.cause?.name === "TimeoutError") return new KvTimeoutError(`${what}: NATS request timed out`, { cause: err });
  if (e?.isNoResponders?.() || e?.name === "NoRespondersError" || e?.cause?.name === "NoRespondersError") {
    return new KvPeerLostError(`${what}: no responder on NATS (offering side gone)`, { cause: err });
  }
  return new KvTransportError(`${what}: ${e?.message ?? String(err)}`, { cause: err });
}

function parseReply(m: Msg, what: string): { type: number; header: ReturnType<typeof decodeHeader>; payload: Uint8Array } {
  if (m.data.byteLength < HEADER_BYTES) throw new KvProtocolError(`${what}: short NATS reply`);
  const header = decodeHeader(m.data);
  const payload = m.data.subarray(HEADER_BYTES, HEADER_BYTES + header.length);
  if (header.type === FrameType.Error) {
    const body = JSON.parse(new TextDecoder().decode(payload)) as ErrorBody;
    throw errorFromCode(body.code, body.message);
  }
  return { type: header.type, header, payload };
}

/** Pulls over NATS into the sink map; sends the ack after verifying. */
export async function natsPull(
  nc: NatsConnection,
  ep: NatsEndpoint,
  handle: KvHandle,
  sink: SegmentMap,
  o: { deadline: number; signal?: AbortSignal; requestTimeoutMs: number; window?: number },
): Promise<void> {
  const remaining = () => Math.max(1, Math.min(o.requestTimeoutMs, o.deadline - Date.now()));
  const ask = async (r: NatsRequest) => {
    if (o.signal?.aborted) throw new KvAbortedError("pull aborted", { cause: o.signal.reason });
    if (Date.now() >= o.deadline) throw new KvTimeoutError("pull deadline passed");
    try {
      return await nc.request(ep.subject, enc.encode(JSON.stringify(r)), { timeout: remaining() });
    } catch (err) {
      throw natsFailure(err, `NATS ${r.op}`);
    }
  };
  const begin = parseReply(
    await ask({ op: "begin", offerId: handle.id, secret: handle.secret, fingerprint: handle.layout.fingerprint, bytes: handle.bytes, digest: handle.checksum.digest }),
    "begin",
  );
  if (begin.type !== FrameType.Begin) throw new KvProtocolError("expected BEGIN");
  let beginBody: PullBegin;
  try {
    beginBody = JSON.parse(new TextDecoder().decode(begin.payload)) as PullBegin;
  } catch (err) {
    throw new KvProtocolError("BEGIN payload is not JSON", { cause: err });
  }
  const digest = expectedDigest(handle, beginBody);
  const n = handle.checksum.chunks;
  const cb = handle.checksum.chunkBytes;
  const crcs = new Uint32Array(n);
  let next = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (next < n && failure === null) {
      const seq = next++;
      const reply = await ask({ op: "chunk", offerId: handle.id, secret: handle.secret, seq });
      if (failure !== null) return; // another worker failed: the sink may be gone, write nothing more
      const { header, payload, type } = parseReply(reply, "chunk");
      const offset = seq * cb;
      const length = Math.min(cb, handle.bytes - offset);
      if (type !== FrameType.Data || header.seq !== seq || header.offset !== offset || payload.byteLength !== length) {
        throw new KvProtocolError(`chunk ${seq}: unexpected frame`);
      }
      if (crcOfSlices([payload]) !== header.crc) throw new KvChecksumError(`chunk ${seq} failed its checksum`, seq);
      crcs[seq] = header.crc;
      let pos = 0;
      for (const s of sink.slices(offset, length)) {
        s.set(payload.subarray(pos, pos + s.byteLength));
        pos += s.byteLength;
      }
    }
  };
  // Every worker settles before this returns, so nothing writes into the sink after a failure.
  const settled = await Promise.allSettled(
    Array.from({ length: Math.min(o.window ?? 4, Math.max(1, n)) }, () =>
      worker().catch((err: unknown) => {
        failure ??= err;
        throw err;
      }),
    ),
  );
  if (failure !== null) throw failure;
  void settled;
  if (digestOfChunks(crcs) !== digest) throw new KvChecksumError("chunk checksums do not match the offer's digest");
  parseReply(await ask({ op: "ack", offerId: handle.id, secret: handle.secret }), "ack");
}

/** Best-effort release of a remote offer over NATS after a failure on the pulling side. */
export async function natsNack(nc: NatsConnection, ep: NatsEndpoint, handle: KvHandle, timeoutMs: number): Promise<void> {
  try {
    await nc.request(ep.subject, enc.encode(JSON.stringify({ op: "nack", offerId: handle.id, secret: handle.secret } satisfies NatsRequest)), { timeout: timeoutMs });
  } catch {
    /* the offering side will expire it */
  }
}

/** Acknowledges an offer whose bytes the engine moved (engine transport, NATS control). */
export async function natsAck(nc: NatsConnection, ep: NatsEndpoint, handle: KvHandle, timeoutMs: number): Promise<void> {
  try {
    parseReply(
      await nc.request(ep.subject, enc.encode(JSON.stringify({ op: "ack", offerId: handle.id, secret: handle.secret } satisfies NatsRequest)), { timeout: timeoutMs }),
      "ack",
    );
  } catch (err) {
    throw natsFailure(err, "NATS ack");
  }
}
