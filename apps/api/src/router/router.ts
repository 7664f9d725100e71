// The router decides where a request runs and sends it there (ARCHITECTURE.md, step 2): remote prefill when
// the policy allows, then decode on the least loaded decode worker; aggregated when prefill is not used or fails.
import { DecodeFeatures, traceStage, type DecodeChunk, type DecodeRequest, type GenerateRequest, type PrefillResult } from "@trtd/apps-common";
import type { DecodeRoute, GenerationBackend, Readiness } from "../backend.js";
import { NoWorkersError, OverloadedError, WorkerGoneError } from "../errors.js";
import { LeastLoadedSelector, type DecodeSelector } from "./decode-selector.js";
import type { KvIndex } from "./kv-index.js";
import { PrefillPolicy, type PrefillPolicyOptions } from "./prefill-policy.js";
import type { WorkerInstance, Workers } from "./workers.js";

export interface RouterOptions {
  workers: Workers;
  decodeSelector?: DecodeSelector;
  /** KV routing: the prefix caches of the decode workers; conditional disaggregation then uses the prompt length left after the longest cached prefix. */
  kvIndex?: KvIndex;
  /** Picks the prefill worker among those with room (KV routing); default the least loaded. */
  prefillSelector?: DecodeSelector;
  prefill?: PrefillPolicyOptions;
  /** Counts prefills that failed and fell back to aggregated. */
  onPrefillFallback?: (err: unknown) => void;
  /** Decode workers tried for one request when the chosen one is gone (before or after its first token; default 3). */
  maxDecodeAttempts?: number;
  /**
   * A decode worker with this many outstanding requests (the larger of its published active + queued count and
   * this api's in-flight count to it) takes no more; when every live one is there, requests get 503 `overloaded`
   * at once (default ${DEFAULT_MAX_REQUESTS_PER_WORKER}).
   */
  maxRequestsPerWorker?: number;
  /**
   * Releases the KV offer of a prefill result that no decode worker took (the client left, or every decode
   * attempt failed before its first chunk), so the prefill worker frees its blocks now rather than at expiry.
   */
  releasePrefill?: (result: PrefillResult) => Promise<void>;
  /** Called when a request whose decode worker died mid-stream continues on another one. */
  onMigration?: (generatedTokens: number, err: unknown) => void;
  /**
   * The decision log: called once per decode attempt with the worker chosen and, per candidate, its outstanding
   * requests and (with a KV index) the prompt tokens it holds as a cached prefix. Lets a bench or an operator see
   * whether each turn went to the worker holding that conversation's history, and what load outweighed it.
   */
  onRoute?: (decision: RouteDecision) => void;
}

/** One decode routing decision (RouterOptions.onRoute). */
export interface RouteDecision {
  requestId: string;
  /** The prompt as routed (a migrated continuation includes the tokens already generated). */
  tokens: readonly number[];
  /** The decode worker chosen. */
  instanceId: string;
  /** 1 for the first choice; higher after the chosen worker was gone. */
  attempt: number;
  /** Chosen by the request's pin rather than by the selector. */
  pinned: boolean;
  /** Every live candidate: outstanding requests as the router counts them, and with a KV index the cached prefix in tokens. */
  candidates: { id: string; outstanding: number; cachedTokens?: number }[];
}

export const DEFAULT_MAX_REQUESTS_PER_WORKER = 256;

export class Router implements GenerationBackend {
  private readonly workers: Workers;
  private readonly selector: DecodeSelector;
  private readonly kvIndex: KvIndex | undefined;
  private readonly prefillSelector: DecodeSelector | undefined;
  readonly policy: PrefillPolicy;
  private readonly onPrefillFallback: (err: unknown) => void;
  private readonly maxDecodeAttempts: number;
  readonly maxRequestsPerWorker: number;
  private readonly onMigration: (generatedTokens: number, err: unknown) => void;
  private readonly releasePrefill: (result: PrefillResult) => Promise<void>;
  private readonly onRoute: ((decision: RouteDecision) => void) | undefined;
  /** Requests this router has outstanding per instance id. */
  private readonly inFlight = new Map<string, number>();

  constructor(opts: RouterOptions) {
    this.workers = opts.workers;
    this.selector = opts.decodeSelector ?? new LeastLoadedSelector();
    this.kvIndex = opts.kvIndex;
    this.prefillSelector = opts.prefillSelector;
    this.policy = new PrefillPolicy(opts.prefill);
    this.onPrefillFallback = opts.onPrefillFallback ?? (() => {});
    this.maxDecodeAttempts = Math.max(1, opts.maxDecodeAttempts ?? 3);
    this.maxRequestsPerWorker = Math.max(1, opts.maxRequestsPerWorker ?? DEFAULT_MAX_REQUESTS_PER_WORKER);
    this.onMigration = opts.onMigration ?? (() => {});
    this.releasePrefill = opts.releasePrefill ?? (async () => {});
    this.onRoute = opts.onRoute;
  }

