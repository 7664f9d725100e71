// Workers over @trtd/request-plane: discovery (instances with their published load) and direct routing to
// the instance the router chose. Request-plane failures become the api's typed errors here.
import { DEFAULT_NAMESPACE, DeploymentIdentity, Endpoints, kvEventSubjects, type KvEventPoll, type KvEventReply, type DecodeChunk, type IdentityMismatch, type DecodeRequest, type GenerateRequest, type PrefillResult, type WorkerLoad } from "@trtd/apps-common";
import { KvPullFailureReasons, KvPullRefusalReasons } from "@trtd/kv-transfer";
import { RequestPlaneErrorCode, type CarrierCounts, type EndpointClient, type RequestPlane, type InstanceInfo } from "@trtd/request-plane";
import { DeadlineExceededError, WorkerFailedError, WorkerGoneError } from "../errors.js";
import type { WorkerInstance, WorkerRole, Workers } from "./workers.js";

function loadOf(i: InstanceInfo): WorkerLoad | undefined {
  const m = i.metrics as Record<string, unknown>;
  if (typeof m.activeRequests !== "number") return undefined;
  const num = (k: string) => (typeof m[k] === "number" ? (m[k] as number) : 0);
  return {
    activeRequests: num("activeRequests"),
    queuedRequests: num("queuedRequests"),
    kvBlocksUsed: num("kvBlocksUsed"),
    kvBlocksTotal: num("kvBlocksTotal"),
    generatedTokens: num("generatedTokens"),
    pinnedExports: num("pinnedExports"),
    draining: m.draining === true,
    stalled: m.stalled === true,
    ...(typeof m.iterations === "number" ? { iterations: m.iterations } : {}),
    ...(typeof m.prefixCacheHitTokens === "number" ? { prefixCacheHitTokens: m.prefixCacheHitTokens, prefixCacheMissTokens: num("prefixCacheMissTokens") } : {}),
    ...(typeof m.kvHostBlocksTotal === "number" ? { kvHostBlocksTotal: m.kvHostBlocksTotal, kvHostBlocksHeld: num("kvHostBlocksHeld"), kvHostHitBlocks: num("kvHostHitBlocks") } : {}),
    ...(typeof m.kvPullsRefused === "object" && m.kvPullsRefused !== null ? { kvPullsRefused: counts(m.kvPullsRefused as Record<string, unknown>, KvPullRefusalReasons) } : {}),
    ...(typeof m.kvPullFailures === "object" && m.kvPullFailures !== null ? { kvPullFailures: counts(m.kvPullFailures as Record<string, unknown>, KvPullFailureReasons) } : {}),
  };
}

/** The optional protocol parts an instance announced (`meta.features`, strings only). */
function featuresOf(i: InstanceInfo): { features?: string[] } {
  const f = (i.meta as Record<string, unknown> | undefined)?.features;
  return Array.isArray(f) ? { features: f.filter((x): x is string => typeof x === "string") } : {};
}

/**
 * Counters a worker publishes by reason (a prefill's refusals, a decode worker's pull failures), for the reasons
 * kv-transfer names (anything else is dropped).
 */
function counts(published: Record<string, unknown>, reasons: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const reason of reasons) {
    const n = published[reason];
    if (typeof n === "number" && Number.isSafeInteger(n) && n >= 0) out[reason] = n;
  }
  return out;
}

/** Request-plane errors as api errors (the caller's own abort passes through unchanged). */
/** A request-plane failure of one worker call as the router's error (WorkerGoneError: the router may move the request). */
export function translateWorkerError(err: unknown, signal: AbortSignal, what: string, deadline: number): unknown {
  if (signal.aborted) return err;
  const { code, remoteCode, message } = err as { code?: string; remoteCode?: string; message: string };
  if (code === RequestPlaneErrorCode.Timeout) {
    // One code covers the request's deadline and a worker that never accepted the request or stopped sending
    // heartbeats: before the deadline it is the worker that failed, and the router can move the request.
    if (Date.now() < deadline) return new WorkerGoneError(`${what}: the chosen worker does not answer (${message})`, { cause: err });
    return new DeadlineExceededError(`${what}: ${message}`, { cause: err });
  }
  if (code === RequestPlaneErrorCode.NoResponders || code === RequestPlaneErrorCode.ServerGone) {
    return new WorkerGoneError(`${what}: the chosen worker is gone (${message})`, { cause: err });
  }
  // A worker that began draining as the request arrived refuses it ("closed") before doing any of it.
  if (code === RequestPlaneErrorCode.Remote && remoteCode === RequestPlaneErrorCode.Closed) {
    return new WorkerGoneError(`${what}: the chosen worker is stopping (${message})`, { cause: err });
  }
  return new WorkerFailedError(`${what}: ${message}`, { cause: err });
}

