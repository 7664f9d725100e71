// Real processes for end-to-end tests, on @trtd/test-support: started on 127.0.0.1 with free ports, read until they
// say they are ready (bounded), stopped by PID (SIGTERM, then SIGKILL after a bound).
import { READY_PATTERNS } from "@trtd/apps-common";
import * as support from "@trtd/test-support";

export { repoRoot, modelDir, workerGauges, metricValue } from "@trtd/test-support";

export type Started = support.AppProcess;

/** Runs `apps/<app>/src/main.ts` with tsx and waits for a line matching `ready` (its group `url` is the URL). */
export function startApp(app: "launcher" | "api", args: string[], ready: RegExp, timeoutMs = 120_000, env: Record<string, string> = {}): Promise<Started> {
  return support.startApp(app, args, { ready, timeoutMs, stopBoundMs: 30_000, env });
}

/** The ready lines' own patterns (apps/common's ready-line.ts). */
export const LAUNCHER_READY = READY_PATTERNS.launcher;
export const API_READY = READY_PATTERNS.api;

/** Polls `check` every `intervalMs` (200) until it returns true; a check that throws fails at once; throws after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string, intervalMs = 200): Promise<void> {
  await support.eventually(check, timeoutMs, what, { intervalMs, retryOnError: false });
}

export { isAlive } from "@trtd/process";
