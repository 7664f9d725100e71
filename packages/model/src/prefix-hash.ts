// The prefix cache's block keys, computed from token ids as the executors compute them
// (@trtd/trtllm's native/src/kv_block_pool.hpp), so a router can tell which of a request's blocks a worker holds from the
// hashes that worker's KV events name. Pure BigInt arithmetic; no native call.

const MASK = (1n << 64n) - 1n;
const MUL = 0x9e3779b97f4a7c15n;
const FINAL_MUL = 0xbf58476d1ce4e5b9n;
const ROOT_SEED = 0x70726566697863n; // "prefixc"
const BLOCK_SEED = 0x6b76626c6f636bn; // "kvblock"

/** The executors' hash_bytes (native/src/model_config.cpp): a 64-bit multiply-xor over little-endian words. */
function hashBytes(bytes: Uint8Array, seed: bigint): bigint {
  let h = seed;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let i = 0;
  for (; i + 8 <= bytes.length; i += 8) {
    h = ((h ^ view.getBigUint64(i, true)) * MUL) & MASK;
    h ^= h >> 29n;
  }
  for (; i < bytes.length; i++) {
    h = ((h ^ BigInt(bytes[i]!)) * MUL) & MASK;
    h ^= h >> 29n;
  }
  h ^= BigInt(bytes.length);
  h = (h * FINAL_MUL) & MASK;
  h ^= h >> 31n;
  return h;
}

/**
 * The chain hashes of the full blocks of `tokens` (floor(length / tokensPerBlock) values, in order) for a model
 * whose executor reports `modelFingerprint` (`Executor.model.fingerprint`): the keys under which an executor with that many tokens
 * per block caches those blocks and names them in its KV events.
 */
export function prefixBlockHashes(tokens: ArrayLike<number>, tokensPerBlock: number, modelFingerprint: string): bigint[] {
  if (!Number.isInteger(tokensPerBlock) || tokensPerBlock < 1) throw new RangeError(`tokensPerBlock must be a positive integer, got ${tokensPerBlock}`);
  let parent = hashBytes(new TextEncoder().encode(modelFingerprint), ROOT_SEED);
  const buf = new Uint8Array(12 + 4 * tokensPerBlock);
  const view = new DataView(buf.buffer);
  const out: bigint[] = [];
  for (let b = 0; (b + 1) * tokensPerBlock <= tokens.length; b++) {
    view.setBigUint64(0, parent, true);
    view.setUint32(8, b, true);
    for (let k = 0; k < tokensPerBlock; k++) view.setInt32(12 + 4 * k, tokens[b * tokensPerBlock + k]!, true);
    parent = hashBytes(buf, BLOCK_SEED);
    out.push(parent);
  }
  return out;
}
