import type { NatsEndpoint } from "../handle.js";
import { natsPull } from "../nats-transport.js";
import type { PullTransport } from "./types.js";

/** Request/reply chunks over the request plane's NATS connection: small KV only (see nats-transport.ts). */
export const natsTransport: PullTransport<NatsEndpoint> = {
  name: "nats",
  sizeCheck: "segments",
  releasesOnFailure: false, // the puller NACKs over NATS
  usable: (ep, handle, _sink, env) => env.nats !== undefined && ep.maxBytes >= handle.bytes,
  // A leased offer is held by a TCP connection: NATS cannot serve it.
  canContinue: (_ep, job) => job.lease === undefined,
  pull: (ep, job, env) =>
    natsPull(env.nats!, ep, job.handle, job.segments(), { deadline: job.deadline, signal: job.signal, requestTimeoutMs: Math.min(env.idleTimeoutMs, 10_000) }),
};
