import type { SegmentMappings } from "../shm-staging.js";
import type { RequestPlane } from "@trtd/request-plane";
import type { KvEndpoint, KvHandle, KvTransportName } from "../handle.js";
import type { KvSink, SegmentMap } from "../segments.js";
import type { ConnectionPool, PullConnection } from "../tcp-client.js";

/** What negotiation looks at in a sink (any KvSink; every field optional: a plain byte sink has none of the import hooks). */
export type NegotiationSink = Partial<Pick<KvSink, "bytes" | "importEngineState" | "importDevice" | "deviceUuid">>;

/** What the puller lends its transports. */
export interface PullerEnv {
  readonly hostId: string;
  /** The request plane, for the "nats" transport (small KV and its control messages); undefined: not used. */
  readonly requestPlane: RequestPlane | undefined;
  readonly pool: ConnectionPool;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Whether this side's device can read the memory of `remoteUuid` (cuda-ipc). */
  canReachDevice(localUuid: string, remoteUuid: string): boolean;
  /** ACK outside a transfer (engine: the engine moved the bytes), over the handle's control path. */
  ack(handle: KvHandle): Promise<void>;
  /** Single-copy shm: this puller's mappings of offering processes' staging segments. */
  readonly segments: SegmentMappings;
}

/** One pull as the transports see it. */
export interface PullJob {
  readonly handle: KvHandle;
  readonly sink: KvSink;
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  /** The sink's segment map (size-checked), built on first use: a device or engine import never needs it. */
  segments(): SegmentMap;
  /**
   * A connection on which the server holds this offer for the puller (a cuda-ipc lease whose device import
   * failed): the next transport continues on it, taking it over (set to undefined). The puller destroys one left.
   */
  lease: PullConnection | undefined;
}

/**
 * One way to move an offer into a sink, on the pulling side. The puller tries the usable endpoints in
 * TRANSPORT_PREFERENCE order; a transport that throws a KvFallbackError hands the pull to the next one.
 */
export interface PullTransport<E extends KvEndpoint = KvEndpoint> {
  readonly name: E["transport"];
  /**
   * What is checked against the handle's size before anyone is contacted: the sink's segment views (transports
   * that fill them), its declared `bytes` (a device import), or nothing (the engine moves its own bytes).
   */
  readonly sizeCheck: "segments" | "bytes" | "none";
  /**
   * When it fails after contacting the offering side, that side has released the offer already (the
   * connection dropped), so no NACK is needed.
   */
  readonly releasesOnFailure: boolean;
  /** Whether this side can use `ep` for this handle and sink (the puller has checked its allowed transports). */
  usable(ep: E, handle: KvHandle, sink: NegotiationSink | undefined, env: PullerEnv): boolean;
  /**
   * Whether this transport can take over a pull another one gave up on (with `job.lease` set when the server
   * holds the offer on a connection: only transports that continue on that connection can).
   */
  canContinue(ep: E, job: PullJob): boolean;
  /** Moves the KV into the sink, verifies it and has the offer released (ack). */
  pull(ep: E, job: PullJob, env: PullerEnv): Promise<void>;
  /**
   * The endpoint's control path, for ACK/NACK outside a transfer (an engine transfer's ACK; a declined or failed
   * pull's NACK): a sender bounded by `timeoutMs`, or undefined when this transport has none or this side cannot
   * reach it. An ACK that fails throws; a NACK is best effort (the offer expires anyway).
   */
  control?(ep: E, requestPlane: RequestPlane | undefined): ControlSender | undefined;
}

/** Sends ACK or NACK for `handle` (see PullTransport.control). */
export type ControlSender = (handle: KvHandle, type: "ack" | "nack", timeoutMs: number) => Promise<void>;

/** Thrown by a transport that could not move the KV but left the offer pullable by the next transport. */
export class KvFallbackError extends Error {
  constructor(
    readonly transport: KvTransportName,
    readonly reason: unknown,
  ) {
    super(`${transport}: ${(reason as Error)?.message ?? String(reason)}`, { cause: reason });
    this.name = "KvFallbackError";
  }
}
