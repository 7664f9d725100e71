import { describeKvLayout } from "../src/index.js";

/** Llama-3-8B-like fp16 KV blocks: 32 layers × K,V × 8 kv heads × 128 dims × 2 B × 16 tokens = 2 MiB per block. */
export const BLOCK_BYTES = 2 * 1024 * 1024;
export const benchLayout = describeKvLayout({
  fingerprint: "bench-llama-3-8b-like",
  numLayers: 32,
  numKvHeads: 8,
  headDim: 128,
  dtype: "float16",
  tokensPerBlock: 16,
  bytesPerBlock: BLOCK_BYTES,
});
