import type { NatsEndpoint } from "../handle.js";
import { natsControl, natsPull } from "../nats-transport.js";
import type { PullTransport } from "./types.js";

/**
 * Request/reply chunks over the request plane (`RequestPlane.request`, on NATS or in-process): small KV only (see
 * nats-transport.ts). The name is the wire's: handles have always called this endpoint "nats".
 */
export const natsTransport: PullTransport<NatsEndpoint> = {
  name: "nats",
  sizeCheck: "segments",
  releasesOnFailure: false, // the puller NACKs over NATS
  usable: (ep, handle, _sink, env) => env.requestPlane !== undefined && ep.maxBytes >= handle.bytes,
  // A leased offer is held by a TCP connection: NATS cannot serve it.
  canContinue: (_ep, job) => job.lease === undefined,
  pull: (ep, job, env) =>
    natsPull(env.requestPlane!, ep, job.handle, job.segments(), { deadline: job.deadline, signal: job.signal, requestTimeoutMs: Math.min(env.idleTimeoutMs, 10_000) }),
  control: (ep, plane) => (plane ? (handle, type, timeoutMs) => natsControl(plane, ep, handle, type, timeoutMs) : undefined),
};
