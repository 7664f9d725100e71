import { crc32 } from "node:zlib";
import type { SegmentMap } from "./segments.js";

/**
 * Integrity: CRC-32 (zlib's, SIMD-accelerated in Node's bundled zlib: ~5 GB/s on this VM) per fixed-size chunk,
 * computed once when the KV is offered. The handle carries a digest over the chunk CRCs, so the receiver checks
 * every chunk against the sender's frame and the whole sequence against the handle.
 */
export const CHECKSUM_ALGORITHM = "crc32-chunks/v1";

/** CRC-32 of several views as if concatenated. */
export function crc32OfSlices(slices: Uint8Array[], seed = 0): number {
  let c = seed;
  for (const s of slices) c = crc32(s, c);
  return c >>> 0;
}

/** CRC-32 per chunk of `chunkBytes` over the whole map (the last chunk may be shorter). */
export function chunkChecksums(map: SegmentMap, chunkBytes: number): Uint32Array {
  const n = Math.ceil(map.bytes / chunkBytes);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const off = i * chunkBytes;
    out[i] = crc32OfSlices(map.slices(off, Math.min(chunkBytes, map.bytes - off)));
  }
  return out;
}

/** The handle's checksum: CRC-32 over the chunk CRCs (little-endian), as 8 hex digits. */
export function digestOfChunks(crcs: Uint32Array): string {
  const bytes = new Uint8Array(crcs.buffer, crcs.byteOffset, crcs.byteLength);
  return (crc32(bytes) >>> 0).toString(16).padStart(8, "0");
}

export function chunkCount(bytes: number, chunkBytes: number): number {
  return Math.ceil(bytes / chunkBytes);
}
