import type { ShmSegmentRef } from "./shm-staging.js";
import { KvInvalidHandleError } from "./errors.js";
import { CHECKSUM_ALGORITHM } from "./checksum.js";
import { isKvDtype, KV_DTYPES, type KvDtype, type KvLayout } from "@trtd/model";

/** Pull over TCP from the offering side's KvOfferServer. */
export interface TcpEndpoint {
  transport: "tcp";
  host: string;
  port: number;
}
/** Same-host shared memory (/dev/shm), controlled over the TCP server's connection. */
export interface ShmEndpoint {
  transport: "shm";
  /** Identity of the offering host (boot id + hostname); shm is chosen only when the puller's is equal. */
  hostId: string;
  host: string;
  port: number;
  /**
   * Single copy: the offer's KV is staged in this memfd segment of the offering process (eager offers on a server
   * with staging). The puller maps it and starts copying while its PULL is on the way; BEGIN confirms it.
   */
  segment?: ShmSegmentRef;
}
/** Request/reply chunks over NATS: fallback for small KV only. */
export interface NatsEndpoint {
  transport: "nats";
  subject: string;
  maxBytes: number;
}
/**
 * Device to device (CUDA IPC): the importing executor copies the exporter's blocks straight from its device memory,
 * described by an opaque executor descriptor. Chosen only when the puller's sink can import device KV on a device
 * that reaches the offering one (by default the same GPU: equal `deviceUuid`, equal `hostId`). The lease, ack and
 * release go over the offering server's TCP connection at `host`:`port` (as for shm); no KV byte crosses it.
 */
export interface CudaIpcEndpoint {
  transport: "cuda-ipc";
  /** Identity of the offering host, as for shm. */
  hostId: string;
  /** The exporting executor's device ("GPU-" + UUID for CUDA). */
  deviceUuid: string;
  /** The executor's device descriptor of the export (CUDA IPC handle, block offsets, checksum), base64. */
  descriptor: string;
  /** The offering server's control connection (lease, ack). */
  host: string;
  port: number;
}
/** Engine-native transfer: the engine (TensorRT-LLM cache transceiver) moves the bytes itself. */
export interface EngineEndpoint {
  transport: "engine";
  /** Opaque engine state (e.g. serialized ContextPhaseParams), base64. */
  state: string;
}
export type KvEndpoint = CudaIpcEndpoint | TcpEndpoint | ShmEndpoint | NatsEndpoint | EngineEndpoint;
export type KvTransportName = KvEndpoint["transport"];
/** Endpoints that name the offering server's TCP listener (the control path for acks, nacks and device leases). */
export type KvControlEndpoint = TcpEndpoint | ShmEndpoint | CudaIpcEndpoint;

/** Transports in order of preference. */
export const TRANSPORT_PREFERENCE: readonly KvTransportName[] = ["cuda-ipc", "engine", "shm", "tcp", "nats"];

/** Random bytes of an offer's secret (256 bits); a handle carries them as 64 lowercase hex digits. */
export const OFFER_SECRET_BYTES = 32;
export const OFFER_SECRET_HEX = new RegExp(`^[0-9a-f]{${OFFER_SECRET_BYTES * 2}}$`);

/** Largest device descriptor a handle may carry (decoded bytes; a handle rides in a request-plane reply). */
export const MAX_DEVICE_DESCRIPTOR_BYTES = 256 * 1024;
/** Device ids ("GPU-" + UUID for CUDA) are printable ASCII, at most this long (the ABI's buffer is 64 bytes). */
export const MAX_DEVICE_UUID_LENGTH = 63;
const DEVICE_UUID = /^[\x21-\x7e]+$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The offering server's TCP listener as named by the handle (first such endpoint), if any. */
export function controlEndpoint(handle: KvHandle): KvControlEndpoint | undefined {
  return handle.endpoints.find((e): e is KvControlEndpoint => e.transport === "tcp" || e.transport === "shm" || e.transport === "cuda-ipc");
}

