import { join, resolve } from "node:path";
import { expect } from "vitest";
import { Executor, type ExecutorOptions, type GenerateRequest } from "../src/index.js";

export const repoRoot = resolve(import.meta.dirname, "../../..");
export const tinyDir = join(repoRoot, "models/tiny");

export function openTiny(options: ExecutorOptions = {}): Executor {
  return Executor.open(tinyDir, { threads: 2, ...options });
}

/** Every KV block back in the pool, nothing queued, running, pinned or reserved. */
export function expectIdle(ex: Executor): void {
  const s = ex.stats();
  expect({
    active: s.activeRequests,
    queued: s.queuedRequests,
    used: s.kvBlocksUsed,
    pinned: s.pinnedExports,
    imports: s.pendingImports,
  }).toEqual({ active: 0, queued: 0, used: 0, pinned: 0, imports: 0 });
  expect(s.kvBlocksFree).toBe(s.kvBlocksTotal);
}

export async function run(ex: Executor, request: GenerateRequest) {
  return ex.generate(request).collect();
}

/** Deterministic pseudo-random prompt of n ids in [0, vocab). */
export function prompt(n: number, salt: number, vocab = 100_000): number[] {
  const out: number[] = [];
  let x = (salt * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x ^ (x >>> 15), 2246822519) + 374761393) >>> 0;
    out.push(x % vocab);
  }
  return out;
}
