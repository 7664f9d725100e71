// Process lifecycle for the apps: one graceful stop on SIGINT/SIGTERM, bounded, a second signal forces exit.

export interface ShutdownOptions {
  /** How long a graceful stop may take before the process exits anyway. */
  graceMs?: number;
  log?: (line: string) => void;
}

/** Runs `stop` once on the first SIGINT/SIGTERM, then exits 0 (or 1 when it failed or ran past graceMs). */
export function onShutdownSignal(stop: () => Promise<void>, { graceMs = 30_000, log = (l) => console.error(l) }: ShutdownOptions = {}): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      log(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    log(`${signal}: stopping (at most ${graceMs} ms)`);
    const timer = setTimeout(() => {
      log("graceful stop ran past its bound: exiting");
      process.exit(1);
    }, graceMs);
    timer.unref();
    stop().then(
      () => process.exit(0),
      (err) => {
        log(`stop failed: ${(err as Error).stack ?? err}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  // A child of the launcher (own process group, so a terminal's Ctrl-C reaches only the launcher) stops when
  // its launcher is gone, even if the launcher was killed without a chance to stop it.
  const parent = Number(process.env[PARENT_PID_ENV]);
  if (Number.isInteger(parent) && parent > 0) {
    const timer = setInterval(() => {
      try {
        process.kill(parent, 0);
      } catch {
        clearInterval(timer);
        if (!stopping) handler("SIGTERM");
      }
    }, PARENT_POLL_MS);
    timer.unref();
  }
}

/** Set by the launcher on its children: the launcher's PID. */
export const PARENT_PID_ENV = "TRTD_PARENT_PID";
const PARENT_POLL_MS = 1000;

/** A one-line logger with a component prefix, to stderr (stdout is kept for machine-readable lines). */
export function makeLogger(component: string): (line: string) => void {
  return (line) => process.stderr.write(`[${new Date().toISOString()}] ${component}: ${line}\n`);
}
