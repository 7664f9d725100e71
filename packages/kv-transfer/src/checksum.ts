import { loadKvx } from "./native.js";
import type { SegmentMap } from "./segments.js";

/**
 * Integrity: CRC-32C per fixed-size chunk, computed once when the KV is offered. The handle carries a digest over
 * the chunk CRCs, so the receiver checks every chunk against the sender's frame and the whole sequence against
 * the handle. The native helper (SSE4.2 crc32 instruction, ~6-9 GB/s on the 2-core VM) does the work when built;
 * the JavaScript table version below gives the same values, slower.
 */
export const CHECKSUM_ALGORITHM = "crc32c-chunks/v1";

// ---- JavaScript fallback: slicing-by-8 tables ----
let tables: Uint32Array[] | null = null;
function jsTables(): Uint32Array[] {
  if (tables) return tables;
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0x82f63b78 & -(c & 1));
    t[0]![i] = c >>> 0;
  }
  for (let k = 1; k < 8; k++) for (let i = 0; i < 256; i++) t[k]![i] = (t[k - 1]![i]! >>> 8) ^ t[0]![t[k - 1]![i]! & 0xff]!;
  tables = t;
  return t;
}

export function crc32cJs(prev: number, data: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = jsTables() as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = ~prev >>> 0;
  let i = 0;
  const n = data.length;
  for (; i + 8 <= n; i += 8) {
    const lo = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) ^ c;
    const hi = data[i + 4]! | (data[i + 5]! << 8) | (data[i + 6]! << 16) | (data[i + 7]! << 24);
    c = t7[lo & 0xff]! ^ t6[(lo >>> 8) & 0xff]! ^ t5[(lo >>> 16) & 0xff]! ^ t4[lo >>> 24]! ^
      t3[hi & 0xff]! ^ t2[(hi >>> 8) & 0xff]! ^ t1[(hi >>> 16) & 0xff]! ^ t0[hi >>> 24]!;
  }
  for (; i < n; i++) c = (c >>> 8) ^ t0[(c ^ data[i]!) & 0xff]!;
  return ~c >>> 0;
}

/** CRC-32C continuing from `prev` (0 to start), zlib-style chaining. */
export function crc32c(prev: number, data: Uint8Array): number {
  const kvx = loadKvx();
  return kvx ? kvx.crc32c(prev, data, data.byteLength) >>> 0 : crc32cJs(prev, data);
}

/** Copies `src` into `dst` (same length) and returns the CRC-32C of the bytes, continuing from `prev`. */
export function copyWithCrc32c(dst: Uint8Array, src: Uint8Array, prev: number): number {
  const kvx = loadKvx();
  if (kvx) return kvx.copyCrc32c(dst, src, src.byteLength, prev) >>> 0;
  dst.set(src);
  return crc32cJs(prev, dst);
}

/**
 * Which implementation runs: "native-vpclmulqdq" (buffers from 512 bytes folded with AVX-512 carry-less multiplies,
 * shorter ones as below), "native-sse4.2" (the crc32 instruction), "native-table" or "js".
 */
export function checksumImplementation(): string {
  const kvx = loadKvx();
  return kvx ? (kvx.folded ? "native-vpclmulqdq" : kvx.hardware ? "native-sse4.2" : "native-table") : "js";
}

/** CRC-32C of several views as if concatenated. */
export function crcOfSlices(slices: Uint8Array[], seed = 0): number {
  let c = seed;
  for (const s of slices) c = crc32c(c, s);
  return c >>> 0;
}

/** CRC-32C per chunk of `chunkBytes` over the whole map (the last chunk may be shorter). */
export function chunkChecksums(map: SegmentMap, chunkBytes: number): Uint32Array {
  const n = Math.ceil(map.bytes / chunkBytes);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const off = i * chunkBytes;
    out[i] = crcOfSlices(map.slices(off, Math.min(chunkBytes, map.bytes - off)));
  }
  return out;
}

/** The handle's checksum: CRC-32C over the chunk CRCs (as little-endian u32), 8 hex digits. */
export function digestOfChunks(crcs: Uint32Array): string {
  const bytes = new Uint8Array(crcs.length * 4);
  const dv = new DataView(bytes.buffer);
  crcs.forEach((c, i) => dv.setUint32(i * 4, c, true));
  return crc32c(0, bytes).toString(16).padStart(8, "0");
}
