// Choosing a decode worker. Pluggable: a prefix/KV-aware selector implements the same interface later.
import type { GenerateRequest } from "@trtd/apps-common";
import type { WorkerInstance } from "./workers.js";

export interface DecodeSelector {
  /** Picks one of `candidates` (never empty) for `req`. */
  select(req: GenerateRequest, candidates: WorkerInstance[], inFlight: ReadonlyMap<string, number>): WorkerInstance;
  /**
   * The request chosen for by `select` has its first token (or ended): a selector that counts the prefill work it
   * queued on each worker stops counting this request's. The router calls it once per attempt, always.
   */
  settled?(requestId: string): void;
}

/** Loads are published periodically, so between publishes the router's own in-flight count is the better
 * estimate; the larger of the two is used. Ties go round robin. */
export function estimatedLoad(w: WorkerInstance, inFlight: ReadonlyMap<string, number>): number {
  const published = w.load ? w.load.activeRequests + w.load.queuedRequests : 0;
  return Math.max(published, inFlight.get(w.id) ?? 0);
}

export class LeastLoadedSelector implements DecodeSelector {
  private turn = 0;
  select(_req: GenerateRequest, candidates: WorkerInstance[], inFlight: ReadonlyMap<string, number>): WorkerInstance {
    const start = this.turn++ % candidates.length;
    let best = candidates[start];
    let bestLoad = estimatedLoad(best, inFlight);
    for (let i = 1; i < candidates.length; i++) {
      const w = candidates[(start + i) % candidates.length];
      const l = estimatedLoad(w, inFlight);
      if (l < bestLoad) [best, bestLoad] = [w, l];
    }
    return best;
  }
}
