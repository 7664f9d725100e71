// KV-aware decode choice (--router-mode kv) and plain round robin (--router-mode round-robin); the load mode is
// LeastLoadedSelector. The formula is documented in docs/design/serving.md ("KV-aware routing").
import type { GenerateRequest } from "@trtd/apps-common";
import { estimatedLoad, type DecodeSelector } from "./decode-selector.js";
import type { KvIndex } from "./kv-index.js";
import type { WorkerInstance } from "./workers.js";

export const ROUTER_MODES = ["kv", "load", "round-robin"] as const;
export type RouterMode = (typeof ROUTER_MODES)[number];

export interface KvSelectorWeights {
  /** Weight of the prompt blocks a worker would have to compute (default 1). */
  overlapWeight?: number;
  /** Weight of the blocks a worker already holds for running requests (default 1). */
  loadWeight?: number;
}

export const KV_SELECTOR_DEFAULTS = { overlapWeight: 1, loadWeight: 1 } as const;

/**
 * cost(w) = overlapWeight × (promptBlocks − cachedBlocks(w)) + loadWeight × loadBlocks(w), lowest wins; ties go
 * round robin. promptBlocks = ceil(prompt tokens / tokens per block); cachedBlocks from the KV index;
 * loadBlocks = max(published kvBlocksUsed, outstanding requests × promptBlocks), the second term an estimate from
 * this api's own count while the published figure lags.
 */
export class KvAwareSelector implements DecodeSelector {
  readonly weights: Required<KvSelectorWeights>;
  private turn = 0;
  constructor(
    private readonly index: KvIndex,
    weights: KvSelectorWeights = {},
  ) {
    this.weights = { ...KV_SELECTOR_DEFAULTS, ...weights };
  }

  /** Each candidate's cost terms (for tests and logs). */
  costs(
    req: GenerateRequest,
    candidates: WorkerInstance[],
    inFlight: ReadonlyMap<string, number>,
    hashes: Map<string, bigint[]> = new Map(),
  ): { id: string; newBlocks: number; loadBlocks: number; cost: number }[] {
    return candidates.map((w) => {
      const { cachedTokens, blockTokens } = this.index.overlap(w.id, req.tokens, hashes);
      const promptBlocks = Math.ceil(req.tokens.length / blockTokens);
      const newBlocks = promptBlocks - cachedTokens / blockTokens;
      const loadBlocks = Math.max(w.load?.kvBlocksUsed ?? 0, estimatedLoad(w, inFlight) * promptBlocks);
      return { id: w.id, newBlocks, loadBlocks, cost: this.weights.overlapWeight * newBlocks + this.weights.loadWeight * loadBlocks };
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
    return candidates[best]!;
  }
}

export class RoundRobinSelector implements DecodeSelector {
  private turn = 0;
  select(_req: GenerateRequest, candidates: WorkerInstance[]): WorkerInstance {
    return candidates[this.turn++ % candidates.length]!;
  }
}
