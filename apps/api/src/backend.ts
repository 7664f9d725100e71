// What the HTTP layer calls to generate. The router implements it; tests may use a named test double.
import type { DecodeChunk, GenerateRequest } from "@trtd/apps-common";

export interface Readiness {
  ready: boolean;
  decodeWorkers: number;
  prefillWorkers: number;
  /** Workers (either role) whose engine reports no progress with work in hand: not routed to, not counted above. */
  stalledWorkers: number;
}

/**
 * Where one request should run, beyond the router's own choice: the choices of an `n` > 1 request
 * (choices.ts) go where choice 0 went, so its prompt KV, cached there, is not computed again.
 */
export interface DecodeRoute {
  /**
   * Run aggregated (no remote prefill) on this decode instance while it is live and takes work; otherwise (gone,
   * draining, stalled, or a retry after it failed) the request is routed as usual.
   */
  pin?: string;
  /** Told the decode instance of each attempt (after a migration, the last one holds the request's KV). */
  onDecode?: (instanceId: string) => void;
}

export interface GenerationBackend {
  readiness(): Readiness;
  /** Streams decode chunks; aborting `signal` cancels the request in every worker holding it. */
  generate(req: GenerateRequest, signal: AbortSignal, route?: DecodeRoute): AsyncIterable<DecodeChunk>;
}