  /** Outstanding requests on a worker as far as this api knows (its published load may lag by a second). */
  private outstanding(w: WorkerInstance): number {
    const published = w.load ? w.load.activeRequests + w.load.queuedRequests : 0;
    return Math.max(published, this.inFlight.get(w.id) ?? 0);
  }

  readiness(): Readiness {
    const all = [...this.workers.instances("decode"), ...this.workers.instances("prefill")];
    const decodeWorkers = this.workers.instances("decode").filter(usable).length;
    const prefillWorkers = this.workers.instances("prefill").filter(usable).length;
    return { ready: decodeWorkers > 0, decodeWorkers, prefillWorkers, stalledWorkers: all.filter((w) => w.load?.stalled).length };
  }

  private track(id: string, by: number) {
    const n = (this.inFlight.get(id) ?? 0) + by;
    if (n <= 0) this.inFlight.delete(id);
    else this.inFlight.set(id, n);
  }

  async *generate(req: GenerateRequest, signal: AbortSignal, route: DecodeRoute = {}): AsyncGenerator<DecodeChunk> {
    const live = this.liveDecoders();
    if (live.length === 0) throw new NoWorkersError();
    // Admission: refuse now, before any work, when every decode worker is full.
    if (live.every((w) => this.outstanding(w) >= this.maxRequestsPerWorker)) throw new OverloadedError(this.maxRequestsPerWorker);

    let prefill: PrefillResult | undefined;
    // A pinned request reuses the KV its pinned worker already holds: a remote prefill would compute it again.
    const pinned = route.pin !== undefined && live.some((w) => w.id === route.pin);
    const hashes = new Map<string, bigint[]>();
    const cached = !pinned && this.kvIndex ? Math.max(0, ...live.map((w) => this.kvIndex!.overlap(w.id, req.tokens, hashes).cachedTokens)) : 0;
    const decision = pinned ? { remote: false as const } : this.policy.decide(req, this.workers.instances("prefill"), this.inFlight, cached, this.prefillSelector);
    if (decision.remote) {
      const id = decision.instance.id;
      this.track(id, 1);
      // The prefill call is not cancelled with the client: its answer must arrive so that its KV offer can be
      // released (a cancel racing the reply would orphan the offer until it expires). It is bounded by the
      // request's deadline; a client that leaves stops waiting for it at once.
      const pending = this.workers.prefill(id, req, new AbortController().signal).finally(() => {
        this.track(id, -1);
        this.prefillSelector?.settled?.(req.id);
      });
      try {
        prefill = await untilAborted(pending, signal);
        traceStage?.("api.prefill_done");
      } catch (err) {
        if (signal.aborted) {
          pending.then((r) => this.release(r), () => {});
          throw err;
        }
        this.onPrefillFallback(err);
      }
    }

    // The prefill's first token goes to the client now, not after the decode worker pulled the KV and re-emitted it
    // (a hop to the decode worker, the pull, the import and a hop back: most of the disaggregated path's TTFT). The
    // decode worker is told (firstTokenSent) and continues after it; when the token alone ends the request, the
    // decode worker answers as before.
    // Only when every decode worker it may go to knows firstTokenSent (a worker from before it would send the token
    // again): checked on the live ones now, since a retry may go to any of them; and not when none is left (the
    // client gets a plain 503 then, not a token followed by an error).
    const decoders = this.liveDecoders();
    const everyDecoderSkips = decoders.length > 0 && decoders.every((w) => w.features?.includes(DecodeFeatures.firstTokenSent));
    const early = prefill && everyDecoderSkips && req.maxTokens > 1 && !req.stopTokenIds.includes(prefill.firstToken) ? prefill : undefined;
    let handedOver = false;
    try {
      if (early) {
        traceStage?.("api.first_token_from_prefill");
        // inside the try: a consumer that stops at this token (a stop string, a client gone) still has the offer released
        yield { tokens: [early.firstToken], ...(req.logprobs ? { logprobs: [early.firstTokenLogprobs ?? null] } : {}) };
      }
      const sentFirst = early ? [early.firstToken] : [];
      for await (const chunk of this.decodeWithRetries(req, prefill, signal, pinned ? route.pin : undefined, route.onDecode, sentFirst)) {
        handedOver = true;
        yield chunk;
      }
    } finally {
      // No decode worker produced anything from it: nobody else will release the offer.
      if (prefill && !handedOver) this.release(prefill);
    }
  }

