/**
 * The core seam: the request plane's protocol (serve, client, discovery) is written once against this
 * interface; NATS and in-process are its two implementations (nats.js keeps transports apart the same way).
 */
export interface TransportMsg {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly reply?: string;
  /** A status message meaning "nobody was subscribed to the subject you published to with this reply". */
  readonly noResponders: boolean;
}

export interface TransportSubscription {
  unsubscribe(): void;
}

export interface TransportPublishOptions {
  /** Reply subject. If nobody is subscribed to the target subject, a `noResponders` message arrives here. */
  reply?: string;
}

export interface TransportSubscribeOptions {
  /** Queue group: each message goes to one member of the group. */
  queue?: string;
  /** Called once if the transport ends the subscription itself (NATS: the account may not subscribe there). */
  onError?: (err: Error) => void;
}

export type TransportStatus = "connected" | "disconnected" | "reconnecting" | "reconnected" | "closed";

/** What a transport that knows a service standard (NATS micro) needs to expose an instance to its tooling. */
export interface TransportServiceRegistration {
  /** Letters, digits, `-`, `_`. */
  name: string;
  version: string;
  description: string;
  metadata: Record<string, string>;
  /** Endpoints: their messages are delivered to `callback` like a subscription's. */
  endpoints: Array<{ name: string; subject: string; queue?: string; callback: (msg: TransportMsg) => void }>;
  /** Extra data reported by the service's STATS verb (load metrics). */
  stats: () => unknown;
}

export interface TransportService {
  /** Service id the tooling shows. */
  readonly id: string;
  stop(): Promise<void>;
}

export interface Transport {
  readonly kind: "nats" | "in-process";
  /** Largest message the transport accepts, in bytes (NATS: the server's `max_payload`). */
  readonly maxPayload: number;
  readonly isClosed: boolean;
  publish(subject: string, data: Uint8Array, options?: TransportPublishOptions): void;
  subscribe(subject: string, callback: (msg: TransportMsg) => void, options?: TransportSubscribeOptions): TransportSubscription;
  newInbox(): string;
  /** Resolves when everything published so far reached the server (NATS) or was delivered (in-process). */
  flush(): Promise<void>;
  /** Subscribe to connection status changes; returns an unsubscribe function. */
  onStatus(listener: (status: TransportStatus) => void): () => void;
  /**
   * Optional: serve endpoints as a standard service (NATS: a `$SRV` micro service visible to `nats micro ls`).
   * Transports without it get plain subscriptions. Rejects when the transport refuses it (NATS permissions).
   */
  registerService?(registration: TransportServiceRegistration): Promise<TransportService>;
  /** Drains subscriptions and closes. Idempotent. */
  close(): Promise<void>;
}
