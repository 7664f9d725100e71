import { createHash } from "node:crypto";
import { closeSync, constants, fstatSync, ftruncateSync, openSync } from "node:fs";
import { copyWithCrc32c } from "./checksum.js";
import { KvTransportError } from "./errors.js";
import { createMemfd, loadKvx, mapFile, type KvxAtomics, type Mapping } from "./native.js";
import type { SegmentMap } from "./segments.js";

/**
 * Single-copy shared memory. An eager offer's KV is copied once, at offer time, into a memfd segment (fused with
 * the chunk CRCs the offer computes anyway); a same-host puller maps that segment and copies straight into its
 * import (one copy, in the pulling process). Segments come from a pool and pullers keep their mappings, because
 * the first touch of a fresh mapping costs more than the copy itself (measured in the README).
 *
 * The claim needs no round trip: the segment's first page is a header with a state word that both processes change
 * with atomic compare-and-swap. The offering side publishes OFFERED when the offer is registered; a puller holding
 * the handle (offer id and secret checked against the header) claims it OFFERED -> CLAIMED, copies, checks the
 * chunk CRCs against the handle's digest and sends ACK (or NACK) outside a transfer. Everything on the offering side
 * that would take the offer otherwise (a tcp/ring/nats pull, expiry) first swaps OFFERED -> TAKEN, so exactly one
 * of them wins; a release stores TAKEN before the segment goes back to the pool.
 *
 * memfd: the segment has no name in any directory, so a crash on either side leaves nothing behind (the kernel
 * frees it with the last fd or mapping). A puller opens it as /proc/<pid>/fd/<fd> of the offering process, which
 * needs the same user (ptrace read access), and checks its inode against the one the handle names.
 */

/** Segment sizes are rounded up to this (huge-page size, so a later THP-backed tmpfs could use it). */
const SEGMENT_ALIGN = 2 * 1024 * 1024;

/**
 * The header page: state word, magic, offer id, SHA-256 of the offer secret, KV bytes, the digest of the chunk CRCs
 * (8 hex digits, ASCII: for a handle that carries none, the offer having been staged after its handle was made). The
 * KV follows it.
 */
export const SEGMENT_HEADER_BYTES = 4096;
const MAGIC = 0x4753564b; // "KVSG"
// the state word is at offset 0 (the atomics take the mapping's start)
const OFF_MAGIC = 4;
const OFF_ID = 8;
const OFF_SECRET_HASH = 24;
const OFF_BYTES = 56;
const OFF_DIGEST = 64;
const DIGEST_CHARS = 8;

/** The segment's state word (a new memfd reads 0: Free). */
export const SegmentState = { Free: 0, Offered: 1, Claimed: 2, Taken: 3 } as const;

function atomics(): KvxAtomics | null {
  return loadKvx()?.atomics ?? null;
}

/** Whether single-copy staging can run here: memfd, mmap and the native atomics. */
export function shmStagingAvailable(): boolean {
  return process.platform === "linux" && atomics() !== null;
}

function secretHash(secret: Buffer): Buffer {
  return createHash("sha256").update(secret).digest();
}

/** The KV part of a segment's mapping. */
export function segmentKv(map: Mapping, bytes: number): Uint8Array {
  return map.bytes.subarray(SEGMENT_HEADER_BYTES, SEGMENT_HEADER_BYTES + bytes);
}

/** Offering side: writes the header for a registered offer and publishes it (OFFERED, claimable). */
export function publishStagedOffer(seg: StagingSegment, idBytes: Buffer, secret: Buffer, bytes: number, digest: string): void {
  const h = seg.map.bytes;
  const dv = new DataView(h.buffer, h.byteOffset, SEGMENT_HEADER_BYTES);
  dv.setUint32(OFF_MAGIC, MAGIC, true);
  h.set(idBytes, OFF_ID);
  h.set(secretHash(secret), OFF_SECRET_HASH);
  dv.setBigUint64(OFF_BYTES, BigInt(bytes), true);
  h.set(Buffer.from(digest.padStart(DIGEST_CHARS, "0").slice(-DIGEST_CHARS), "latin1"), OFF_DIGEST);
  atomics()!.store32(h, SegmentState.Offered);
}

/** Pulling side, after a claim: the digest the offering side wrote with the header (undefined when it is not one). */
export function stagedDigest(map: Mapping): string | undefined {
  const d = Buffer.from(map.bytes.buffer, map.bytes.byteOffset + OFF_DIGEST, DIGEST_CHARS).toString("latin1");
  return /^[0-9a-f]{8}$/.test(d) ? d : undefined;
}

/**
 * Offering side: takes a published offer away from segment pullers (OFFERED -> TAKEN), for a tcp/ring/nats pull
 * or expiry. False when a segment puller claimed it first.
 */
