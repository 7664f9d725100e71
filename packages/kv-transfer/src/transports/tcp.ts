import type { CudaIpcEndpoint, KvHandle, ShmEndpoint, TcpEndpoint } from "../handle.js";
import { PullConnection } from "../tcp-client.js";
import { controlFrame, FrameType, type ReleaseBody } from "../wire.js";
import type { ControlSender, PullerEnv, PullJob, PullTransport } from "./types.js";

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

/**
 * The offering server's TCP listener is the control path of tcp, shm and cuda-ipc endpoints: one control frame on
 * a fresh connection (rare: engine acks, early nacks).
 */
export function controlOverConnection(ep: TcpEndpoint | ShmEndpoint | CudaIpcEndpoint): ControlSender {
  return async (handle: KvHandle, type: "ack" | "nack", timeoutMs: number) => {
    const conn = await PullConnection.connect(ep.host, ep.port, timeoutMs);
    try {
      const body: ReleaseBody = { secret: handle.secret };
      const frame = type === "ack" ? FrameType.Ack : FrameType.Nack;
      await conn.sendAndClose(Buffer.concat(controlFrame(frame, body, Buffer.from(handle.id, "hex"))), timeoutMs);
    } finally {
      conn.destroy();
    }
  };
}

export const tcpTransport: PullTransport<TcpEndpoint> = {
  name: "tcp",
  sizeCheck: "segments",
  releasesOnFailure: true, // the server releases the offer when the connection drops
  usable: () => true,
  canContinue: continuesOn,
  pull: pullOverConnection,
  control: controlOverConnection,
};

