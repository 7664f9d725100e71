import { TRANSPORT_PREFERENCE, type KvTransportName } from "./handle.js";

/** What one transport moved on one side (puller or offer server), since start. */
export interface KvTransportStats {
  /** Transfers that ended with the ack (puller: pulls that returned). */
  completed: number;
  /** Transfers that failed on this transport (a fallback is counted in `fallbacks` instead). */
  failed: number;
  /** Transfers that left this transport for the next one (cuda-ipc: the device import failed). */
  fallbacks: number;
  /** KV bytes of the completed transfers. */
  bytes: number;
  /** Time spent in the completed transfers, seconds (offer server, engine: 0, it only sees the ack). */
  seconds: number;
}

export type KvTransportStatsByName = Record<KvTransportName, KvTransportStats>;

/** Per-transport counters (one instance per puller or offer server). */
export class TransportCounters {
  private readonly by = Object.fromEntries(
    TRANSPORT_PREFERENCE.map((t) => [t, { completed: 0, failed: 0, fallbacks: 0, bytes: 0, seconds: 0 }]),
  ) as KvTransportStatsByName;

  completed(t: KvTransportName, bytes: number, ms: number): void {
    const s = this.by[t];
    s.completed++;
    s.bytes += bytes;
    s.seconds += ms / 1000;
  }

  failed(t: KvTransportName): void {
    this.by[t].failed++;
  }

  fallback(t: KvTransportName): void {
    this.by[t].fallbacks++;
  }

  snapshot(): KvTransportStatsByName {
    return Object.fromEntries(Object.entries(this.by).map(([k, v]) => [k, { ...v }])) as KvTransportStatsByName;
  }
}
