// The api's metrics: requests, latency, queue depths, routing decisions and KV transfer.
import type { WorkerLoad } from "@trtd/apps-common";
import { Counter, Gauge, Histogram, Registry } from "./registry.js";

const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const BYTES_BUCKETS = [1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 22, 1 << 24, 1 << 26];

/** Worker-side queue figures, read from the instances' published load when /metrics is scraped. */
export type WorkerLoadSource = () => Array<{ component: string; instance: string; load: WorkerLoad }>;

/** Requests the api sent to each worker instance, by carrier (@trtd/request-plane's `EndpointClient.carrierCounts`). */
export type CarrierSource = () => Array<{ component: string; instance: string; direct: number; nats: number }>;

export function createApiMetrics(workerLoad: WorkerLoadSource = () => [], carriers: CarrierSource = () => []) {
  const registry = new Registry();
  const m = {
    registry,
    requests: registry.register(new Counter("trtd_requests_total", "HTTP requests by endpoint and status code")),
    inFlight: registry.register(new Gauge("trtd_requests_in_flight", "Generation requests the api is serving now")),
    ttft: registry.register(new Histogram("trtd_time_to_first_token_seconds", "Time from request arrival to the first generated token", LATENCY_BUCKETS_S)),
    itl: registry.register(new Histogram("trtd_inter_token_latency_seconds", "Time between consecutive generated tokens", LATENCY_BUCKETS_S)),
    e2e: registry.register(new Histogram("trtd_request_duration_seconds", "Time from request arrival to the last token", LATENCY_BUCKETS_S)),
    promptTokens: registry.register(new Counter("trtd_prompt_tokens_total", "Prompt tokens processed")),
    generatedTokens: registry.register(new Counter("trtd_generated_tokens_total", "Tokens generated")),
    routed: registry.register(new Counter("trtd_routed_requests_total", "Requests by execution mode (aggregated, disaggregated, recomputed)")),
    prefillFallbacks: registry.register(new Counter("trtd_prefill_fallbacks_total", "Remote prefills that failed; the request ran aggregated")),
    workersRefused: registry.register(
      new Counter("trtd_workers_refused_total", "Worker instances refused at registration because their identity does not match the deployment's, by component and reason"),
    ),
    migrations: registry.register(new Counter("trtd_migrated_requests_total", "Requests moved to another decode worker after theirs died mid-stream")),
    // Per KV transport ("path": cuda-ipc, shm, tcp, nats, engine), as the decode worker negotiated it per pull.
    kvBytes: registry.register(new Counter("trtd_kv_transfer_bytes_total", "KV cache bytes moved from prefill to decode workers, by transport path")),
    kvPathSeconds: registry.register(new Counter("trtd_kv_transfer_seconds_total", "Seconds decode workers spent pulling KV caches, by transport path")),
    kvTransfers: registry.register(new Counter("trtd_kv_transfers_total", "KV caches pulled by decode workers, by transport path")),
    kvFallbacks: registry.register(
      new Counter("trtd_kv_transfer_fallbacks_total", "KV pulls that left a transport path for the next one (e.g. cuda-ipc to shm), by the path left"),
    ),
    kvTransferSeconds: registry.register(new Histogram("trtd_kv_transfer_seconds", "Time decode workers spent pulling KV caches", LATENCY_BUCKETS_S)),
    kvTransferSize: registry.register(new Histogram("trtd_kv_transfer_size_bytes", "Size of each KV transfer", BYTES_BUCKETS)),
    requestPlaneCarriers: registry.register(
      new Counter(
        "trtd_request_plane_requests_total",
        "Requests the api sent to a worker instance, by carrier: direct (the instance's direct TCP link) or nats (through nats-server: no link offered, it could not be opened, or --direct-data-path off)",
        () =>
          carriers().flatMap((c) => [
            { labels: { component: c.component, instance: c.instance, carrier: "direct" }, value: c.direct },
            { labels: { component: c.component, instance: c.instance, carrier: "nats" }, value: c.nats },
          ]),
      ),
    ),
    ...workerGauges(registry, workerLoad),
  };
  return m;
}

