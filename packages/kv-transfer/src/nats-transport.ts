import { NoRespondersError, TimeoutError, type RequestPlane, type TransportSubscription } from "@trtd/request-plane";
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
 * The "nats" transport, the small-KV fallback: request/reply per chunk on the offering side's subject, over the
 * request plane (`RequestPlane.request`/`reply`), so it works on either plane transport: NATS, or in-process in
 * single-process mode. For small KV only (every byte is copied into a message and, on NATS, crosses the server
 * twice); larger KV is refused with KvPayloadTooLargeError, never left to time out.
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

/** The offering side's responder on the request plane (started by KvOfferServer when `nats` is configured). */
export class NatsOfferResponder {
  readonly subject: string;
  readonly maxBytes: number;
  private readonly plane: RequestPlane;
  private readonly registry: OfferRegistry;
  private readonly timeouts: TransferTimeoutOptions;
  private readonly idleMs: number;
  private readonly chunkBytes: number;
  private readonly counters: TransportCounters | undefined;
  private sub: TransportSubscription | null = null;
  private readonly active = new Map<string, ActiveNatsTransfer>();

  constructor(o: {
    plane: RequestPlane;
    subject: string;
    maxBytes: number;
    registry: OfferRegistry;
    chunkBytes: number;
    timeouts: TransferTimeoutOptions;
    idleMs: number;
    counters?: TransportCounters;
  }) {
    this.plane = o.plane;
    this.subject = o.subject;
    this.maxBytes = o.maxBytes;
    this.registry = o.registry;
    this.chunkBytes = o.chunkBytes;
    this.timeouts = o.timeouts;
    this.idleMs = o.idleMs;
    this.counters = o.counters;
  }

