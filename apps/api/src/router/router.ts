// The router decides where a request runs and sends it there (ARCHITECTURE.md, step 2): remote prefill when
// the policy allows, then decode on the least loaded decode worker; aggregated when prefill is not used or fails.
import type { DecodeChunk, GenerateRequest, PrefillResult } from "@trtd/apps-common";
import type { GenerationBackend, Readiness } from "../backend.js";
import { NoWorkersError, WorkerGoneError } from "../errors.js";
import { LeastLoadedSelector, type DecodeSelector } from "./decode-selector.js";
import { PrefillPolicy, type PrefillPolicyOptions } from "./prefill-policy.js";
import type { Workers } from "./workers.js";

export interface RouterOptions {
  workers: Workers;
  decodeSelector?: DecodeSelector;
  prefill?: PrefillPolicyOptions;
  /** Counts prefills that failed and fell back to aggregated. */
  onPrefillFallback?: (err: unknown) => void;
  /** Decode workers tried for one request when the chosen one is gone before its first token (default 3). */
  maxDecodeAttempts?: number;
}

export class Router implements GenerationBackend {
  private readonly workers: Workers;
  private readonly selector: DecodeSelector;
  readonly policy: PrefillPolicy;
  private readonly onPrefillFallback: (err: unknown) => void;
  private readonly maxDecodeAttempts: number;
  /** Requests this router has outstanding per instance id. */
  private readonly inFlight = new Map<string, number>();

  constructor(opts: RouterOptions) {
    this.workers = opts.workers;
    this.selector = opts.decodeSelector ?? new LeastLoadedSelector();
    this.policy = new PrefillPolicy(opts.prefill);
    this.onPrefillFallback = opts.onPrefillFallback ?? (() => {});
    this.maxDecodeAttempts = Math.max(1, opts.maxDecodeAttempts ?? 3);
  }

  readiness(): Readiness {
    const decodeWorkers = this.workers.instances("decode").filter((w) => !w.load?.draining).length;
    const prefillWorkers = this.workers.instances("prefill").filter((w) => !w.load?.draining).length;
    return { ready: decodeWorkers > 0, decodeWorkers, prefillWorkers };
  }

  private track(id: string, by: number) {
    const n = (this.inFlight.get(id) ?? 0) + by;
    if (n <= 0) this.inFlight.delete(id);
    else this.inFlight.set(id, n);
  }

  async *generate(req: GenerateRequest, signal: AbortSignal): AsyncGenerator<DecodeChunk> {
    const liveDecoders = (skip: ReadonlySet<string>) => this.workers.instances("decode").filter((w) => !w.load?.draining && !skip.has(w.id));
    if (liveDecoders(new Set()).length === 0) throw new NoWorkersError();

    let prefill: PrefillResult | undefined;
    const decision = this.policy.decide(req, this.workers.instances("prefill"), this.inFlight);
    if (decision.remote) {
      this.track(decision.instance.id, 1);
      try {
        prefill = await this.workers.prefill(decision.instance.id, req, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        this.onPrefillFallback(err);
      } finally {
        this.track(decision.instance.id, -1);
      }
    }

    // A decode worker that is gone before the first token (crashed, restarting) costs nothing: try another.
    // Once tokens have been streamed the request stays where it is.
    const gone = new Set<string>();
    for (let attempt = 1; ; attempt++) {
      const candidates = liveDecoders(gone);
      if (candidates.length === 0) throw new NoWorkersError();
      const decode = this.selector.select(req, candidates, this.inFlight);
      let started = false;
      this.track(decode.id, 1);
      try {
        for await (const chunk of this.workers.decode(decode.id, prefill ? { ...req, prefill } : req, signal)) {
          started = true;
          yield chunk;
        }
        return;
      } catch (err) {
        if (started || signal.aborted || !(err instanceof WorkerGoneError) || attempt >= this.maxDecodeAttempts) throw err;
        gone.add(decode.id);
      } finally {
        this.track(decode.id, -1);
      }
    }
  }
}
