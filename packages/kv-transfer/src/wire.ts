import { KvProtocolError } from "./errors.js";
import type { KvHandle } from "./handle.js";

/**
 * Frame format shared by the TCP and shared-memory transports (and the NATS chunk replies):
 * a fixed 48-byte little-endian header, then `length` payload bytes (JSON for control frames, KV for DATA).
 *
 *   0  u32 magic "KVT1"     4  u8 type   5  u8 flags   6  u16 reserved
 *   8  16 B offer id       24  u32 seq  28  u32 crc32 (DATA, SHM_CHUNK)
 *  32  u64 offset          40  u32 length (payload bytes)   44  u32 slot (SHM_CHUNK, SHM_FREE)
 */
export const FRAME_MAGIC = 0x3154564b; // "KVT1" read as little-endian u32
export const HEADER_BYTES = 48;
/** Control frames carry small JSON; anything larger is a protocol error. */
export const MAX_CONTROL_BYTES = 64 * 1024;

export const FrameType = {
  /** puller → server, JSON PullRequest */
  Pull: 1,
  /** server → puller, JSON PullBegin */
  Begin: 2,
  /** server → puller, KV bytes of one chunk */
  Data: 3,
  /** server → puller, no payload: all chunks sent */
  End: 4,
  /** puller → server: verified, release the offer. In a transfer no payload; outside one, JSON ReleaseBody */
  Ack: 5,
  /** puller → server: failed, release the offer. JSON {code, message}; outside a transfer, JSON ReleaseBody */
  Nack: 6,
  /** server → puller, JSON {code, message} */
  Error: 7,
  /** server → puller, no payload: chunk `seq` is in ring slot `slot` */
  ShmChunk: 8,
  /** puller → server, no payload: ring slot `slot` may be reused */
  ShmFree: 9,
  /** puller → server, no payload: the ring file is open (the server may unlink it) */
  ShmOpened: 10,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

export interface FrameHeader {
  type: number;
  flags: number;
  offerId: Buffer;
  seq: number;
  crc: number;
  offset: number;
  length: number;
  slot: number;
}

const ZERO_ID = Buffer.alloc(16);

export function encodeHeader(h: Partial<FrameHeader> & { type: number }, out: Buffer = Buffer.allocUnsafe(HEADER_BYTES)): Buffer {
  out.writeUInt32LE(FRAME_MAGIC, 0);
  out.writeUInt8(h.type, 4);
  out.writeUInt8(h.flags ?? 0, 5);
  out.writeUInt16LE(0, 6);
  (h.offerId ?? ZERO_ID).copy(out, 8, 0, 16);
  out.writeUInt32LE(h.seq ?? 0, 24);
  out.writeUInt32LE((h.crc ?? 0) >>> 0, 28);
  const off = h.offset ?? 0;
  out.writeUInt32LE(off % 0x100000000, 32);
  out.writeUInt32LE(Math.floor(off / 0x100000000), 36);
  out.writeUInt32LE(h.length ?? 0, 40);
  out.writeUInt32LE(h.slot ?? 0, 44);
  return out;
}

export function decodeHeader(b: Uint8Array): FrameHeader {
  const buf = Buffer.from(b.buffer, b.byteOffset, HEADER_BYTES);
  if (buf.readUInt32LE(0) !== FRAME_MAGIC) throw new KvProtocolError("bad frame magic (not a kv-transfer peer?)");
  return {
    type: buf.readUInt8(4),
    flags: buf.readUInt8(5),
    offerId: Buffer.from(buf.subarray(8, 24)),
    seq: buf.readUInt32LE(24),
    crc: buf.readUInt32LE(28),
    offset: buf.readUInt32LE(32) + buf.readUInt32LE(36) * 0x100000000,
    length: buf.readUInt32LE(40),
    slot: buf.readUInt32LE(44),
  };
}

/** A control frame: header + JSON payload. */
export function controlFrame(type: number, body: unknown, offerId?: Buffer): Buffer[] {
  const json = body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body));
  return [encodeHeader({ type, offerId, length: json.length }), json];
}

/** PULL body. */
export interface PullRequest {
  offerId: string;
  /** The handle's offer secret: without the right one the server refuses the pull and keeps the offer. */
  secret?: string;
  fingerprint: string;
  /** "cuda-ipc": a lease (the server claims the offer and sends no data; the puller copies device to device,
   * then sends ACK, or a second PULL with "tcp"/"shm" for the same offer to fall back on this connection). */
  transport: "tcp" | "shm" | "cuda-ipc";
  bytes: number;
  /** the handle's digest; absent for a v2 handle (a lazy offer: BEGIN of a byte transfer carries it) */
  digest?: string;
  /** the puller's host id, for shm and cuda-ipc */
  hostId?: string;
}

/** BEGIN body. */
export interface PullBegin {
  bytes: number;
  chunkBytes: number;
  chunks: number;
  /**
   * A lazy offer (v2 handle, no digest in it): the CRC-32C over the chunk CRCs, computed when this transfer staged
   * the KV to host memory. Sent by tcp/shm/nats BEGIN only for such offers; never in a lease's BEGIN.
   */
  digest?: string;
  /** shm: the ring file, its slot count and slot size */
  shmPath?: string;
  slots?: number;
  /** shm: keep using this connection's ring from the previous pull */
  reuseRing?: boolean;
  /** cuda-ipc: the offer is leased to this connection; no DATA and no END follow */
  lease?: boolean;
}

/** ACK or NACK of an offer outside a transfer (engine transport, a puller declining): the handle's secret. */
export interface ReleaseBody {
  secret: string;
  /** ACK of a single-copy shm pull: how long the puller's copy took (the offering side's stats) */
  ms?: number;
}

export interface ErrorBody {
  code: string;
  message: string;
}

/**
 * The digest a byte transfer's chunk CRCs must match: the handle's (v1), else BEGIN's (v2: a lazy offer, staged when
 * this transfer started). A BEGIN whose digest is malformed or contradicts the handle's, or no digest on either
 * side, is a protocol error.
 */
export function expectedDigest(handle: KvHandle, begin: PullBegin): string {
  const fromBegin: unknown = begin.digest;
  if (fromBegin !== undefined && (typeof fromBegin !== "string" || !/^[0-9a-f]{8}$/.test(fromBegin))) {
    throw new KvProtocolError("BEGIN's digest must be 8 hex digits");
  }
  const fromHandle = handle.checksum.digest;
  if (fromHandle !== undefined) {
    if (fromBegin !== undefined && fromBegin !== fromHandle) throw new KvProtocolError("BEGIN's digest differs from the handle's");
    return fromHandle;
  }
  if (fromBegin === undefined) throw new KvProtocolError("BEGIN carries no digest and neither does the handle (v2: staged on pull)");
  return fromBegin as string;
}
