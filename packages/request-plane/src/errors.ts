/** Error codes of the request plane, stable strings that also travel in error frames. */
export const RequestPlaneErrorCode = {
  NoResponders: "no_responders",
  Timeout: "timeout",
  Cancelled: "cancelled",
  Remote: "remote_error",
  PayloadTooLarge: "payload_too_large",
  ServerGone: "server_gone",
  StreamBroken: "stream_broken",
  InvalidName: "invalid_name",
  Closed: "closed",
  Codec: "codec_error",
  Connection: "connection_error",
  NatsServerNotFound: "nats_server_not_found",
  NatsServerStart: "nats_server_start_failed",
  PermissionDenied: "permission_denied",
} as const;
export type RequestPlaneErrorCode = (typeof RequestPlaneErrorCode)[keyof typeof RequestPlaneErrorCode];

/** Base class: every request-plane failure has a `code` from {@link RequestPlaneErrorCode}. */
export class RequestPlaneError extends Error {
  readonly code: RequestPlaneErrorCode;
  constructor(code: RequestPlaneErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RequestPlaneError";
    this.code = code;
  }
}

/** Nobody serves the subject (no instance, or the chosen instance is gone). */
export class NoRespondersError extends RequestPlaneError {
  readonly subject: string;
  constructor(subject: string, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.NoResponders, `no responders for ${subject}`, options);
    this.name = "NoRespondersError";
    this.subject = subject;
  }
}

/** A deadline or a bounded wait expired. */
export class TimeoutError extends RequestPlaneError {
  constructor(message: string, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.Timeout, message, options);
    this.name = "TimeoutError";
  }
}

/** The caller (or the server shutting down) cancelled the request. */
export class CancelledError extends RequestPlaneError {
  constructor(message = "request cancelled", options?: ErrorOptions) {
    super(RequestPlaneErrorCode.Cancelled, message, options);
    this.name = "CancelledError";
  }
}

/** The handler failed; `remoteCode`/`remoteName` come from the handler's error when it had them. */
export class RemoteError extends RequestPlaneError {
  readonly remoteCode: string | undefined;
  readonly remoteName: string | undefined;
  readonly instanceId: string | undefined;
  constructor(message: string, remote: { code?: string; name?: string; instanceId?: string } = {}, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.Remote, message, options);
    this.name = "RemoteError";
    this.remoteCode = remote.code;
    this.remoteName = remote.name;
    this.instanceId = remote.instanceId;
  }
}

/** A message is larger than the transport's max payload; detected before sending. */
export class PayloadTooLargeError extends RequestPlaneError {
  readonly size: number;
  readonly maxPayload: number;
  constructor(size: number, maxPayload: number, what = "payload", options?: ErrorOptions) {
    super(RequestPlaneErrorCode.PayloadTooLarge, `${what} of ${size} bytes exceeds max payload ${maxPayload} bytes`, options);
    this.name = "PayloadTooLargeError";
    this.size = size;
    this.maxPayload = maxPayload;
  }
}

/** The serving instance stopped sending heartbeats (crashed, partitioned or the NATS link broke). */
export class ServerGoneError extends RequestPlaneError {
  readonly instanceId: string | undefined;
  constructor(message: string, instanceId?: string, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.ServerGone, message, options);
    this.name = "ServerGoneError";
    this.instanceId = instanceId;
  }
}

/** A reply frame was lost or reordered (sequence gap). */
export class StreamBrokenError extends RequestPlaneError {
  constructor(message: string, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.StreamBroken, message, options);
    this.name = "StreamBrokenError";
  }
}

/** A namespace/component/endpoint name (or instance id) is not lowercase `[a-z0-9-_]`. */
export class InvalidNameError extends RequestPlaneError {
  constructor(message: string, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.InvalidName, message, options);
    this.name = "InvalidNameError";
  }
}

/** The plane (or the served endpoint / client) is closed. */
export class ClosedError extends RequestPlaneError {
  constructor(message = "request plane is closed", options?: ErrorOptions) {
    super(RequestPlaneErrorCode.Closed, message, options);
    this.name = "ClosedError";
  }
}

/** A message could not be encoded or decoded. */
export class CodecError extends RequestPlaneError {
  constructor(message: string, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.Codec, message, options);
    this.name = "CodecError";
  }
}

/** Connecting to NATS failed (bad URI, auth, TLS, server down). */
export class ConnectionError extends RequestPlaneError {
  constructor(message: string, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.Connection, message, options);
    this.name = "ConnectionError";
  }
}

/**
 * The NATS server refused this connection a subscription (or a publish) its account's permissions do not allow,
 * e.g. serving an endpoint of another role.
 */
export class PermissionDeniedError extends RequestPlaneError {
  constructor(message: string, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.PermissionDenied, message, options);
    this.name = "PermissionDeniedError";
  }
}

/** The `nats-server` binary is not installed / not on PATH. */
export class NatsServerNotFoundError extends RequestPlaneError {
  constructor(message: string, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.NatsServerNotFound, message, options);
    this.name = "NatsServerNotFoundError";
  }
}

/** `nats-server` exited early or did not accept connections in time. */
export class NatsServerStartError extends RequestPlaneError {
  constructor(message: string, options?: ErrorOptions) {
    super(RequestPlaneErrorCode.NatsServerStart, message, options);
    this.name = "NatsServerStartError";
  }
}

/** Rebuilds a typed error from an error frame's code and message (client side). */
export function errorFromFrame(
  code: string,
  message: string,
  remote: { name?: string; instanceId?: string; size?: number; maxPayload?: number },
): RequestPlaneError {
  switch (code) {
    case RequestPlaneErrorCode.Timeout:
      return new TimeoutError(message);
    case RequestPlaneErrorCode.Cancelled:
      return new CancelledError(message);
    case RequestPlaneErrorCode.PayloadTooLarge: {
      const e = new PayloadTooLargeError(remote.size ?? 0, remote.maxPayload ?? 0, "reply");
      e.message = `remote: ${message}`;
      return e;
    }
    default:
      return new RemoteError(message, { code, name: remote.name, instanceId: remote.instanceId });
  }
}
