import { randomBytes } from "node:crypto";
import { chunkChecksums, digestOfChunks } from "./checksum.js";
import { MAX_DEVICE_DESCRIPTOR_BYTES, validDeviceUuid } from "./handle.js";
import type { KvLayout } from "./layout.js";
import { mapSegments, type KvSource, type SegmentMap } from "./segments.js";

/** Why an offer was released (the one release path records it). */
export type OfferReleaseReason = "ack" | "failed" | "expired" | "closed" | "exit" | "withdrawn";

/** An offered KV as the offering side holds it. */
export interface Offer {
  readonly id: string;
  readonly idBytes: Buffer;
  readonly source: KvSource;
  readonly layout: KvLayout;
  readonly numTokens: number;
  readonly bytes: number;
  readonly map: SegmentMap;
  readonly chunkBytes: number;
  /** CRC-32 per chunk, computed at offer time. */
  readonly crcs: Uint32Array;
  readonly digest: string;
  readonly engineState: Uint8Array | undefined;
  /** The source's device descriptor and device ("cuda-ipc"), when it has a usable one. */
  readonly device: { uuid: string; descriptor: Uint8Array } | undefined;
  readonly expiresAt: number;
  /** Set when a puller has started a transfer: offers are single-consumer. */
  claimed: boolean;
}

export interface OfferRegistryStats {
  active: number;
  offered: number;
  released: Record<OfferReleaseReason, number>;
}

/**
 * Owns every offer of a process side: the only place that calls `source.release()`, exactly once, for an ack,
 * a failed transfer, expiry, close, or process exit.
 */
export class OfferRegistry {
  /** Random id of this registry (names its NATS subject). */
  readonly instanceId = randomBytes(8).toString("hex");
  private readonly offers = new Map<string, Offer>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly listeners = new Set<(id: string, reason: OfferReleaseReason) => void>();
  private offeredCount = 0;
  private readonly releasedCount: Record<OfferReleaseReason, number> = { ack: 0, failed: 0, expired: 0, closed: 0, exit: 0, withdrawn: 0 };
  private readonly onExit = () => this.releaseAll("exit");

  constructor() {
    // Process exit releases what is still offered (signals are the application's to handle; it calls close()).
    process.on("exit", this.onExit);
  }

  /** Registers a source; computes the chunk checksums now, so later corruption of the exported memory is caught. */
  add(source: KvSource, layout: KvLayout, ttlMs: number, chunkBytes: number): Offer {
    let map: SegmentMap;
    let crcs: Uint32Array;
    let engineState: Uint8Array | undefined;
    try {
      map = mapSegments("offered KV", source);
      crcs = chunkChecksums(map, chunkBytes);
      engineState = source.engineState?.();
    } catch (err) {
      source.release(); // the registry owns the source from the moment it is offered
      throw err;
    }
    let device: Offer["device"];
    try {
      const descriptor = validDeviceUuid(source.deviceUuid) ? source.deviceDescriptor?.() : undefined;
      if (descriptor && descriptor.byteLength > 0 && descriptor.byteLength <= MAX_DEVICE_DESCRIPTOR_BYTES) {
        device = { uuid: source.deviceUuid!, descriptor: new Uint8Array(descriptor) };
      }
    } catch {
      device = undefined; // no device path for this offer: the (host-staged) segments serve it
    }
    const idBytes = randomBytes(16);
    const offer: Offer = {
      id: idBytes.toString("hex"),
      idBytes,
      source,
      layout,
      numTokens: source.numTokens,
      bytes: map.bytes,
      map,
      chunkBytes,
      crcs,
      digest: digestOfChunks(crcs),
      engineState,
      device,
      expiresAt: Date.now() + ttlMs,
      claimed: false,
    };
    this.offers.set(offer.id, offer);
    this.offeredCount++;
    const timer = setTimeout(() => this.expire(offer.id), ttlMs);
    timer.unref();
    this.timers.set(offer.id, timer);
    return offer;
  }

  get(id: string): Offer | undefined {
    return this.offers.get(id);
  }

  /** Marks an offer as taken by a transfer; undefined when unknown or already claimed. */
  claim(id: string): Offer | undefined {
    const o = this.offers.get(id);
    if (!o || o.claimed) return undefined;
    o.claimed = true;
    return o;
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
    try {
      o.source.release();
    } finally {
      for (const l of this.listeners) l(id, reason);
    }
    return true;
  }

  releaseAll(reason: OfferReleaseReason): void {
    for (const id of [...this.offers.keys()]) this.release(id, reason);
  }

  /** Stops the exit hook and releases everything. */
  close(): void {
    this.releaseAll("closed");
    process.off("exit", this.onExit);
  }

  onRelease(listener: (id: string, reason: OfferReleaseReason) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get size(): number {
    return this.offers.size;
  }

  stats(): OfferRegistryStats {
    return { active: this.offers.size, offered: this.offeredCount, released: { ...this.releasedCount } };
  }

  private expire(id: string): void {
    const o = this.offers.get(id);
    if (!o) return;
    // A transfer in progress has its own deadline and releases the offer when it ends.
    if (o.claimed) return;
    this.release(id, "expired");
  }
}