/**
 * How long a prefill worker has to accept a request. A worker accepts on receipt (compute runs on executor
 * threads), so on a healthy plane this takes milliseconds; a request lost while NATS fails over to another
 * cluster node would otherwise wait the request plane's default 5 s before the router falls back to aggregated.
 */
const PREFILL_ACCEPT_TIMEOUT_MS = 1500;
/** Instance verdicts kept before those of departed instances are dropped. */
const MAX_VERDICTS = 1024;

export interface RequestPlaneWorkersOptions {
  /**
   * The deployment's identity: instances whose announced identity does not match it are refused (never listed,
   * so never routed to). Default: fixed entirely by the first worker seen.
   */
  identity?: DeploymentIdentity;
  /** Called once per refused instance. */
  onRefused?: (role: WorkerRole, instanceId: string, mismatch: IdentityMismatch) => void;
}

export class RequestPlaneWorkers implements Workers {
  private readonly prefillClient: EndpointClient<GenerateRequest, PrefillResult>;
  private readonly decodeClient: EndpointClient<DecodeRequest, DecodeChunk>;
  private readonly identity: DeploymentIdentity;
  private readonly onRefused: NonNullable<RequestPlaneWorkersOptions["onRefused"]>;
  /** Instance ids already judged, and the verdict (undefined: admitted). */
  private readonly verdicts = new Map<string, IdentityMismatch | undefined>();
  /** Per role and instance id, how to abandon each request in flight there (watchStall). */
  private readonly stallWatches = new Map<string, Set<() => void>>();

  private readonly plane: RequestPlane;

  constructor(plane: RequestPlane, namespace: string = DEFAULT_NAMESPACE, opts: RequestPlaneWorkersOptions = {}) {
    this.plane = plane;
    this.identity = opts.identity ?? new DeploymentIdentity();
    this.onRefused = opts.onRefused ?? (() => {});
    this.prefillClient = plane
      .endpoint(namespace, Endpoints.prefill.component, Endpoints.prefill.endpoint)
      .client({ acceptTimeoutMs: PREFILL_ACCEPT_TIMEOUT_MS });
    this.decodeClient = plane.endpoint(namespace, Endpoints.decode.component, Endpoints.decode.endpoint).client();
    // Judged as they register (so a refusal is logged and counted when the worker arrives, not at its first use).
    this.prefillClient.onInstancesChange(() => {
      this.instances("prefill");
      this.abandonStalled(this.prefillClient);
    });
    this.decodeClient.onInstancesChange(() => {
      this.instances("decode");
      this.abandonStalled(this.decodeClient);
    });
  }

  /** Requests sent to each instance of `role` so far, over its direct link or through nats-server (for /metrics). */
  carrierCounts(role: WorkerRole): Record<string, CarrierCounts> {
    return (role === "prefill" ? this.prefillClient : this.decodeClient).carrierCounts();
  }

  instances(role: WorkerRole): WorkerInstance[] {
    const c = role === "prefill" ? this.prefillClient : this.decodeClient;
    return c.instances().flatMap((i) => (this.admitted(role, i) ? [{ id: i.id, load: loadOf(i), ...featuresOf(i) }] : []));
  }

  /** Whether an instance belongs to the deployment; judged once per instance id (an identity is static). */
  private admitted(role: WorkerRole, i: InstanceInfo): boolean {
    if (!this.verdicts.has(i.id)) {
      if (this.verdicts.size >= MAX_VERDICTS) this.forgetGone();
      const m = this.identity.check(`${role} ${i.id}`, i.meta.identity);
      this.verdicts.set(i.id, m);
      if (m) this.onRefused(role, i.id, m);
    }
    return this.verdicts.get(i.id) === undefined;
  }

  /** Resolves once `count` decode workers are up (bounded). */
  async waitForDecode(count: number, timeoutMs: number): Promise<void> {
    await this.decodeClient.waitForInstances({ count, timeoutMs });
  }

