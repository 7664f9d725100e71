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
}

export type TransportStatus = "connected" | "disconnected" | "reconnecting" | "reconnected" | "closed";

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
  /** Drains subscriptions and closes. Idempotent. */
  close(): Promise<void>;
}