export type ApiMetrics = ReturnType<typeof createApiMetrics>;

/** Worker figures as published with their instances; read when /metrics is scraped. */
function workerGauges(registry: Registry, source: WorkerLoadSource) {
  const gauge = (name: string, help: string, pick: (l: WorkerLoad) => number) =>
    registry.register(
      new Gauge(name, help, () => source().map((w) => ({ labels: { component: w.component, instance: w.instance }, value: pick(w.load) }))),
    );
  return {
    workerActive: gauge("trtd_worker_active_requests", "Requests a worker's executor is running (published load)", (l) => l.activeRequests),
    workerQueued: gauge("trtd_worker_queued_requests", "Requests waiting in a worker's executor queue (published load)", (l) => l.queuedRequests),
    workerKvUsed: gauge("trtd_worker_kv_blocks_used", "KV blocks in use on a worker (published load)", (l) => l.kvBlocksUsed),
    workerKvTotal: gauge("trtd_worker_kv_blocks_total", "KV blocks of a worker's pool (published load)", (l) => l.kvBlocksTotal),
    workerPinned: gauge("trtd_worker_pinned_kv_exports", "KV exports a worker holds for transfer (published load)", (l) => l.pinnedExports),
    kvPullsRefused: registry.register(
      new Counter("trtd_kv_pull_refused_total", "KV pulls, acks and nacks a prefill worker's offer server refused for a missing or wrong offer secret, by reason (published load)", () =>
        source().flatMap((w) =>
          Object.entries(w.load.kvPullsRefused ?? {}).map(([reason, value]) => ({ labels: { component: w.component, instance: w.instance, reason }, value })),
        ),
      ),
    ),
    kvPullFailures: registry.register(
      new Counter(
        "trtd_kv_pull_failures_total",
        "KV pulls a decode worker gave up on and recomputed the prompt for, by reason: lease_expired (a late pull), transport, timeout, unauthorized, checksum, incompatible, not_found, aborted, other (published load)",
        () =>
          source().flatMap((w) =>
            Object.entries(w.load.kvPullFailures ?? {}).map(([reason, value]) => ({ labels: { component: w.component, instance: w.instance, reason }, value })),
          ),
      ),
    ),
    prefixCacheTokens: registry.register(
      new Counter(
        "trtd_worker_prefix_cache_tokens_total",
        "Prompt tokens a worker's executor took from its prefix cache (result=hit) or computed (result=miss) since it started (published load)",
        () =>
          source().flatMap((w) =>
            w.load.prefixCacheHitTokens === undefined
              ? []
              : [
                  { labels: { component: w.component, instance: w.instance, result: "hit" }, value: w.load.prefixCacheHitTokens },
                  { labels: { component: w.component, instance: w.instance, result: "miss" }, value: w.load.prefixCacheMissTokens ?? 0 },
                ],
          ),
      ),
    ),
    // The host KV tier, for workers that run one (--kv-host-cache-gb): absent from the others.
    kvHostBlocks: registry.register(
      new Gauge("trtd_worker_kv_host_blocks", "KV blocks a worker's host KV tier holds (state=held) and can hold (state=total) (published load)", () =>
        source().flatMap((w) =>
          w.load.kvHostBlocksTotal === undefined
            ? []
            : [
                { labels: { component: w.component, instance: w.instance, state: "held" }, value: w.load.kvHostBlocksHeld ?? 0 },
                { labels: { component: w.component, instance: w.instance, state: "total" }, value: w.load.kvHostBlocksTotal },
              ],
        ),
      ),
    ),
    kvHostHitBlocks: registry.register(
      new Counter("trtd_worker_kv_host_hit_blocks_total", "KV blocks a worker's executor copied back from its host KV tier on prefix hits since it started (published load)", () =>
        source().flatMap((w) =>
          w.load.kvHostBlocksTotal === undefined ? [] : [{ labels: { component: w.component, instance: w.instance }, value: w.load.kvHostHitBlocks ?? 0 }],
        ),
      ),
    ),
    workerGenerated: gauge("trtd_worker_generated_tokens", "Tokens a worker's executor generated since it started (published load)", (l) => l.generatedTokens),
  };
}