  private candidateView(tokens: readonly number[], candidates: WorkerInstance[]): RouteDecision["candidates"] {
    const hashes = new Map<string, bigint[]>();
    return candidates.map((w) => ({
      id: w.id,
      outstanding: this.outstanding(w),
      ...(this.kvIndex ? { cachedTokens: this.kvIndex.overlap(w.id, tokens, hashes).cachedTokens } : {}),
    }));
  }

  private release(p: PrefillResult): void {
    this.releasePrefill(p).catch(() => {}); // best effort: the offer expires anyway
  }

  /** The decode workers that take new work, less those in `skip`. */
  private liveDecoders(skip?: ReadonlySet<string>): WorkerInstance[] {
    return this.workers.instances("decode").filter((w) => usable(w) && !skip?.has(w.id));
  }

  private async *decodeWithRetries(
    req: GenerateRequest,
    prefill: PrefillResult | undefined,
    signal: AbortSignal,
    pin?: string,
    onDecode?: (instanceId: string) => void,
    /** The prefill's first token when the caller already streamed it (DecodeRequest.firstTokenSent). */
    sentFirst: readonly number[] = [],
  ): AsyncGenerator<DecodeChunk> {
    // A decode worker that is gone (crashed, restarting) is skipped and the next one tried. Before the first
    // token the request is simply resent. After it, the request migrates: the prompt plus the tokens already
    // streamed go to another worker as a fresh aggregated request for the remaining tokens, with generatedOffset
    // = tokens so far so its sampling draws continue at (seed, offset): the client sees no lost or repeated token,
    // and greedy and seeded output are exactly what one worker would have produced (docs/design/failure-modes.md).
    const gone = new Set<string>();
    const generated: number[] = [...sentFirst];
    let lostWorker: unknown; // why the last worker went away mid-stream (a migration is due)
    for (let attempt = 1; ; attempt++) {
      const candidates = this.liveDecoders(gone);
      if (candidates.length === 0) throw new NoWorkersError(generated.length > 0 ? "the decode worker died mid-stream and no other decode worker is available" : undefined);
      // The pin holds for the first attempt only: a retry goes where the selector says.
      const pinnedTo = attempt === 1 ? candidates.find((w) => w.id === pin) : undefined;
      // Past the streamed first token only: until a decode worker produced more, the prefill's KV is still the start.
      const migrated = generated.length > sentFirst.length;
      const routed = migrated ? [...req.tokens, ...generated] : req.tokens;
      // Before the selector runs: the KV selector notes the prompt as cached where it sends it.
      const seen = this.onRoute ? this.candidateView(routed, candidates) : undefined;
      const decode = pinnedTo || this.selector.select(req, candidates, this.inFlight);
      onDecode?.(decode.id);
      if (seen) this.onRoute!({ requestId: req.id, tokens: routed, instanceId: decode.id, attempt, pinned: pinnedTo !== undefined, candidates: seen });
      // Counted once a worker takes the continuation over (not when none is left to take it).
      if (migrated) this.onMigration(generated.length, lostWorker);
      const sent: DecodeRequest = migrated
        ? {
            ...req,
            id: `${req.id}-m${attempt}`,
            tokens: [...req.tokens, ...generated],
            maxTokens: req.maxTokens - generated.length,
            generatedOffset: generated.length,
          }
        : prefill
          ? { ...req, prefill, ...(sentFirst.length ? { firstTokenSent: true } : {}) }
          : req;
      this.track(decode.id, 1);
      // The selector counts this request's prefill as queued on the worker until its first chunk (or its end).
      let prefilling = !pinnedTo; // a pinned request was not counted by the selector
      const settle = () => {
        if (!prefilling) return;
        prefilling = false;
        this.selector.settled?.(req.id);
      };
      try {
        for await (const chunk of this.workers.decode(decode.id, sent, signal)) {
          settle();
          generated.push(...chunk.tokens);
          // The mode and KV figures describe how the request started; a migrated continuation does not repeat them.
          yield migrated
            ? { tokens: chunk.tokens, ...(chunk.logprobs ? { logprobs: chunk.logprobs } : {}), finishReason: chunk.finishReason, error: chunk.error }
            : chunk;
        }
        return;
      } catch (err) {
        if (signal.aborted || !(err instanceof WorkerGoneError) || attempt >= this.maxDecodeAttempts) throw err;
        if (generated.length >= req.maxTokens) throw err;
        lostWorker = err;
        gone.add(decode.id);
      } finally {
        settle();
        this.track(decode.id, -1);
      }
    }
  }
}

/** A worker that takes new work: not draining, and its engine not stalled. */
function usable(w: WorkerInstance): boolean {
  return !w.load?.draining && !w.load?.stalled;
}

/** `p`, or a rejection with the signal's reason as soon as `signal` aborts (p itself keeps running). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
