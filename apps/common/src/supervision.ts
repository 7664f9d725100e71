// A worker and the launcher that supervises it: over the IPC channel the launcher opens (@trtd/process's
// `onMessage`), the worker reports its health every HEALTH_REPORT_INTERVAL_MS: that it is alive (the report arrives
// at all: a stopped or hung process sends none) and whether its engine progresses (the progress watchdog's
// verdict, the one it publishes in discovery as `stalled`). The launcher restarts a worker whose reports stop or
// say stalled for too long (apps/launcher/src/supervisor.ts). A worker started without the channel reports nothing.

export const WORKER_HEALTH_MESSAGE = "trtd-worker-health";
export const HEALTH_REPORT_INTERVAL_MS = 500;

export interface WorkerHealthMessage {
  type: typeof WORKER_HEALTH_MESSAGE;
  instanceId: string;
  /** The engine has running requests and no iteration for the worker's --stall-timeout-ms. */
  stalled: boolean;
}

export function isWorkerHealthMessage(m: unknown): m is WorkerHealthMessage {
  const o = m as Partial<WorkerHealthMessage> | null;
  return typeof o === "object" && o !== null && o.type === WORKER_HEALTH_MESSAGE && typeof o.instanceId === "string" && typeof o.stalled === "boolean";
}

/**
 * Sends `{instanceId, stalled}` to the parent every `intervalMs` while this process has an IPC channel (it was
 * started with one); returns the stop. The channel does not keep the process alive, and a report that cannot be
 * sent (the parent gone) is dropped: the worker's parent-PID watch stops it then.
 */
export function reportHealthToSupervisor(worker: { readonly instanceId: string; readonly stalled: boolean }, intervalMs = HEALTH_REPORT_INTERVAL_MS): () => void {
  const send = process.send?.bind(process);
  if (!send || !process.channel) return () => {};
  process.channel.unref();
  const report = () => {
    if (!process.connected) return;
    const m: WorkerHealthMessage = { type: WORKER_HEALTH_MESSAGE, instanceId: worker.instanceId, stalled: worker.stalled };
    send(m, undefined, undefined, () => {}); // an error (channel closed) is dropped, see above
  };
  report();
  const timer = setInterval(report, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
