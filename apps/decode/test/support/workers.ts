// Helpers shared by the worker tests: wire requests, collecting a decode stream, bounded waits, idle checks.
import type { DecodeChunk, DecodeRequest, GenerateRequest } from "@trtd/apps-common";
import type { EndpointClient } from "@trtd/request-plane";
import { eventually } from "@trtd/test-support";

export const wireRequest = (tokens: number[], extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  id: `r${Math.random().toString(16).slice(2)}`,
  tokens,
  sampling: { temperature: 0, topP: 1, topK: 0 },
  maxTokens: 16,
  stopTokenIds: [],
  deadline: Date.now() + 60_000,
  ...extra,
});

export async function collectFrom(client: EndpointClient<DecodeRequest, DecodeChunk>, instanceId: string, req: DecodeRequest): Promise<DecodeChunk[]> {
  const out: DecodeChunk[] = [];
  for await (const c of client.generate(req, { instanceId })) out.push(c);
  return out;
}

export const tokensOf = (chunks: DecodeChunk[]) => chunks.flatMap((c) => c.tokens);

/** Waits (polling every 20 ms) until `cond` holds; throws naming `what` after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  await eventually(cond, timeoutMs, what, { intervalMs: 20, retryOnError: false });
}

type StatsOwner = { executor: { stats(): { activeRequests: number; queuedRequests: number; kvBlocksUsed: number; pinnedExports: number; pendingImports: number } } };

/** The executor figures that must be zero when a worker holds nothing. */
export const idleStats = (w: StatsOwner) => {
  const s = w.executor.stats();
  return { active: s.activeRequests, queued: s.queuedRequests, kv: s.kvBlocksUsed, pinned: s.pinnedExports, imports: s.pendingImports };
};
export const IDLE = { active: 0, queued: 0, kv: 0, pinned: 0, imports: 0 };
