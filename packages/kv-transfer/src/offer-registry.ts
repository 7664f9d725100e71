import { randomBytes, timingSafeEqual } from "node:crypto";
import { chunkChecksums, digestOfChunks } from "./checksum.js";
import { KvLeaseExpiredError, KvOfferNotFoundError, KvProtocolError, KvPullRefusalReasons, KvSizeMismatchError, KvTransferError, KvTransportError, KvUnauthorizedError, type KvPullRefusalReason } from "./errors.js";
import { MAX_DEVICE_DESCRIPTOR_BYTES, OFFER_SECRET_BYTES, OFFER_SECRET_HEX, validDeviceUuid } from "./handle.js";
import type { KvLayout } from "@trtd/model";
import { mapSegments, type KvSource, type SegmentMap } from "./segments.js";
import { copyWithChunkChecksums, publishStagedOffer, SEGMENT_HEADER_BYTES, segmentKv, takeStagedOffer, type StagingSegment, type StagingSegmentPool } from "./shm-staging.js";

/** Why an offer was released (the one release path records it). */
export type OfferReleaseReason = "ack" | "failed" | "expired" | "closed" | "withdrawn";

/** The host copy of an offer's KV: the segment map and the CRC-32C of every chunk, computed together. */
export interface HostStaging {
  readonly map: SegmentMap;
  /** CRC-32C per chunk. */
  readonly crcs: Uint32Array;
  /** CRC-32C over the chunk CRCs (8 hex digits). */
  readonly digest: string;
  /**
   * A copy of the KV in a shared-memory segment, made with the CRCs (eager offers on a server with a staging
   * pool): a same-host puller copies from it directly (single-copy shm). Given back when the offer is released.
   */
  readonly shared: StagingSegment | null;
}

/** An offered KV as the offering side holds it. */
export interface Offer {
  readonly id: string;
  readonly idBytes: Buffer;
  /**
   * Whoever pulls (or acks, or declines) the offer must present this: the id names the offer (it is logged and
   * travels in every frame header), the secret authorizes. It travels only inside the handle.
   */
  readonly secret: Buffer;
  readonly source: KvSource;
  readonly layout: KvLayout;
  readonly numTokens: number;
  readonly bytes: number;
  readonly chunkBytes: number;
  /** ceil(bytes / chunkBytes) */
  readonly chunks: number;
  /**
   * The host copy. Eager offers (no device path) have it from offer time. Lazy offers (a device path) start with
   * null and get it from `OfferRegistry.stage` when a host transfer (tcp, shm, nats, a cuda-ipc fallback) starts:
   * a pull that moves the KV device to device never stages it.
   */
  host: HostStaging | null;
  /**
   * A deferred eager offer's segment (`deferShared`), held from offer time so that the handle can name it, until the
   * offer is staged into it in the next turn of the event loop (then it is `host.shared`), or given back unused.
   */
  pendingShared: StagingSegment | null;
  /**
   * Whether host staging was deferred, to the first host transfer or (`deferShared`) to the next turn: the handle
   * then carries no digest (BEGIN does; a segment puller reads it in the segment's header).
   */
  readonly lazy: boolean;
  /** The digest the handle advertises: the eager offer's; undefined for a lazy one (it travels in BEGIN). */
  readonly advertisedDigest: string | undefined;
  readonly engineState: Uint8Array | undefined;
  /** The source's device descriptor and device ("cuda-ipc"), when it has a usable one. */
  readonly device: { uuid: string; descriptor: Uint8Array } | undefined;
  readonly expiresAt: number;
  /**
   * Set when a puller has started a transfer: offers are single-consumer. A segment puller's claim lives in the
   * staging segment's state word; this side sets `claimed` (with `claimedBySegment`) when it finds it there.
   */
  claimed: boolean;
  claimedBySegment: boolean;
}

