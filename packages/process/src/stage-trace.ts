// Stage stamps for latency breakdowns across processes. With TRTD_TRACE_STAGES=1 in a process's environment,
// traceStage(label) writes `trtd-stage <label> <ns>` to its stderr, ns from process.hrtime.bigint(): the host's
// CLOCK_MONOTONIC, the same clock in every process of one host, so a parent that reads its children's stderr can
// place one request's stamps from the api, the request plane and a worker on one timeline (apps/api/bench/stages.ts).
// Off (the default) it is undefined: a call site costs one optional call, `traceStage?.("...")`.

/** The line prefix; parseStageLine reads it back. */
export const STAGE_LINE_PREFIX = "trtd-stage ";

/**
 * Stamps wait in memory and leave in one stderr write FLUSH_AFTER_MS after the first of them: a write per stamp would
 * put a syscall (and a wake-up of the process reading the pipe) on the very path being measured, about 0.1 ms each
 * on a 2-core VM. A reader waits at least this long after a request before reading its stamps.
 */
export const STAGE_FLUSH_AFTER_MS = 20;
let pending = "";
let flushTimer: NodeJS.Timeout | undefined;

function flush(): void {
  flushTimer = undefined;
  const out = pending;
  pending = "";
  if (out) process.stderr.write(out);
}

function write(label: string): void {
  pending += `${STAGE_LINE_PREFIX}${label} ${process.hrtime.bigint()}\n`;
  // Not unref'd: a process that would end sooner lives at most STAGE_FLUSH_AFTER_MS longer to write its stamps (no
  // exit handler: a package installs no process-wide handlers). process.exit() drops the last batch.
  flushTimer ??= setTimeout(flush, STAGE_FLUSH_AFTER_MS);
}

/** Writes one stage stamp when TRTD_TRACE_STAGES=1 (read once, at load); undefined otherwise. */
export const traceStage: ((label: string) => void) | undefined = process.env.TRTD_TRACE_STAGES === "1" ? write : undefined;

/** A stamp line as written by traceStage, or undefined for any other line. */
export function parseStageLine(line: string): { label: string; ns: bigint } | undefined {
  if (!line.startsWith(STAGE_LINE_PREFIX)) return undefined;
  const m = /^trtd-stage (\S+) (\d+)$/.exec(line.trimEnd());
  return m ? { label: m[1], ns: BigInt(m[2]) } : undefined;
}
