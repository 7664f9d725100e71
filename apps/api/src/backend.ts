// What the HTTP layer calls to generate. The router implements it; tests may use a named test double.
import type { DecodeChunk, GenerateRequest } from "@trtd/apps-common";

export interface Readiness {
  ready: boolean;
  decodeWorkers: number;
  prefillWorkers: number;
  /** Workers (either role) whose engine reports no progress with work in hand: not routed to, not counted above. */
  stalledWorkers: number;
}

export interface GenerationBackend {
  readiness(): Readiness;
  /** Streams decode chunks; aborting `signal` cancels the request in every worker holding it. */
  generate(req: GenerateRequest, signal: AbortSignal): AsyncIterable<DecodeChunk>;
}
