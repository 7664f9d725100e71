// What prefill and decode workers share: serving one endpoint on the request plane with published load, and a
// graceful stop (leave the queue group, finish held requests within a bound, then release everything).
import type { Handler, RequestPlane, ServedEndpoint } from "@trtd/request-plane";
import { DEFAULT_STALL_TIMEOUT_MS, ProgressWatchdog, type EngineProgressSample } from "./progress.js";
import { Endpoints, type WorkerLoad } from "./protocol.js";

export type WorkerRole = "prefill" | "decode";

export interface WorkerRuntimeOptions<Req, Res> {
  role: WorkerRole;
  plane: RequestPlane;
  /** The deployment's namespace on the request plane (the seed's --worker-name). */
  namespace?: string;
  handler: Handler<Req, Res>;
  /** Sampled at every announcement (about three times per lease). */
  load: () => Omit<WorkerLoad, "draining" | "stalled">;
  /**
   * The executor's progress, sampled every stallTimeoutMs / 4 (at most every 250 ms): running requests and no
   * iteration for `stallTimeoutMs` publishes `stalled: true` at once (the api stops routing to the worker and moves
   * its requests); progress clears it.
   */
  progress?: () => EngineProgressSample;
  /** Default ${DEFAULT_STALL_TIMEOUT_MS}. */
  stallTimeoutMs?: number;
  /** Published once with the instance (model fingerprint, KV layout, ...). */
  meta?: Record<string, unknown>;
  /** Releases what the worker owns after the endpoint stopped (executor, KV offers). */
  release: () => Promise<void>;
  log?: (line: string) => void;
}

export interface RunningWorker {
  readonly role: WorkerRole;
  readonly instanceId: string;
  readonly served: ServedEndpoint;
  /** The progress watchdog's verdict (false without one): the engine has running requests and does not iterate. */
  readonly stalled: boolean;
  /** Stops taking work, lets held requests finish for up to `graceMs`, then releases the worker. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export const DEFAULT_NAMESPACE = Endpoints.namespace;
export const DEFAULT_GRACE_MS = 30_000;

export async function serveWorker<Req, Res>(o: WorkerRuntimeOptions<Req, Res>): Promise<RunningWorker> {
  const names = o.role === "prefill" ? Endpoints.prefill : Endpoints.decode;
  let draining = false;
  let announceNow: (() => void) | undefined;
  const watchdog = o.progress
    ? new ProgressWatchdog(o.progress, o.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS, (stalled, ms, s) => {
        o.log?.(
          stalled
            ? `engine stalled: ${s.activeRequests} running requests and no iteration for ${ms} ms; reported unhealthy (stalled) until it progresses`
            : "engine progressing again; reported healthy",
        );
        announceNow?.();
      })
    : undefined;
  const served = await o.plane.endpoint(o.namespace ?? DEFAULT_NAMESPACE, names.component, names.endpoint).serve<Req, Res>(o.handler, {
    metrics: () => ({ ...o.load(), draining, stalled: watchdog?.stalled ?? false }),
    meta: { role: o.role, ...o.meta },
  });
  announceNow = () => served.setMetrics({});
  const watch = watchdog ? setInterval(() => watchdog.check(), Math.min(250, Math.max(10, Math.floor(watchdog.stallTimeoutMs / 4)))) : undefined;
  watch?.unref();
  let stopping: Promise<void> | undefined;
  return {
    role: o.role,
    instanceId: served.instanceId,
    served,
    get stalled() {
      return watchdog?.stalled ?? false;
    },
    stop(graceMs = DEFAULT_GRACE_MS) {
      stopping ??= (async () => {
        draining = true;
        clearInterval(watch);
        o.log?.(`draining (${served.activeRequests} requests in flight, up to ${graceMs} ms)`);
        try {
          await served.stop({ graceMs });
        } finally {
          await o.release();
        }
        o.log?.("stopped");
      })();
      return stopping;
    },
  };
}