/** Whether `uuid` is a device id a handle may carry. */
export function validDeviceUuid(uuid: unknown): uuid is string {
  return typeof uuid === "string" && uuid.length > 0 && uuid.length <= MAX_DEVICE_UUID_LENGTH && DEVICE_UUID.test(uuid);
}

/**
 * The small, serializable description of an offer, handed from prefill to decode (e.g. in a NATS reply).
 * v1: `checksum.digest` is present (the KV was staged and checksummed at offer time). v2: it may be absent (an
 * offer with a device path, staged only when a host transfer starts: that transfer's BEGIN carries the digest; or an
 * offer staged in the turn after it was made, `deferStaging`: BEGIN, or its shm segment's header, carries it).
 */
export interface KvHandle {
  v: 1 | 2;
  /** Offer id, 32 hex digits. */
  id: string;
  /**
   * The offer's secret, 64 hex digits: the offering side serves (and releases) the offer only to a peer presenting
   * it, so the handle is the capability to the KV. Keep it out of logs; the id is what names the offer.
   */
  secret: string;
  layout: KvLayout;
  numTokens: number;
  bytes: number;
  checksum: { algorithm: typeof CHECKSUM_ALGORITHM; chunkBytes: number; chunks: number; digest?: string };
  /** Where to fetch it, best first as the offering side sees it; the puller negotiates. */
  endpoints: KvEndpoint[];
  /** Epoch milliseconds after which the offering side releases the KV. */
  expiresAt: number;
}

const HEX32 = /^[0-9a-f]{32}$/;

function bad(msg: string): never {
  throw new KvInvalidHandleError(`invalid KV handle: ${msg}`);
}
function posInt(v: unknown, name: string, allowZero = false): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < (allowZero ? 0 : 1)) bad(`${name} must be a ${allowZero ? "non-negative" : "positive"} integer`);
  return v;
}
function kvDtype(v: unknown): KvDtype {
  if (!isKvDtype(v)) bad(`layout.dtype must be one of ${KV_DTYPES.join(", ")}`);
  return v;
}
function str(v: unknown, name: string): string {
  if (typeof v !== "string" || v.length === 0) bad(`${name} must be a non-empty string`);
  return v;
}

function parseEndpoint(e: unknown, i: number): KvEndpoint | null {
  if (typeof e !== "object" || e === null) bad(`endpoints[${i}] must be an object`);
  const o = e as Record<string, unknown>;
  switch (o.transport) {
    case "tcp":
      return { transport: "tcp", host: str(o.host, "tcp host"), port: posInt(o.port, "tcp port") };
    case "shm": {
      const ep: ShmEndpoint = { transport: "shm", hostId: str(o.hostId, "shm hostId"), host: str(o.host, "shm host"), port: posInt(o.port, "shm port") };
      if (o.segment !== undefined) {
        const g = (typeof o.segment === "object" && o.segment !== null ? o.segment : bad("shm segment must be an object")) as Record<string, unknown>;
        ep.segment = { pid: posInt(g.pid, "shm segment pid"), fd: posInt(g.fd, "shm segment fd", true), ino: posInt(g.ino, "shm segment ino", true), capacity: posInt(g.capacity, "shm segment capacity") };
      }
      return ep;
    }
    case "nats":
      return { transport: "nats", subject: str(o.subject, "nats subject"), maxBytes: posInt(o.maxBytes, "nats maxBytes") };
    case "engine":
      return { transport: "engine", state: str(o.state, "engine state") };
    case "cuda-ipc": {
      if (!validDeviceUuid(o.deviceUuid)) bad(`cuda-ipc deviceUuid must be 1 to ${MAX_DEVICE_UUID_LENGTH} printable ASCII characters`);
      const d = str(o.descriptor, "cuda-ipc descriptor");
      // base64 of at most MAX_DEVICE_DESCRIPTOR_BYTES: checked on the text, before anything is decoded
      if (d.length % 4 !== 0 || !BASE64.test(d)) bad("cuda-ipc descriptor must be base64");
      if ((d.length / 4) * 3 - (d.endsWith("==") ? 2 : d.endsWith("=") ? 1 : 0) > MAX_DEVICE_DESCRIPTOR_BYTES) {
        bad(`cuda-ipc descriptor exceeds ${MAX_DEVICE_DESCRIPTOR_BYTES} bytes`);
      }
      return {
        transport: "cuda-ipc",
        hostId: str(o.hostId, "cuda-ipc hostId"),
        deviceUuid: o.deviceUuid,
        descriptor: d,
        host: str(o.host, "cuda-ipc host"),
        port: posInt(o.port, "cuda-ipc port"),
      };
    }
    default:
      return null; // a transport from a newer peer: ignored, not fatal
  }
}

