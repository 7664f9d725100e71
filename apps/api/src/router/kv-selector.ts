// KV-aware decode choice (--router-mode kv) and plain round robin (--router-mode round-robin); the load mode is
// LeastLoadedSelector. The formula is documented in docs/design/serving.md ("KV-aware routing").
import type { GenerateRequest } from "@trtd/apps-common";
import { estimatedLoad, type DecodeSelector } from "./decode-selector.js";
import type { KvIndex } from "./kv-index.js";
import type { WorkerInstance } from "./workers.js";

export const ROUTER_MODES = ["kv", "load", "round-robin"] as const;
export type RouterMode = (typeof ROUTER_MODES)[number];

export interface KvSelectorWeights {
  /** Weight of the prefill work, in blocks: the prompt blocks a worker would compute, and those queued ahead (default 1). */
  overlapWeight?: number;
  /** Weight of the requests a worker already runs, one block each (default 1). */
  loadWeight?: number;
}

export const KV_SELECTOR_DEFAULTS = { overlapWeight: 1, loadWeight: 1 } as const;

/**
 * cost(w) = overlapWeight × (newBlocks(w) + queuedBlocks(w)) + loadWeight × outstanding(w), lowest wins; ties go
 * round robin. newBlocks = ceil(prompt tokens / tokens per block) − cachedBlocks(w) (the KV index);
 * queuedBlocks = the newBlocks of the requests this selector sent to w whose prefill has not ended (no first token
 * yet: `settled` not called); outstanding = requests on w (published active + queued, or this api's in-flight count
 * when larger). Every term estimates what the new request's first token waits for on w, in blocks of prefill: its
 * own uncached blocks, the prefills ahead of it (in-flight batching runs them in the same iterations), and one
 * decode step per running request in each of those iterations (about one block's compute on the reference executor).
 */
export class KvAwareSelector implements DecodeSelector {
  readonly weights: Required<KvSelectorWeights>;
  private turn = 0;
  /** Requests routed whose prefill has not ended, by request id: the worker and the blocks it has to compute. */
  readonly #prefilling = new Map<string, { workerId: string; blocks: number }>();
  constructor(
    private readonly index: KvIndex,
    weights: KvSelectorWeights = {},
  ) {
    this.weights = { ...KV_SELECTOR_DEFAULTS, ...weights };
  }

  /** Blocks of prefill queued on a worker by this selector's earlier choices. */
  queuedBlocks(workerId: string): number {
    let n = 0;
    for (const p of this.#prefilling.values()) if (p.workerId === workerId) n += p.blocks;
    return n;
  }

  /** Each candidate's cost terms (for tests and logs). */
  costs(
    req: GenerateRequest,
    candidates: WorkerInstance[],
    inFlight: ReadonlyMap<string, number>,
    hashes: Map<string, bigint[]> = new Map(),
  ): { id: string; newBlocks: number; queuedBlocks: number; outstanding: number; cost: number }[] {
    return candidates.map((w) => {
      const { cachedTokens, blockTokens } = this.index.overlap(w.id, req.tokens, hashes);
      const newBlocks = Math.ceil(req.tokens.length / blockTokens) - cachedTokens / blockTokens;
      const queuedBlocks = this.queuedBlocks(w.id);
      const outstanding = estimatedLoad(w, inFlight);
      return { id: w.id, newBlocks, queuedBlocks, outstanding, cost: this.weights.overlapWeight * (newBlocks + queuedBlocks) + this.weights.loadWeight * outstanding };
    });
  }

  select(req: GenerateRequest, candidates: WorkerInstance[], inFlight: ReadonlyMap<string, number>): WorkerInstance {
    const hashes = new Map<string, bigint[]>();
    const costs = this.costs(req, candidates, inFlight, hashes);
    const start = this.turn++ % candidates.length;
    let best = start;
    for (let i = 1; i < candidates.length; i++) {
      const k = (start + i) % candidates.length;
      if (costs[k]!.cost < costs[best]!.cost) best = k;
    }
    // Until the worker's KV events say so, the index assumes the prompt is cached where it was sent.
    this.index.notePrompt(candidates[best]!.id, req.tokens, hashes);
    this.#prefilling.set(req.id, { workerId: candidates[best]!.id, blocks: costs[best]!.newBlocks });
    return candidates[best]!;
  }

  /** The request's prefill has ended (its first token came, or it ended): it no longer queues ahead of others. */
  settled(requestId: string): void {
    this.#prefilling.delete(requestId);
  }
}

export class RoundRobinSelector implements DecodeSelector {
  private turn = 0;
  select(_req: GenerateRequest, candidates: WorkerInstance[]): WorkerInstance {
    return candidates[this.turn++ % candidates.length]!;
  }
}
