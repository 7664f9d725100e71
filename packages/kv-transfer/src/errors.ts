/** Error codes of @trtd/kv-transfer; they also travel on the wire in ERROR/NACK frames. */
export const KvErrorCodes = {
  LayoutMismatch: "KV_LAYOUT_MISMATCH",
  ChecksumMismatch: "KV_CHECKSUM_MISMATCH",
  OfferNotFound: "KV_OFFER_NOT_FOUND",
  OfferExpired: "KV_OFFER_EXPIRED",
  Timeout: "KV_TIMEOUT",
  PeerLost: "KV_PEER_LOST",
  PayloadTooLarge: "KV_PAYLOAD_TOO_LARGE",
  NoTransport: "KV_NO_TRANSPORT",
  Aborted: "KV_ABORTED",
  Protocol: "KV_PROTOCOL",
  SizeMismatch: "KV_SIZE_MISMATCH",
  InvalidHandle: "KV_INVALID_HANDLE",
  Closed: "KV_CLOSED",
  Transport: "KV_TRANSPORT",
  Unauthorized: "KV_UNAUTHORIZED",
  LeaseExpired: "KV_LEASE_EXPIRED",
} as const;
export type KvErrorCode = (typeof KvErrorCodes)[keyof typeof KvErrorCodes];

/** Base class of every kv-transfer failure. After any of them the caller can recompute the prefill. */
export class KvTransferError extends Error {
  readonly code: KvErrorCode;
  constructor(code: KvErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "KvTransferError";
    this.code = code;
  }
}

/** The two sides' KV layouts differ (model, layers, heads, head dim, dtype or tokens per block). */
export class KvLayoutMismatchError extends KvTransferError {
  readonly fields: string[];
  constructor(message: string, fields: string[] = [], options?: { cause?: unknown }) {
    super(KvErrorCodes.LayoutMismatch, message, options);
    this.name = "KvLayoutMismatchError";
    this.fields = fields;
  }
}

/** A chunk's bytes (or the whole-KV digest) do not match the checksum computed when the KV was offered. */
export class KvChecksumError extends KvTransferError {
  readonly seq: number;
  constructor(message: string, seq = -1, options?: { cause?: unknown }) {
    super(KvErrorCodes.ChecksumMismatch, message, options);
    this.name = "KvChecksumError";
    this.seq = seq;
  }
}

/** The offering side does not know the offer (never made, already pulled, released or expired there). */
export class KvOfferNotFoundError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.OfferNotFound, message, options);
    this.name = "KvOfferNotFoundError";
  }
}

/** The handle's expiry has passed; nothing was contacted. */
export class KvOfferExpiredError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.OfferExpired, message, options);
    this.name = "KvOfferExpiredError";
  }
}

/** Connect, transfer, idle or acknowledgement time ran out. */
export class KvTimeoutError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.Timeout, message, options);
    this.name = "KvTimeoutError";
  }
}

/** The peer went away (connection closed or reset, no responders) before the transfer finished. */
export class KvPeerLostError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.PeerLost, message, options);
    this.name = "KvPeerLostError";
  }
}

/** The KV is larger than a transport accepts (the NATS fallback is for small KV only). */
export class KvPayloadTooLargeError extends KvTransferError {
  readonly bytes: number;
  readonly limit: number;
  constructor(message: string, bytes: number, limit: number, options?: { cause?: unknown }) {
    super(KvErrorCodes.PayloadTooLarge, message, options);
    this.name = "KvPayloadTooLargeError";
    this.bytes = bytes;
    this.limit = limit;
  }
}

/** No transport is available to both sides. */
export class KvNoTransportError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.NoTransport, message, options);
    this.name = "KvNoTransportError";
  }
}

/** The caller's AbortSignal fired. */
export class KvAbortedError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.Aborted, message, options);
    this.name = "KvAbortedError";
  }
}

/** The peer sent something this protocol version does not allow. */
export class KvProtocolError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.Protocol, message, options);
    this.name = "KvProtocolError";
  }
}

/** The sink's (or source's) byte size does not match the handle. */
export class KvSizeMismatchError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.SizeMismatch, message, options);
    this.name = "KvSizeMismatchError";
  }
}

/** A handle failed validation (wrong version, missing or malformed fields). */
export class KvInvalidHandleError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.InvalidHandle, message, options);
    this.name = "KvInvalidHandleError";
  }
}

/** The server or puller was closed while the operation was pending. */
export class KvClosedError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.Closed, message, options);
    this.name = "KvClosedError";
  }
}

/** A transport failed for another reason (shared-memory file, NATS, engine import). */
export class KvTransportError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.Transport, message, options);
    this.name = "KvTransportError";
  }
}