export function takeStagedOffer(seg: StagingSegment): boolean {
  const prev = atomics()!.cas32(seg.map.bytes, SegmentState.Offered, SegmentState.Taken);
  return prev !== SegmentState.Claimed;
}

/** Offering side, on release: nobody may claim the segment any more (before it goes back to the pool). */
export function retireStagedOffer(seg: StagingSegment): void {
  atomics()!.store32(seg.map.bytes, SegmentState.Taken);
}

/**
 * Pulling side: claims the offer in a mapped segment (OFFERED -> CLAIMED) when the header names this offer id,
 * the SHA-256 of this secret and this size. False otherwise (another offer, a wrong secret, taken, claimed).
 */
export function claimStagedOffer(map: Mapping, idHex: string, secretHex: string, bytes: number): boolean {
  const a = atomics();
  const h = map.bytes;
  if (!a || h.byteLength < SEGMENT_HEADER_BYTES + bytes) return false;
  const hash = secretHash(Buffer.from(secretHex, "hex"));
  const names = () => headerNames(map, idHex, hash, bytes);
  if (!names() || a.cas32(h, SegmentState.Offered, SegmentState.Claimed) !== SegmentState.Offered) return false;
  // The header may have been read before the segment was restaged for a newer offer (a late puller): the header
  // of the offer just claimed was written before its OFFERED, so read again now and give back a claim not ours.
  if (names()) return true;
  a.cas32(h, SegmentState.Claimed, SegmentState.Offered);
  return false;
}

function headerNames(map: Mapping, idHex: string, hash: Buffer, bytes: number): boolean {
  const h = map.bytes;
  const dv = new DataView(h.buffer, h.byteOffset, SEGMENT_HEADER_BYTES);
  return (
    dv.getUint32(OFF_MAGIC, true) === MAGIC &&
    dv.getBigUint64(OFF_BYTES, true) === BigInt(bytes) &&
    Buffer.from(h.buffer, h.byteOffset + OFF_ID, 16).equals(Buffer.from(idHex, "hex")) &&
    Buffer.from(h.buffer, h.byteOffset + OFF_SECRET_HASH, 32).equals(hash)
  );
}

/**
 * Pulling side: whether the segment's header names this offer yet. A deferred offer's (deferStaging) is written
 * when it is staged, one turn after its handle was made: until then the header is an earlier offer's, or empty.
 */
export function segmentNamesOffer(map: Mapping, idHex: string, secretHex: string, bytes: number): boolean {
  if (map.bytes.byteLength < SEGMENT_HEADER_BYTES + bytes) return false;
  return headerNames(map, idHex, secretHash(Buffer.from(secretHex, "hex")), bytes);
}

/** One memfd segment, owned by the offering side's pool; mapped read-write there for its whole life. */
export interface StagingSegment {
  readonly fd: number;
  readonly ino: number;
  readonly capacity: number;
  readonly map: Mapping;
}

/** What BEGIN names for a single-copy shm pull: the offering process, its fd, the inode to check, the size. */
export interface ShmSegmentRef {
  pid: number;
  fd: number;
  ino: number;
  capacity: number;
}

export interface StagingPoolStats {
  /** Segments holding an offer's KV now. */
  inUse: number;
  /** Segments kept for reuse, and their bytes. */
  idle: number;
  idleBytes: number;
  /** Segments created so far (a reuse creates none). */
  created: number;
  /** Segments that could not be created (e.g. /dev/shm full): those offers were only checksummed (ring path). */
  failed: number;
}

/**
 * The offering side's memfd segments: `acquire` for an offer, `give` back on its release (the offer registry's one
 * release path), reused by later offers of a similar size so their pages are allocated and mapped once. At most
 * `maxIdleBytes` are kept idle; `close()` frees the idle ones and any given back later.
 */
export class StagingSegmentPool {
  private readonly idle: StagingSegment[] = [];
  private idleBytes = 0;
  private inUse = 0;
  private created = 0;
  private failed = 0;
  private closed = false;

  constructor(private readonly maxIdleBytes: number) {}

  /** A segment for `bytes` of KV (an idle one of up to twice that, else a new one); null when none can be had. */
  acquire(kvBytes: number): StagingSegment | null {
    if (this.closed || kvBytes === 0 || !shmStagingAvailable()) return null;
    const bytes = kvBytes + SEGMENT_HEADER_BYTES;
    let best = -1;
    for (let i = 0; i < this.idle.length; i++) {
      const c = this.idle[i]!.capacity;
      if (c >= bytes && c <= 2 * Math.max(bytes, SEGMENT_ALIGN) && (best < 0 || c < this.idle[best]!.capacity)) best = i;
    }
    if (best >= 0) {
      const seg = this.idle.splice(best, 1)[0]!;
      this.idleBytes -= seg.capacity;
      this.inUse++;
      return seg;
    }
    const seg = createSegment(Math.ceil(bytes / SEGMENT_ALIGN) * SEGMENT_ALIGN);
    if (seg) {
      this.created++;
      this.inUse++;
    } else {
      this.failed++;
    }
    return seg;
  }

