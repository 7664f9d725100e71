// FAULT INJECTION, for reliability tests only, off by default: `TRTD_FAULT_INJECT_KV=corrupt|stall|peer-gone`
// makes this prefill worker hand out KV offers that fail in one named way, so tests can show that decode
// workers fall back to local prefill with unchanged output. Real mechanisms, no mocks:
// - corrupt:   the offer is made (checksums computed), then one byte of the pinned export memory is flipped,
//              so the decode side's checksum check fails on the bytes it really received (host-memory executors:
//              an offer with a device path is staged and checksummed only when a host pull starts, and a cuda-ipc
//              pull never reads the host copy, so this fault does not reach it; the worker turns kv-transfer's
//              single-copy shm staging off under this fault, since a staged offer is copied before the flip;
//              corruption of a staged copy is kv-transfer's own test, test/shm-staging.test.ts);
// - stall:     the offer is withdrawn and the handle points at a listener that accepts and never answers,
//              so the decode side's pull runs into its timeout;
// - peer-gone: the offer is withdrawn and the handle points at a closed port (connection refused).
import { createServer, type Server, type Socket } from "node:net";
import type { KvHandle, KvOfferServer, KvSource } from "@trtd/kv-transfer";

export const KvFaults = { corrupt: "corrupt", stall: "stall", peerGone: "peer-gone" } as const;
export type KvFault = (typeof KvFaults)[keyof typeof KvFaults];

export const KV_FAULT_ENV = "TRTD_FAULT_INJECT_KV";

export class FaultInjectionConfigError extends Error {
  readonly code = "invalid_fault_injection" as const;
  constructor(value: string) {
    super(`${KV_FAULT_ENV}=${value}: expected one of ${Object.values(KvFaults).join(", ")}`);
    this.name = "FaultInjectionConfigError";
  }
}

/** The fault named in the environment, if any. */
export function kvFaultFromEnv(env: NodeJS.ProcessEnv = process.env): KvFault | undefined {
  const v = env[KV_FAULT_ENV];
  if (!v) return undefined;
  if (!(Object.values(KvFaults) as string[]).includes(v)) throw new FaultInjectionConfigError(v);
  return v as KvFault;
}

export interface KvFaultInjector {
  readonly fault: KvFault;
  /** Makes the offer of `kv` (the offer server owns it from here) and returns the faulty handle. */
  offer(offers: KvOfferServer, kv: KvSource): KvHandle;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1 (stall: holds connections open; peer-gone: learns a port, then closes it). */
export async function startKvFaultInjector(fault: KvFault): Promise<KvFaultInjector> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
    s.resume(); // read and drop whatever the puller sends; never answer
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  if (fault === KvFaults.peerGone) await new Promise<void>((r) => server.close(() => r()));
  const redirect = (offers: KvOfferServer, handle: KvHandle): KvHandle => {
    offers.withdraw(handle.id); // the real offer's blocks are released now
    return { ...handle, endpoints: [{ transport: "tcp", host: "127.0.0.1", port }] };
  };
  return {
    fault,
    offer(offers, kv) {
      const handle = offers.offer(kv);
      if (fault !== KvFaults.corrupt) return redirect(offers, handle);
      const first = kv.segments()[0];
      if (first && first.length > 0) first[first.length >> 1] ^= 0x5a;
      return handle;
    },
    async close() {
      for (const s of sockets) s.destroy();
      if (fault !== KvFaults.peerGone) await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