/** Validates a handle (parsed JSON or object) and returns a clean copy; throws KvInvalidHandleError. */
export function parseKvHandle(input: unknown): KvHandle {
  let o: unknown = input;
  if (typeof input === "string") {
    try {
      o = JSON.parse(input);
    } catch (err) {
      throw new KvInvalidHandleError("invalid KV handle: not JSON", { cause: err });
    }
  }
  if (typeof o !== "object" || o === null) bad("must be an object");
  const h = o as Record<string, unknown>;
  if (h.v !== 1 && h.v !== 2) bad(`unsupported version ${String(h.v)} (this side speaks 1 and 2)`);
  if (typeof h.id !== "string" || !HEX32.test(h.id)) bad("id must be 32 lowercase hex digits");
  // the value is never quoted: a handle's secret must not reach an error message or a log
  if (typeof h.secret !== "string" || !OFFER_SECRET_HEX.test(h.secret)) bad(`secret must be ${OFFER_SECRET_BYTES * 2} lowercase hex digits (a handle from a peer without offer secrets?)`);
  const l = h.layout as Record<string, unknown> | undefined;
  if (typeof l !== "object" || l === null) bad("layout missing");
  const layout: KvLayout = {
    fingerprint: str(l.fingerprint, "layout.fingerprint"),
    numLayers: posInt(l.numLayers, "layout.numLayers"),
    numKvHeads: posInt(l.numKvHeads, "layout.numKvHeads"),
    headDim: posInt(l.headDim, "layout.headDim"),
    dtype: kvDtype(l.dtype),
    tokensPerBlock: posInt(l.tokensPerBlock, "layout.tokensPerBlock"),
    bytesPerBlock: posInt(l.bytesPerBlock, "layout.bytesPerBlock"),
  };
  const c = h.checksum as Record<string, unknown> | undefined;
  if (typeof c !== "object" || c === null) bad("checksum missing");
  if (c.algorithm !== CHECKSUM_ALGORITHM) bad(`checksum algorithm ${String(c.algorithm)} not supported`);
  // v2 (staged on pull) may leave the digest out: the transfer's BEGIN carries it then.
  const digestAbsent = h.v === 2 && c.digest === undefined;
  if (!digestAbsent && (typeof c.digest !== "string" || !/^[0-9a-f]{8}$/.test(c.digest))) bad("checksum.digest must be 8 hex digits");
  const bytes = posInt(h.bytes, "bytes", true);
  const chunkBytes = posInt(c.chunkBytes, "checksum.chunkBytes");
  const chunks = posInt(c.chunks, "checksum.chunks", true);
  if (chunks !== Math.ceil(bytes / chunkBytes)) bad("checksum.chunks does not match bytes / chunkBytes");
  if (!Array.isArray(h.endpoints)) bad("endpoints must be an array");
  const endpoints = h.endpoints.map(parseEndpoint).filter((e): e is KvEndpoint => e !== null);
  if (typeof h.expiresAt !== "number" || !Number.isFinite(h.expiresAt)) bad("expiresAt must be epoch milliseconds");
  return {
    v: h.v,
    id: h.id,
    secret: h.secret,
    layout,
    numTokens: posInt(h.numTokens, "numTokens", true),
    bytes,
    checksum: { algorithm: CHECKSUM_ALGORITHM, chunkBytes, chunks, ...(digestAbsent ? {} : { digest: c.digest as string }) },
    endpoints,
    expiresAt: h.expiresAt,
  };
}

/** JSON text of a handle (what travels on the request plane). */
export function serializeKvHandle(handle: KvHandle): string {
  return JSON.stringify(handle);
}