  async start(): Promise<void> {
    const max = this.plane.transport.maxPayload;
    if (this.chunkBytes + HEADER_BYTES > max) {
      throw new RangeError(`chunkBytes ${this.chunkBytes} + ${HEADER_BYTES} exceeds the request plane's max payload ${max}`);
    }
    this.sub = await this.plane.reply(this.subject, (data) => this.onRequest(data));
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

  /** The refusal to answer (counted by the registry) when `req` does not carry `offer`'s secret; null when it does. */
  private refusal(offer: Offer, req: NatsRequest): Uint8Array | null {
    try {
      this.registry.authorize(offer, req.secret);
      return null;
    } catch (err) {
      if (!(err instanceof KvUnauthorizedError)) throw err;
      return errorReply(err.code, err.message);
    }
  }

  /** One request from a puller; returns the reply. */
  private onRequest(data: Uint8Array): Uint8Array {
    let req: NatsRequest;
    try {
      req = JSON.parse(new TextDecoder().decode(data)) as NatsRequest;
    } catch {
      return errorReply(KvErrorCodes.Protocol, "request is not JSON");
    }
    const id = String(req.offerId);
    if (req.op === "begin") {
      const offer = this.registry.get(id);
      if (!offer || offer.claimed) {
        const e = this.registry.unavailable(id, req.secret); // a late pull: KV_LEASE_EXPIRED
        return errorReply(e.code, e.message);
      }
      const refused = this.refusal(offer, req);
      if (refused) return refused; // refused, not released: the handle's holder may still pull it
      let refusal: [KvErrorCode, string] | null = null;
      if (offer.bytes > this.maxBytes) refusal = [KvErrorCodes.PayloadTooLarge, `KV of ${offer.bytes} bytes exceeds the NATS transport limit of ${this.maxBytes}`];
      else if (req.fingerprint !== offer.layout.fingerprint) refusal = [KvErrorCodes.LayoutMismatch, `puller layout ${String(req.fingerprint)} differs from offered ${offer.layout.fingerprint}`];
      else if (req.bytes !== offer.bytes || req.digest !== offer.advertisedDigest) refusal = [KvErrorCodes.SizeMismatch, "size or digest differs from the offer"];
      if (refusal) {
        this.registry.release(id, "failed"); // single-consumer: a refused pull ends the offer
        return errorReply(...refusal);
      }
      if (!this.registry.claim(id)) {
        const e = this.registry.unavailable(id, req.secret); // a segment puller claimed it (single-copy shm)
        return errorReply(e.code, e.message);
      }
      let host: HostStaging;
      try {
        host = this.registry.stage(offer); // a lazy offer's KV is staged by the transfer that claimed it
      } catch (err) {
        const e = err instanceof KvTransferError ? err : new KvTransportError(String(err), { cause: err });
        if (this.registry.release(id, "failed")) this.counters?.failed("nats");
        return errorReply(e.code, e.message);
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
      return Buffer.concat([encodeHeader({ type: FrameType.Begin, offerId: offer.idBytes, length: body.length }), body]);
    }
    const a = this.active.get(id);
    if (!a) {
      // ack/nack outside a transfer: the engine transport, or a puller that gave up before pulling
      const o = this.registry.get(id);
      if ((req.op === "ack" || req.op === "nack") && o && (!o.claimed || o.claimedBySegment)) {
        const refused = this.refusal(o, req);
        if (refused) return refused;
        if (!this.registry.releasableOutsideTransfer(o).ok) return errorReply(KvErrorCodes.OfferNotFound, `offer ${id} is being pulled`);
        this.registry.release(id, req.op === "ack" ? "ack" : "failed");
        return encodeHeader({ type: FrameType.End });
      }
      return errorReply(KvErrorCodes.OfferNotFound, `no NATS transfer of offer ${id} in progress`);
    }
    const refused = this.refusal(a.offer, req);
    if (refused) return refused;
    a.idle.refresh();
    if (req.op === "ack" || req.op === "nack") {
      this.end(id, req.op === "ack" ? "ack" : "failed");
      return encodeHeader({ type: FrameType.End });
    }
    const seq = req.seq ?? -1;
    const { offer, host } = a;
    if (req.op !== "chunk" || !Number.isSafeInteger(seq) || seq < 0 || seq >= offer.chunks) {
      return errorReply(KvErrorCodes.Protocol, `bad request op ${String(req.op)} seq ${String(seq)}`);
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
    return out;
  }
}

function natsFailure(err: unknown, what: string): KvTransferError {
  if (err instanceof KvTransferError) return err;
  if (err instanceof TimeoutError) return new KvTimeoutError(`${what}: request timed out`, { cause: err });
  if (err instanceof NoRespondersError) return new KvPeerLostError(`${what}: no responder on the request plane (offering side gone)`, { cause: err });
  return new KvTransportError(`${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

function parseReply(data: Uint8Array, what: string): { type: number; header: ReturnType<typeof decodeHeader>; payload: Uint8Array } {
  if (data.byteLength < HEADER_BYTES) throw new KvProtocolError(`${what}: short reply`);
  const header = decodeHeader(data);
  const payload = data.subarray(HEADER_BYTES, HEADER_BYTES + header.length);
  if (header.type === FrameType.Error) {
    const body = JSON.parse(new TextDecoder().decode(payload)) as ErrorBody;
    throw errorFromCode(body.code, body.message);
  }
  return { type: header.type, header, payload };
}

/** Pulls over the request plane into the sink map; sends the ack after verifying. */
export async function natsPull(
  plane: RequestPlane,
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
      return await plane.request(ep.subject, enc.encode(JSON.stringify(r)), { timeoutMs: remaining() });
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

/**
 * ACK or NACK outside a transfer (the engine moved the bytes; a declined or failed pull), over the request plane.
 * An ACK's failure throws a typed error; a NACK is best effort (the offering side expires the offer anyway).
 */
export async function natsControl(plane: RequestPlane, ep: NatsEndpoint, handle: KvHandle, op: "ack" | "nack", timeoutMs: number): Promise<void> {
  const body = enc.encode(JSON.stringify({ op, offerId: handle.id, secret: handle.secret } satisfies NatsRequest));
  try {
    parseReply(await plane.request(ep.subject, body, { timeoutMs }), op);
  } catch (err) {
    if (op === "ack") throw natsFailure(err, "NATS ack");
  }
}