/** Why the offering side refused a pull or a release: the puller presented no offer secret, or a wrong one. */
export const KvPullRefusalReasons = ["missing_secret", "bad_secret"] as const;
export type KvPullRefusalReason = (typeof KvPullRefusalReasons)[number];

/**
 * The offering side refused a pull (or an ack/nack) whose offer secret was missing or wrong. The offer is left as it
 * was: the puller that holds the handle can still pull it.
 */
export class KvUnauthorizedError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.Unauthorized, message, options);
    this.name = "KvUnauthorizedError";
  }
}

/**
 * A late pull (or ack): the offering side reclaimed the offer when its lease (the handle's `expiresAt`) ran out, and
 * its blocks were released then. Answered by the offering side to the holder of the handle (right secret) for an
 * offer it reclaimed at expiry; the decode side recomputes the prompt.
 */
export class KvLeaseExpiredError extends KvTransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(KvErrorCodes.LeaseExpired, message, options);
    this.name = "KvLeaseExpiredError";
  }
}

/**
 * Why a pull failed, as the decode side counts it (`trtd_kv_pull_failures_total{reason}`): the lease ran out
 * (late pull: `KV_LEASE_EXPIRED`, or `KV_OFFER_EXPIRED` checked before contacting anyone), the offering side refused
 * the secret, the transport broke (peer lost, connection, shm/NATS/engine error, protocol, no transport), a deadline
 * ran out, a checksum did not match, the two sides are incompatible (layout, size, malformed handle), the offer was
 * unknown there (already pulled, withdrawn, never made), or something else (not a kv-transfer error).
 */
export const KvPullFailureReasons = ["lease_expired", "unauthorized", "transport", "timeout", "checksum", "incompatible", "not_found", "aborted", "other"] as const;
export type KvPullFailureReason = (typeof KvPullFailureReasons)[number];

/** The reason a failed pull is counted under (see KvPullFailureReasons). */
export function kvPullFailureReason(err: unknown): KvPullFailureReason {
  if (!(err instanceof KvTransferError)) return "other";
  switch (err.code) {
    case KvErrorCodes.LeaseExpired:
    case KvErrorCodes.OfferExpired:
      return "lease_expired";
    case KvErrorCodes.Unauthorized:
      return "unauthorized";
    case KvErrorCodes.Timeout:
      return "timeout";
    case KvErrorCodes.ChecksumMismatch:
      return "checksum";
    case KvErrorCodes.LayoutMismatch:
    case KvErrorCodes.SizeMismatch:
    case KvErrorCodes.InvalidHandle:
      return "incompatible";
    case KvErrorCodes.OfferNotFound:
      return "not_found";
    case KvErrorCodes.Aborted:
      return "aborted";
    case KvErrorCodes.PeerLost:
    case KvErrorCodes.Transport:
    case KvErrorCodes.Protocol:
    case KvErrorCodes.Closed:
    case KvErrorCodes.NoTransport:
    case KvErrorCodes.PayloadTooLarge:
      return "transport";
  }
}

/** Rebuilds a typed error from a code received from the peer. */
export function errorFromCode(code: string, message: string): KvTransferError {
  switch (code) {
    case KvErrorCodes.LayoutMismatch: return new KvLayoutMismatchError(message);
    case KvErrorCodes.ChecksumMismatch: return new KvChecksumError(message);
    case KvErrorCodes.OfferNotFound: return new KvOfferNotFoundError(message);
    case KvErrorCodes.OfferExpired: return new KvOfferExpiredError(message);
    case KvErrorCodes.Timeout: return new KvTimeoutError(message);
    case KvErrorCodes.PeerLost: return new KvPeerLostError(message);
    case KvErrorCodes.PayloadTooLarge: return new KvPayloadTooLargeError(message, -1, -1);
    case KvErrorCodes.NoTransport: return new KvNoTransportError(message);
    case KvErrorCodes.SizeMismatch: return new KvSizeMismatchError(message);
    case KvErrorCodes.InvalidHandle: return new KvInvalidHandleError(message);
    case KvErrorCodes.Closed: return new KvClosedError(message);
    case KvErrorCodes.Transport: return new KvTransportError(message);
    case KvErrorCodes.Unauthorized: return new KvUnauthorizedError(message);
    case KvErrorCodes.LeaseExpired: return new KvLeaseExpiredError(message);
    default: return new KvProtocolError(`peer error ${code}: ${message}`);
  }
}

/** Wraps anything thrown into a KvTransferError (typed errors pass through). */
export function asKvError(err: unknown, fallback: (e: unknown) => KvTransferError): KvTransferError {
  return err instanceof KvTransferError ? err : fallback(err);
}
