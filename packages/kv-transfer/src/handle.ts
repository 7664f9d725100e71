import { KvInvalidHandleError } from "./errors.js";
import { CHECKSUM_ALGORITHM } from "./checksum.js";
import type { KvLayout } from "./layout.js";

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
}
/** Request/reply chunks over NATS: fallback for small KV only. */
export interface NatsEndpoint {
  transport: "nats";
  subject: string;
  maxBytes: number;
}
/** Engine-native transfer: the engine (TensorRT-LLM cache transceiver) moves the bytes itself. */
export interface EngineEndpoint {
  transport: "engine";
  /** Opaque engine state (e.g. serialized ContextPhaseParams), base64. */
  state: string;
}
export type KvEndpoint = TcpEndpoint | ShmEndpoint | NatsEndpoint | EngineEndpoint;
export type KvTransportName = KvEndpoint["transport"];

/** Transports in order of preference. */
export const TRANSPORT_PREFERENCE: readonly KvTransportName[] = ["engine", "shm", "tcp", "nats"];

/** The small, serializable description of an offer, handed from prefill to decode (e.g. in a NATS reply). */
export interface KvHandle {
  v: 1;
  /** Offer id, 32 hex digits. */
  id: string;
  layout: KvLayout;
  numTokens: number;
  bytes: number;
  checksum: { algorithm: typeof CHECKSUM_ALGORITHM; chunkBytes: number; chunks: number; digest: string };
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
    case "shm":
      return { transport: "shm", hostId: str(o.hostId, "shm hostId"), host: str(o.host, "shm host"), port: posInt(o.port, "shm port") };
    case "nats":
      return { transport: "nats", subject: str(o.subject, "nats subject"), maxBytes: posInt(o.maxBytes, "nats maxBytes") };
    case "engine":
      return { transport: "engine", state: str(o.state, "engine state") };
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
  if (h.v !== 1) bad(`unsupported version ${String(h.v)} (this side speaks 1)`);
  if (typeof h.id !== "string" || !HEX32.test(h.id)) bad("id must be 32 lowercase hex digits");
  const l = h.layout as Record<string, unknown> | undefined;
  if (typeof l !== "object" || l === null) bad("layout missing");
  const layout: KvLayout = {
    fingerprint: str(l.fingerprint, "layout.fingerprint"),
    model: str(l.model, "layout.model"),
    numLayers: posInt(l.numLayers, "layout.numLayers"),
    numKvHeads: posInt(l.numKvHeads, "layout.numKvHeads"),
    headDim: posInt(l.headDim, "layout.headDim"),
    dtype: str(l.dtype, "layout.dtype"),
    tokensPerBlock: posInt(l.tokensPerBlock, "layout.tokensPerBlock"),
    bytesPerBlock: posInt(l.bytesPerBlock, "layout.bytesPerBlock"),
  };
  const c = h.checksum as Record<string, unknown> | undefined;
  if (typeof c !== "object" || c === null) bad("checksum missing");
  if (c.algorithm !== CHECKSUM_ALGORITHM) bad(`checksum algorithm ${String(c.algorithm)} not supported`);
  if (typeof c.digest !== "string" || !/^[0-9a-f]{8}$/.test(c.digest)) bad("checksum.digest must be 8 hex digits");
  const bytes = posInt(h.bytes, "bytes", true);
  const chunkBytes = posInt(c.chunkBytes, "checksum.chunkBytes");
  const chunks = posInt(c.chunks, "checksum.chunks", true);
  if (chunks !== Math.ceil(bytes / chunkBytes)) bad("checksum.chunks does not match bytes / chunkBytes");
  if (!Array.isArray(h.endpoints)) bad("endpoints must be an array");
  const endpoints = h.endpoints.map(parseEndpoint).filter((e): e is KvEndpoint => e !== null);
  if (typeof h.expiresAt !== "number" || !Number.isFinite(h.expiresAt)) bad("expiresAt must be epoch milliseconds");
  return {
    v: 1,
    id: h.id,
    layout,
    numTokens: posInt(h.numTokens, "numTokens", true),
    bytes,
    checksum: { algorithm: CHECKSUM_ALGORITHM, chunkBytes, chunks, digest: c.digest },
    endpoints,
    expiresAt: h.expiresAt,
  };
}

/** JSON text of a handle (what travels on the request plane). */
export function serializeKvHandle(handle: KvHandle): string {
  return JSON.stringify(handle);
}
