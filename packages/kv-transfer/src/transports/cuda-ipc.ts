import { KvAbortedError } from "../errors.js";
import type { CudaIpcEndpoint } from "../handle.js";
import { controlOverConnection } from "./tcp.js";
import { KvFallbackError, type PullTransport } from "./types.js";

/**
 * Device to device: the offering server leases the offer to a pooled TCP connection (claimed, nothing sent),
 * the sink's executor copies the blocks straight from the exporter's device memory (`importDevice(descriptor)`,
 * which verifies the executor's own checksum), then ACK releases the export. If the device import throws
 * (UNSUPPORTED: this device cannot reach that memory, or any error), the pull falls back to the next transport
 * on the same connection (the lease keeps the offer claimed meanwhile), see KvPuller.
 *
 * Chosen only when the sink can import device KV, its device can reach the offer's (`canReachDevice`; by default
 * the same GPU, i.e. equal device UUIDs) and the offer comes from this host.
 */
export const cudaIpcTransport: PullTransport<CudaIpcEndpoint> = {
  name: "cuda-ipc",
  sizeCheck: "bytes",
  releasesOnFailure: true, // failures drop the leased connection, which releases the offer
  usable: (ep, _handle, sink, env) =>
    typeof sink?.importDevice === "function" &&
    typeof sink.deviceUuid === "string" &&
    ep.hostId === env.hostId &&
    env.canReachDevice(sink.deviceUuid, ep.deviceUuid),
  canContinue: () => false, // first in the preference order: nothing falls back to it
  async pull(ep, job, env) {
    const { handle, sink } = job;
    const conn = await env.pool.acquire(ep.host, ep.port, Math.min(env.connectTimeoutMs, Math.max(1, job.deadline - Date.now())), job.signal);
    let handedOver = false;
    try {
      await conn.lease(handle, { hostId: env.hostId, deadline: job.deadline, idleMs: env.idleTimeoutMs, signal: job.signal });
      try {
        await sink.importDevice!(Buffer.from(ep.descriptor, "base64"));
      } catch (err) {
        if (job.signal?.aborted || !conn.holdsLease(handle.id)) throw err;
        job.lease = conn; // the next transport continues on this connection; the puller destroys it otherwise
        handedOver = true;
        throw new KvFallbackError("cuda-ipc", err);
      }
      if (job.signal?.aborted) throw new KvAbortedError("pull aborted", { cause: job.signal.reason });
      // The copy is complete and verified by the executor. A connection that dropped meanwhile has released the
      // offer already (the import is good all the same); otherwise the ACK releases it.
      if (conn.holdsLease(handle.id)) conn.ackLease(handle.id);
    } catch (err) {
      if (!handedOver) conn.destroy(); // releases the lease on the offering side
      throw err;
    } finally {
      if (!handedOver) env.pool.release(conn);
    }
  },  control: controlOverConnection,
};