export interface OfferAddOptions {
  /**
   * Defer host staging (segments() and the chunk CRCs) to the first host transfer when the source has a usable
   * device path: set by the offer server when it serves cuda-ipc. Sources without one are staged now regardless.
   * @default false
   */
  lazy?: boolean;
  /**
   * Stage a source without a device path into its shared-memory segment in the next turn of the event loop instead
   * of inside add(): the segment is taken now (the handle names it), the copy and its CRCs run after the caller's
   * current work, e.g. after the prefill worker's answer has left. Until then a segment puller finds it unclaimable
   * and pulls over its connection (staged there, as a lazy offer is). Needs the registry's `sharedStaging`.
   * @default false
   */
  deferShared?: boolean;
}

export interface OfferRegistryOptions {
  /**
   * Where eager offers are staged for single-copy shared memory (the offer server's, when it serves shm); without
   * it they are only checksummed.
   */
  sharedStaging?: StagingSegmentPool;
  /**
   * How long a segment puller's claim is honoured once this side finds it (at expiry) without the ACK or NACK
   * having come: then the offer is released as failed (the puller died after claiming). @default 30 000 ms
   */
  segmentClaimMs?: (bytes: number) => number;
}

export interface OfferRegistryStats {
  active: number;
  offered: number;
  /** Lazy offers (device path) whose KV was staged to host memory for a host transfer (tcp, shm, nats, fallback). */
  staged: number;
  released: Record<OfferReleaseReason, number>;
  /** Pulls, acks and nacks refused for their offer secret (the offer stayed as it was), by reason. */
  refused: Record<KvPullRefusalReason, number>;
}

/**
 * Owns every offer of a process side: the only place that calls `source.release()`, exactly once, for an ack,
 * a failed transfer, expiry, or close() (the owner's stop path).
 */
export class OfferRegistry {
  /** Random id of this registry (names its NATS subject). */
  readonly instanceId = randomBytes(8).toString("hex");
  private readonly offers = new Map<string, Offer>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /**
   * Offers reclaimed at lease expiry, most recent last (bounded: RECLAIMED_REMEMBERED), with their secret: a late
   * pull by the handle's holder is answered KV_LEASE_EXPIRED rather than "unknown". Ids are 128 random bits and
   * never reused, so a late pull can never be served another offer's KV.
   */
  private readonly reclaimed = new Map<string, Buffer>();
  private readonly listeners = new Set<(id: string, reason: OfferReleaseReason) => void>();
  private offeredCount = 0;
  /** Lazy offers staged for a host transfer. */
  private stagedCount = 0;
  private readonly releasedCount: Record<OfferReleaseReason, number> = { ack: 0, failed: 0, expired: 0, closed: 0, withdrawn: 0 };
  private readonly refusedCount = Object.fromEntries(KvPullRefusalReasons.map((r) => [r, 0])) as Record<KvPullRefusalReason, number>;
  private readonly sharedStaging: StagingSegmentPool | undefined;
  private readonly segmentClaimMs: (bytes: number) => number;

  constructor(opts: OfferRegistryOptions = {}) {
    this.sharedStaging = opts.sharedStaging;
    this.segmentClaimMs = opts.segmentClaimMs ?? (() => 30_000);
  }