  /** Bounded memory under churn: verdicts of instances no longer listed are dropped (one judged again logs again). */
  private forgetGone(): void {
    const live = new Set([...this.prefillClient.instances(), ...this.decodeClient.instances()].map((i) => i.id));
    for (const id of this.verdicts.keys()) if (!live.has(id)) this.verdicts.delete(id);
  }

  async pollKvEvents(instanceId: string, poll: KvEventPoll, timeoutMs: number): Promise<KvEventReply> {
    const reply = await this.plane.request(kvEventSubjects.worker(instanceId), Buffer.from(JSON.stringify(poll)), { timeoutMs });
    return JSON.parse(Buffer.from(reply).toString("utf8")) as KvEventReply;
  }

  async prefill(instanceId: string, req: GenerateRequest, signal: AbortSignal): Promise<PrefillResult> {
    const stall = this.watchStall(this.prefillClient, instanceId, signal);
    try {
      return await this.prefillClient.request(req, { instanceId, signal: stall.signal, deadline: req.deadline, requestId: `${req.id}-p` });
    } catch (err) {
      throw stall.error() ?? translateWorkerError(err, signal, "prefill", req.deadline);
    } finally {
      stall.off();
    }
  }

  async *decode(instanceId: string, req: DecodeRequest, signal: AbortSignal): AsyncGenerator<DecodeChunk> {
    const stall = this.watchStall(this.decodeClient, instanceId, signal);
    const stream = this.decodeClient.generate(req, { instanceId, signal: stall.signal, deadline: req.deadline, requestId: req.id });
    try {
      // Leaving this loop early (stop string, client gone) returns the stream, which cancels the request in the worker.
      for await (const chunk of stream) yield chunk;
    } catch (err) {
      throw stall.error() ?? translateWorkerError(err, signal, "decode", req.deadline);
    } finally {
      stall.off();
    }
  }

  /**
   * A request to one instance that is abandoned (cancelled there) as soon as the instance publishes `stalled`: its
   * engine stopped progressing, so the request would wait for its deadline. The caller gets a WorkerGoneError, on
   * which the router moves the request to another worker (decode) or runs it aggregated (prefill). One listener per
   * client (abandonStalled) serves every request; a request costs a controller and a listener on the caller's signal.
   */
  private watchStall(client: EndpointClient<never, unknown>, instanceId: string, signal: AbortSignal) {
    const ac = new AbortController();
    let stalled = false;
    const onAbort = () => ac.abort(signal.reason);
    const watch = () => {
      stalled = true;
      ac.abort(new WorkerGoneError(`the worker's engine stopped progressing (instance ${instanceId} reports stalled)`));
    };
    if (signal.aborted) ac.abort(signal.reason);
    else signal.addEventListener("abort", onAbort, { once: true });
    if (client.instances().find((i) => i.id === instanceId)?.metrics.stalled) watch();
    const key = this.stallKey(client, instanceId);
    let watches = this.stallWatches.get(key);
    if (!watches) this.stallWatches.set(key, (watches = new Set()));
    watches.add(watch);
    return {
      signal: ac.signal,
      error: () => (stalled && !signal.aborted ? (ac.signal.reason as WorkerGoneError) : undefined),
      off: () => {
        signal.removeEventListener("abort", onAbort);
        watches.delete(watch);
        if (watches.size === 0 && this.stallWatches.get(key) === watches) this.stallWatches.delete(key);
      },
    };
  }

  /** The two roles' instances may share ids (`--worker-name`): their watches are kept apart. */
  private stallKey(client: EndpointClient<never, unknown>, instanceId: string): string {
    return `${client === (this.prefillClient as EndpointClient<never, unknown>) ? "prefill" : "decode"}/${instanceId}`;
  }

  /** Abandons the requests in flight on every instance of `client` that reports `stalled` (watchStall). */
  private abandonStalled(client: EndpointClient<never, unknown>): void {
    if (this.stallWatches.size === 0) return;
    for (const i of client.instances()) {
      if (!i.metrics.stalled) continue;
      const watches = this.stallWatches.get(this.stallKey(client, i.id));
      if (watches) for (const watch of [...watches]) watch();
    }
  }

  close(): void {
    this.prefillClient.close();
    this.decodeClient.close();
  }
}
