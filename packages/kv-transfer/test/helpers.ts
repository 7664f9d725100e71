import { randomFillSync } from "node:crypto";
import type { Executor } from "@trtd/trtllm";
import { expect } from "vitest";
import type { KvLayout } from "@trtd/model";
import { eventually } from "@trtd/test-support";
import { BufferKvSink, BufferKvSource, describeKvLayout } from "../src/index.js";

export const layout: KvLayout = describeKvLayout({
  fingerprint: "test-model-layout",
  numLayers: 2,
  numKvHeads: 2,
  headDim: 16,
  dtype: "float32",
  tokensPerBlock: 16,
  bytesPerBlock: 2 * 2 * 2 * 16 * 16 * 4,
});

/** Random KV of `blocks` blocks in plain memory, plus a counter of releases. */
export function randomSource(blocks: number, bytesPerBlock = layout.bytesPerBlock) {
  const segs = Array.from({ length: blocks }, () => randomFillSync(new Uint8Array(bytesPerBlock)));
  let released = 0;
  const source = new BufferKvSource(segs, blocks * 16, () => released++);
  return { source, segs, released: () => released };
}

export function sinkFor(blocks: number, bytesPerBlock = layout.bytesPerBlock) {
  return new BufferKvSink(blocks * 16, blocks, bytesPerBlock);
}

export function sameBytes(a: Uint8Array[], b: Uint8Array[]): boolean {
  return Buffer.compare(Buffer.concat(a), Buffer.concat(b)) === 0;
}

/** Polls `cond` every 10 ms (test-support's bounded wait); a time-out throws, naming the condition by its source. */
export async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  await eventually(cond, timeoutMs, String(cond), { intervalMs: 10, retryOnError: false });
}

/** The generated tiny model the process-level tests run on (built by the vitest globalSetup). */
export { modelDir as tiny } from "@trtd/test-support";

/** Nothing running, no KV block used, nothing pinned for export or reserved for import. */
export function expectIdle(e: Executor): void {
  const s = e.stats();
  expect({ active: s.activeRequests, used: s.kvBlocksUsed, pinned: s.pinnedExports, imports: s.pendingImports }).toEqual({ active: 0, used: 0, pinned: 0, imports: 0 });
}
