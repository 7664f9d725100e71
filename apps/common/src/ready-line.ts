// The ready lines: the one stdout line each app prints once it takes work. This module is their only author and
// their only reader. The api, the workers and the launcher print through the `*ReadyLine` functions; the launcher,
// the tests, the benches and the tools wait with `READY_PATTERNS` (a `@trtd/process` `waitForLine` pattern) and
// read the fields with the `parse*ReadyLine` functions, so a changed line changes every reader with it.
import { parseEchoedLine } from "@trtd/process";
import type { WorkerRole } from "./worker-runtime.js";

/** The apps that print a ready line. */
export type ReadyApp = WorkerRole | "api" | "launcher";

/** A worker serves its endpoint: `trtd decode worker <id> serving <ns>/<component>/<endpoint> (pid <pid>)`. */
export interface WorkerReady {
  role: WorkerRole;
  instanceId: string;
  namespace: string;
  component: string;
  endpoint: string;
  pid: number;
}

/** The api listens: `trtd api listening on <url> (model <model>)`. */
export interface ApiReady {
  url: string;
  model: string;
}

/**
 * The launcher's deployment is up: with an api, `trtd ready: OpenAI API at <url>/v1 (model <model>; P prefill + D
 * decode workers; <where>)`; without one (--no-api), `trtd ready: P prefill + D decode workers, no api on this
 * host; <where>`. `where` says which request plane (for people; no reader parses it).
 */
export interface LauncherReady {
  /** The api's base URL (no /v1); absent with --no-api. */
  apiUrl?: string;
  /** The model id clients send; absent with --no-api. */
  model?: string;
  prefillWorkers: number;
  decodeWorkers: number;
  where: string;
}

// Each pattern is anchored (a launcher's echo, `[decode-0] trtd ...`, is not its own ready line) and names its
// fields; `url`, where a line has one, is what a waiter usually wants.
const WORKER = /^trtd (?<role>prefill|decode) worker (?<instanceId>\S+) serving (?<namespace>[^/\s]+)\/(?<component>[^/\s]+)\/(?<endpoint>\S+) \(pid (?<pid>\d+)\)$/;
const API = /^trtd api listening on (?<url>\S+) \(model (?<model>.*)\)$/;
const LAUNCHER =
  /^trtd ready: (?:OpenAI API at (?<url>\S+)\/v1 \(model (?<model>.*); (?<prefill>\d+) prefill \+ (?<decode>\d+) decode workers; (?<where>.*)\)|(?<prefillOnly>\d+) prefill \+ (?<decodeOnly>\d+) decode workers, no api on this host; (?<whereOnly>.*))$/;

const workerPattern = (role: WorkerRole) => new RegExp(WORKER.source.replace("(?<role>prefill|decode)", `(?<role>${role})`));

/**
 * For `Child.waitForLine(READY_PATTERNS[app], ms)`: a line of `app`'s that says it is ready. The api's and the
 * launcher's name the URL as group `url` (`match.groups.url`; a launcher with --no-api has none).
 */
export const READY_PATTERNS: Readonly<Record<ReadyApp, RegExp>> = {
  api: API,
  prefill: workerPattern("prefill"),
  decode: workerPattern("decode"),
  launcher: LAUNCHER,
};

export function workerReadyLine(w: WorkerReady): string {
  return `trtd ${w.role} worker ${w.instanceId} serving ${w.namespace}/${w.component}/${w.endpoint} (pid ${w.pid})`;
}

export function parseWorkerReadyLine(line: string): WorkerReady | undefined {
  const g = WORKER.exec(line)?.groups;
  if (!g) return undefined;
  return { role: g.role as WorkerRole, instanceId: g.instanceId!, namespace: g.namespace!, component: g.component!, endpoint: g.endpoint!, pid: Number(g.pid) };
}

export function apiReadyLine(a: ApiReady): string {
  return `trtd api listening on ${a.url} (model ${a.model})`;
}

export function parseApiReadyLine(line: string): ApiReady | undefined {
  const g = API.exec(line)?.groups;
  return g ? { url: g.url!, model: g.model! } : undefined;
}

export function launcherReadyLine(l: LauncherReady): string {
  const workers = `${l.prefillWorkers} prefill + ${l.decodeWorkers} decode workers`;
  if (l.apiUrl === undefined) return `trtd ready: ${workers}, no api on this host; ${l.where}`;
  return `trtd ready: OpenAI API at ${l.apiUrl}/v1 (model ${l.model ?? ""}; ${workers}; ${l.where})`;
}

export function parseLauncherReadyLine(line: string): LauncherReady | undefined {
  const g = LAUNCHER.exec(line)?.groups;
  if (!g) return undefined;
  if (g.url === undefined) return { prefillWorkers: Number(g.prefillOnly), decodeWorkers: Number(g.decodeOnly), where: g.whereOnly! };
  return { apiUrl: g.url, model: g.model!, prefillWorkers: Number(g.prefill), decodeWorkers: Number(g.decode), where: g.where! };
}

/**
 * PIDs of a launcher's child `name` (e.g. decode-0), in start order (a restart adds one), from the worker ready
 * lines in the launcher's output, which echoes each child's lines as `[name] line` (@trtd/process).
 */
export function launcherChildPids(launcherOutput: readonly string[], name: string): number[] {
  return launcherOutput.flatMap((l) => {
    const echoed = parseEchoedLine(l);
    const ready = echoed?.name === name ? parseWorkerReadyLine(echoed.line) : undefined;
    return ready ? [ready.pid] : [];
  });
}