  /**
   * Registers a source. Without a device path (or without `lazy`) it is staged now: segments mapped and every chunk
   * CRC computed, so later corruption of the exported memory is caught. With a device path and `lazy`, nothing
   * host-side is touched until `stage()` (a cuda-ipc pull never needs it).
   */
  add(source: KvSource, layout: KvLayout, ttlMs: number, chunkBytes: number, opts: OfferAddOptions = {}): Offer {
    let host: HostStaging | null = null;
    let pending: StagingSegment | null = null;
    let engineState: Uint8Array | undefined;
    let device: Offer["device"];
    try {
      try {
        const descriptor = validDeviceUuid(source.deviceUuid) ? source.deviceDescriptor?.() : undefined;
        if (descriptor && descriptor.byteLength > 0 && descriptor.byteLength <= MAX_DEVICE_DESCRIPTOR_BYTES) {
          device = { uuid: source.deviceUuid!, descriptor: new Uint8Array(descriptor) };
        }
      } catch {
        device = undefined; // no device path for this offer: the (host-staged) segments serve it
      }
      if (!(opts.lazy && device)) {
        if (opts.deferShared && this.sharedStaging && Number.isSafeInteger(source.bytes)) pending = this.sharedStaging.acquire(source.bytes);
        if (!pending) host = stageSource(source, chunkBytes, this.sharedStaging);
      }
      engineState = source.engineState?.();
      if (!Number.isSafeInteger(source.bytes) || source.bytes < 0) throw new KvSizeMismatchError(`offered KV declares ${source.bytes} bytes`);
    } catch (err) {
      if (host?.shared) this.sharedStaging!.give(host.shared);
      if (pending) this.sharedStaging!.give(pending);
      source.release(); // the registry owns the source from the moment it is offered
      throw err;
    }
    const idBytes = randomBytes(16);
    const secret = randomBytes(OFFER_SECRET_BYTES);
    const bytes = host ? host.map.bytes : source.bytes;
    const offer: Offer = {
      id: idBytes.toString("hex"),
      idBytes,
      secret,
      source,
      layout,
      numTokens: source.numTokens,
      bytes,
      chunkBytes,
      chunks: Math.ceil(bytes / chunkBytes),
      host,
      pendingShared: pending,
      lazy: host === null,
      advertisedDigest: host?.digest,
      engineState,
      device,
      expiresAt: Date.now() + ttlMs,
      claimed: false,
      claimedBySegment: false,
    };
    this.offers.set(offer.id, offer);
    if (host?.shared) publishStagedOffer(host.shared, idBytes, secret, bytes, host.digest); // claimable by segment pullers from now
    if (pending) setImmediate(() => this.stageDeferred(offer));
    this.offeredCount++;
    const timer = setTimeout(() => this.expire(offer.id), ttlMs);
    timer.unref();
    this.timers.set(offer.id, timer);
    return offer;
  }

  /**
   * A deferred offer (`deferShared`), one turn after add(): copied into its segment with the chunk CRCs and published
   * to segment pullers, unless it was claimed (a connection pull stages it itself) or released meanwhile, or its
   * segments do not match what it declared (the transfer that claims it fails on that); then the segment goes back.
   */
  private stageDeferred(o: Offer): void {
    const seg = o.pendingShared;
    if (!seg) return; // given back already: released (the one release path gives it back)
    o.pendingShared = null;
    if (o.claimed) return this.sharedStaging!.give(seg); // a connection transfer took it first and stages it itself
    try {
      const map = mapSegments("offered KV", o.source);
      if (map.bytes !== o.bytes || SEGMENT_HEADER_BYTES + map.bytes > seg.capacity) return this.sharedStaging!.give(seg);
      o.host = copyIntoSegment(map, o.chunkBytes, seg);
    } catch {
      return this.sharedStaging!.give(seg); // a transfer that claims the offer stages it again, and fails there
    }
    publishStagedOffer(seg, o.idBytes, o.secret, o.bytes, o.host.digest);
  }

