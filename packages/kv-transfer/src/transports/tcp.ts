import type { ShmEndpoint, TcpEndpoint } from "../handle.js";
import type { PullerEnv, PullJob, PullTransport } from "./types.js";

/**
 * Pulls over a pooled TCP connection to the offering server (also the control connection of shm): the bytes go
 * from the kernel straight into the sink's views. A cuda-ipc lease left in `job.lease` is continued on its connection.
 */
export async function pullOverConnection(ep: TcpEndpoint | ShmEndpoint, job: PullJob, env: PullerEnv): Promise<void> {
  const map = job.segments();
  const conn = job.lease ?? (await env.pool.acquire(ep.host, ep.port, Math.min(env.connectTimeoutMs, Math.max(1, job.deadline - Date.now())), job.signal));
  job.lease = undefined;
  try {
    await conn.pull(job.handle, map, ep.transport, { hostId: env.hostId, deadline: job.deadline, idleMs: env.idleTimeoutMs, signal: job.signal });
  } finally {
    env.pool.release(conn);
  }
}

/** A lease continues on its own connection: the endpoint must name the same server. */
export function continuesOn(ep: TcpEndpoint | ShmEndpoint, job: PullJob): boolean {
  return job.lease === undefined || job.lease.key === `${ep.host}:${ep.port}`;
}

export const tcpTransport: PullTransport<TcpEndpoint> = {
  name: "tcp",
  sizeCheck: "segments",
  releasesOnFailure: true, // the server releases the offer when the connection drops
  usable: () => true,
  canContinue: continuesOn,
  pull: pullOverConnection,
};

