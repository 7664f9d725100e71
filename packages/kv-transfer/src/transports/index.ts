import type { KvEndpoint, KvTransportName } from "../handle.js";
import { cudaIpcTransport } from "./cuda-ipc.js";
import { engineTransport } from "./engine.js";
import { natsTransport } from "./nats.js";
import { shmTransport } from "./shm.js";
import { tcpTransport } from "./tcp.js";
import type { PullTransport } from "./types.js";

/** The pulling side's transports, by name (preference order: TRANSPORT_PREFERENCE in handle.ts). */
export const PULL_TRANSPORTS: { readonly [K in KvTransportName]: PullTransport<Extract<KvEndpoint, { transport: K }>> } = {
  "cuda-ipc": cudaIpcTransport,
  engine: engineTransport,
  shm: shmTransport,
  tcp: tcpTransport,
  nats: natsTransport,
};

/** The transport of an endpoint, typed loosely (its endpoint type is checked by the table above). */
export function transportOf(ep: KvEndpoint): PullTransport {
  return PULL_TRANSPORTS[ep.transport] as unknown as PullTransport;
}

export { KvFallbackError } from "./types.js";
export type { ControlSender, NegotiationSink, PullerEnv, PullJob, PullTransport } from "./types.js";