  /**
   * The host copy of a claimed offer, for the transfer that claimed it: staged on first call for a lazy offer (its
   * `segments()`, which on a device executor copies the KV to pinned host memory, and its chunk CRCs), from offer
   * time for an eager one. A released source is never touched: an offer released meanwhile (close(), a transfer
   * that waited for its slot) throws KvOfferNotFoundError. Staging is synchronous, so neither expiry nor close() can
   * release the source while it runs (and a claimed offer does not expire). A staging error is thrown as a
   * KvTransferError (KvTransportError, KvSizeMismatchError); the caller's failure path releases the offer.
   */
  stage(offer: Offer): HostStaging {
    // Also for an eager offer: a transfer that got its slot after close() released the offer must not send from it.
    if (this.offers.get(offer.id) !== offer) throw new KvOfferNotFoundError(`offer ${offer.id} was released before its transfer started`);
    if (!offer.claimed) throw new KvProtocolError(`offer ${offer.id} is staged only for the transfer that claimed it`);
    if (offer.host) return offer.host;
    let host: HostStaging;
    try {
      host = stageSource(offer.source, offer.chunkBytes);
    } catch (err) {
      if (err instanceof KvTransferError) throw err;
      throw new KvTransportError(`staging offer ${offer.id} to host memory failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    if (host.map.bytes !== offer.bytes) throw new KvSizeMismatchError(`offered KV: segments hold ${host.map.bytes} bytes, the handle announced ${offer.bytes}`);
    // Defensive: a source whose segments() re-entered the registry and released the offer must not be kept.
    if (this.offers.get(offer.id) !== offer) throw new KvOfferNotFoundError(`offer ${offer.id} was released while its KV was staged`);
    this.stagedCount++;
    offer.host = host;
    return host;
  }

  get(id: string): Offer | undefined {
    return this.offers.get(id);
  }

  /**
   * Checks the secret a peer presented for `offer` (in constant time); a refusal is counted and thrown as
   * KvUnauthorizedError, and leaves the offer as it was (claimable by the holder of the handle, or expiring).
   */
  authorize(offer: Offer, presented: unknown): void {
    const reason = secretRefusal(offer.secret, presented);
    if (reason === null) return;
    this.refusedCount[reason]++;
    throw new KvUnauthorizedError(
      reason === "missing_secret"
        ? `offer ${offer.id}: refused, the request carries no offer secret (a peer without the handle, or one older than offer secrets)`
        : `offer ${offer.id}: refused, the offer secret does not match (only the holder of the offer's handle may pull or release it)`,
    );
  }

  /**
   * Why a pull (or NATS begin) for `id` cannot be served, when `get(id)` has no unclaimed offer: KvLeaseExpiredError
   * for an offer this registry reclaimed at lease expiry, to the holder of its handle (a wrong or missing secret is
   * refused and counted as for a live offer, so the answer tells nothing to others); KvOfferNotFoundError otherwise.
   */
  unavailable(id: string, presentedSecret: unknown): KvTransferError {
    const secret = this.reclaimed.get(id);
    if (secret) {
      const reason = secretRefusal(secret, presentedSecret);
      if (reason !== null) {
        this.refusedCount[reason]++;
        return new KvUnauthorizedError(`offer ${id}: refused, ${reason === "missing_secret" ? "the request carries no offer secret" : "the offer secret does not match"}`);
      }
      return new KvLeaseExpiredError(`offer ${id}: its lease expired and its KV was reclaimed before this pull (a late pull)`);
    }
    const o = this.offers.get(id);
    if (o?.claimed) return new KvOfferNotFoundError(`offer ${id} is being pulled already (offers are single-consumer)`);
    return new KvOfferNotFoundError(`offer ${id} is unknown here (never made, already pulled, released or expired)`);
  }

  /**
   * Marks an offer as taken by a transfer; undefined when unknown or already claimed (also by a segment puller:
   * the staging segment's state word decides between them).
   */
  claim(id: string): Offer | undefined {
    const o = this.offers.get(id);
    if (!o || o.claimed) return undefined;
    if (o.host?.shared && !takeStagedOffer(o.host.shared)) {
      this.claimedBySegment(o);
      return undefined;
    }
    o.claimed = true;
    return o;
  }

  /**
   * An ACK or NACK outside a transfer may release `o`: an unclaimed offer, or one a segment puller claimed (its
   * transfer has no connection). Whether it came from a segment puller: `viaSegment`.
   */
  releasableOutsideTransfer(o: Offer): { ok: boolean; viaSegment: boolean } {
    if (o.claimed && !o.claimedBySegment) return { ok: false, viaSegment: false };
    if (o.claimedBySegment) return { ok: true, viaSegment: true };
    // Not seen claimed yet: the segment's state word says whether a segment puller holds it.
    const viaSegment = o.host?.shared ? !takeStagedOffer(o.host.shared) : false;
    if (viaSegment) this.claimedBySegment(o);
    return { ok: true, viaSegment };
  }

  /** A segment puller holds `o`: honour it for segmentClaimMs, then release it as failed. */
  private claimedBySegment(o: Offer): void {
    if (o.claimedBySegment) return;
    o.claimed = true;
    o.claimedBySegment = true;
    const old = this.timers.get(o.id);
    if (old) clearTimeout(old);
    const t = setTimeout(() => this.release(o.id, "failed"), this.segmentClaimMs(o.bytes));
    t.unref();
    this.timers.set(o.id, t);
  }

  /** The one release path. Returns false when the offer was already gone. */
  release(id: string, reason: OfferReleaseReason): boolean {
    const o = this.offers.get(id);
    if (!o) return false;
    this.offers.delete(id);
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
    this.releasedCount[reason]++;
    if (reason === "expired") {
      this.reclaimed.set(id, o.secret);
      if (this.reclaimed.size > RECLAIMED_REMEMBERED) this.reclaimed.delete(this.reclaimed.keys().next().value!);
    }
    try {
      if (o.host?.shared) this.sharedStaging!.give(o.host.shared);
      if (o.pendingShared) this.sharedStaging!.give(o.pendingShared);
      o.pendingShared = null;
      o.source.release();
    } finally {
      for (const l of this.listeners) l(id, reason);
    }
    return true;
  }

  releaseAll(reason: OfferReleaseReason): void {
    for (const id of [...this.offers.keys()]) this.release(id, reason);
  }

  /**
   * Releases everything. The owner's stop path calls it (KvOfferServer.close(), from the prefill worker's stop): a
   * library installs no process-wide handlers, and the pinned KV of a process that exits goes with its executor.
   */
  close(): void {
    this.releaseAll("closed");
  }

  onRelease(listener: (id: string, reason: OfferReleaseReason) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get size(): number {
    return this.offers.size;
  }

  stats(): OfferRegistryStats {
    return { active: this.offers.size, offered: this.offeredCount, staged: this.stagedCount, released: { ...this.releasedCount }, refused: { ...this.refusedCount } };
  }

  private expire(id: string): void {
    const o = this.offers.get(id);
    if (!o) return;
    // A transfer in progress has its own deadline and releases the offer when it ends.
    if (o.claimed) return;
    if (o.host?.shared && !takeStagedOffer(o.host.shared)) return this.claimedBySegment(o); // a segment puller has it
    this.release(id, "expired");
  }
}

/** How many offers reclaimed at expiry a registry remembers (id + secret, ~100 bytes each) to answer late pulls. */
export const RECLAIMED_REMEMBERED = 4096;

/** Null when `presented` is the hex of `secret`; else why not. The comparison of the bytes takes constant time. */
function secretRefusal(secret: Buffer, presented: unknown): KvPullRefusalReason | null {
  if (presented === undefined || presented === null || presented === "") return "missing_secret";
  // the length and alphabet are public (every handle shows them): only the bytes need the constant-time compare
  if (typeof presented !== "string" || !OFFER_SECRET_HEX.test(presented)) return "bad_secret";
  return timingSafeEqual(Buffer.from(presented, "hex"), secret) ? null : "bad_secret";
}

/** What BEGIN of a byte transfer adds for a lazy offer (its handle has no digest): the digest just staged. */
export function beginDigest(offer: Offer, host: HostStaging): { digest?: string } {
  return offer.lazy ? { digest: host.digest } : {};
}

/**
 * Maps a source's segments and checksums every chunk (the host staging of an offer). With a pool, the same pass
 * copies the KV into a shared segment (the copy a same-host puller reads); without one, or when no segment can be
 * had here, it only checksums.
 */
function stageSource(source: KvSource, chunkBytes: number, pool?: StagingSegmentPool): HostStaging {
  const map = mapSegments("offered KV", source);
  const shared = pool?.acquire(map.bytes) ?? null;
  if (!shared) {
    const crcs = chunkChecksums(map, chunkBytes);
    return { map, crcs, digest: digestOfChunks(crcs), shared: null };
  }
  try {
    return copyIntoSegment(map, chunkBytes, shared);
  } catch (err) {
    pool!.give(shared);
    throw err;
  }
}

/** The host staging of `map` whose copy is `shared`: the KV copied into the segment with its chunk CRCs, one pass. */
function copyIntoSegment(map: SegmentMap, chunkBytes: number, shared: StagingSegment): HostStaging {
  const crcs = copyWithChunkChecksums(map, chunkBytes, segmentKv(shared.map, map.bytes));
  return { map, crcs, digest: digestOfChunks(crcs), shared };
}
