// Internal requests for the router tests, and a run of one through a Router to the end of its stream.
import type { DecodeChunk, GenerateRequest } from "@trtd/apps-common";
import type { Router } from "../../src/index.js";

/** A greedy request for `tokens` (4 new tokens, 30 s deadline) with a fresh id; `extra` overrides any field. */
export function generateRequest(tokens: number[], extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    id: `r${Math.random().toString(16).slice(2)}`,
    tokens,
    sampling: { temperature: 0, topP: 1, topK: 0 },
    maxTokens: 4,
    stopTokenIds: [],
    deadline: Date.now() + 30_000,
    ...extra,
  };
}

/** Every chunk the router streams for `r`. */
export async function runThrough(router: Router, r: GenerateRequest): Promise<DecodeChunk[]> {
  const out: DecodeChunk[] = [];
  for await (const c of router.generate(r, new AbortController().signal)) out.push(c);
  return out;
}
