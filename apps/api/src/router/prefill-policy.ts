// Conditional disaggregation: when a request's prefill runs on a prefill worker.
import type { GenerateRequest } from "@trtd/apps-common";
import { estimatedLoad, type DecodeSelector } from "./decode-selector.js";
import type { WorkerInstance } from "./workers.js";

export interface PrefillPolicyOptions {
  /** Prompts shorter than this run aggregated: moving their KV costs more than it saves. */
  minPromptTokens?: number;
  /** A prefill worker at or above this many outstanding requests is not used. */
  maxPrefillLoad?: number;
  /** false: never disaggregate. */
  enabled?: boolean;
}

export const PREFILL_POLICY_DEFAULTS = { minPromptTokens: 32, maxPrefillLoad: 8, enabled: true } as const;

export type PrefillDecision =
  | { remote: true; instance: WorkerInstance }
  | { remote: false; reason: "disabled" | "no_prefill_worker" | "short_prompt" | "cached_prefix" | "single_token" | "prefill_busy" };

export class PrefillPolicy {
  readonly options: Required<PrefillPolicyOptions>;
  constructor(options: PrefillPolicyOptions = {}) {
    this.options = { ...PREFILL_POLICY_DEFAULTS, ...options };
  }
  /**
   * `cachedTokens`: the longest prompt prefix a decode worker already holds in its prefix cache (KV routing); the
   * prompt length left after it is what decides "short" (a request whose prefix its decode worker holds stays there).
   * `selector`: picks among the prefill workers under --max-prefill-load (KV routing: by prefix overlap and load);
   * without one, the least loaded.
   */
  decide(req: GenerateRequest, candidates: WorkerInstance[], inFlight: ReadonlyMap<string, number>, cachedTokens = 0, selector?: DecodeSelector): PrefillDecision {
    const o = this.options;
    if (!o.enabled) return { remote: false, reason: "disabled" };
    const up = candidates.filter((w) => !w.load?.draining && !w.load?.stalled);
    if (up.length === 0) return { remote: false, reason: "no_prefill_worker" };
    if (req.tokens.length < o.minPromptTokens) return { remote: false, reason: "short_prompt" };
    if (req.tokens.length - cachedTokens < o.minPromptTokens) return { remote: false, reason: "cached_prefix" };
    // Prefill alone produces the whole output: moving the KV would buy nothing.
    if (req.maxTokens <= 1) return { remote: false, reason: "single_token" };
    if (selector) {
      const roomy = up.filter((w) => estimatedLoad(w, inFlight) < o.maxPrefillLoad);
      return roomy.length === 0 ? { remote: false, reason: "prefill_busy" } : { remote: true, instance: selector.select(req, roomy, inFlight) };
    }
    let best: WorkerInstance | undefined;
    let bestLoad = Infinity;
    for (const w of up) {
      const l = estimatedLoad(w, inFlight);
      if (l < bestLoad) [best, bestLoad] = [w, l];
    }
    if (!best || bestLoad >= o.maxPrefillLoad) return { remote: false, reason: "prefill_busy" };
    return { remote: true, instance: best };
  }
}