  /** Returns a segment from `acquire`; kept for reuse (oldest idle ones freed first past the limit) or freed. */
  give(seg: StagingSegment): void {
    retireStagedOffer(seg);
    this.inUse--;
    if (this.closed || seg.capacity > this.maxIdleBytes) return freeSegment(seg);
    while (this.idleBytes + seg.capacity > this.maxIdleBytes) {
      const old = this.idle.shift()!;
      this.idleBytes -= old.capacity;
      freeSegment(old);
    }
    this.idle.push(seg);
    this.idleBytes += seg.capacity;
  }

  stats(): StagingPoolStats {
    return { inUse: this.inUse, idle: this.idle.length, idleBytes: this.idleBytes, created: this.created, failed: this.failed };
  }

  /** Frees the idle segments; segments still in use are freed when given back. */
  close(): void {
    this.closed = true;
    for (const s of this.idle.splice(0)) freeSegment(s);
    this.idleBytes = 0;
  }
}

/** A new segment, or null when none can be had here (no memfd or mmap, tmpfs full: counted as `failed`). */
function createSegment(capacity: number): StagingSegment | null {
  const fd = createMemfd("trtd-kv-staging");
  if (fd === null) return null;
  try {
    ftruncateSync(fd, capacity);
    // Populated now: the pages are allocated once per segment, not on the first offer's copy.
    const map = mapFile(fd, capacity, true, true);
    if (!map) throw new Error("mmap is not available");
    return { fd, ino: fstatSync(fd).ino, capacity, map };
  } catch {
    closeSync(fd);
    return null;
  }
}

function freeSegment(seg: StagingSegment): void {
  seg.map.unmap();
  closeSync(seg.fd);
}

/**
 * Copies the KV into `dst` (contiguous) and returns the CRC-32C of every `chunkBytes` chunk, computed in the same
 * pass (the offer's chunk CRCs).
 */
export function copyWithChunkChecksums(map: SegmentMap, chunkBytes: number, dst: Uint8Array): Uint32Array {
  const n = Math.ceil(map.bytes / chunkBytes);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const off = i * chunkBytes;
    let crc = 0;
    let pos = off;
    for (const s of map.slices(off, Math.min(chunkBytes, map.bytes - off))) {
      crc = copyWithCrc32c(dst.subarray(pos, pos + s.byteLength), s, crc);
      pos += s.byteLength;
    }
    out[i] = crc >>> 0;
  }
  return out;
}

/**
 * The pulling side's read-only mappings of offering processes' segments, kept across pulls (a fresh mapping's
 * first touch is the slow part). At most `maxSegments`, least recently used unmapped first; `close()` unmaps all.
 * A mapping keeps its segment's memory alive even after the offering side freed it, until it is dropped here:
 * the owner (a pooled connection) closes this with the connection.
 */
export class SegmentMappings {
  private readonly maps = new Map<string, Mapping>();

  constructor(private readonly maxSegments = 8) {}

  /** The mapping of `ref` (opened and mapped on first use). Throws KvTransportError when it cannot. */
  get(ref: ShmSegmentRef): Mapping {
    const key = `${ref.pid}:${ref.fd}:${ref.ino}:${ref.capacity}`;
    const hit = this.maps.get(key);
    if (hit) {
      this.maps.delete(key); // re-inserted last: most recently used
      this.maps.set(key, hit);
      return hit;
    }
    let fd: number;
    try {
      // read-write: the claim swaps the header's state word. The path comes from a handle: never block on a FIFO or
      // take a terminal; only a regular file of the right inode is mapped.
      fd = openSync(`/proc/${ref.pid}/fd/${ref.fd}`, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
    } catch (err) {
      throw new KvTransportError(`cannot open the offering process's staging segment: ${(err as Error).message}`, { cause: err });
    }
    let map: Mapping | null = null;
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.ino !== ref.ino || st.size < ref.capacity) throw new Error(`fd ${ref.fd} of process ${ref.pid} is not the segment BEGIN names`);
      map = mapFile(fd, ref.capacity, true, true);
      if (!map) throw new Error("mmap is not available");
    } catch (err) {
      throw new KvTransportError(`cannot map the offering process's staging segment: ${(err as Error).message}`, { cause: err });
    } finally {
      closeSync(fd); // the mapping keeps the segment; no fd is held
    }
    this.maps.set(key, map);
    while (this.maps.size > this.maxSegments) {
      const [k, m] = this.maps.entries().next().value!;
      this.maps.delete(k);
      m.unmap();
    }
    return map;
  }

  get size(): number {
    return this.maps.size;
  }

  close(): void {
    for (const m of this.maps.values()) m.unmap();
    this.maps.clear();
  }
}
