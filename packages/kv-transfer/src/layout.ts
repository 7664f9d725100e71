// A KV layout, as this package checks it. The names (`KvLayout`, `KvDtype`) are @trtd/model's; the identity (the
// layout fingerprint) is the executor's, carried verbatim: nothing here hashes it again.
import { isKvDtype, KV_DTYPES, KV_LAYOUT_FIELDS, type KvLayout } from "@trtd/model";
import { KvLayoutMismatchError } from "./errors.js";

/** Validates a layout descriptor and returns a clean copy (only the {@link KvLayout} fields). */
export function describeKvLayout(fields: KvLayout): KvLayout {
  if (typeof fields.fingerprint !== "string" || fields.fingerprint.length === 0) {
    throw new KvLayoutMismatchError("KV layout: fingerprint must be a non-empty string", ["fingerprint"]);
  }
  for (const k of ["numLayers", "numKvHeads", "headDim", "tokensPerBlock", "bytesPerBlock"] as const) {
    const v = fields[k];
    if (!Number.isSafeInteger(v) || v <= 0) {
      throw new KvLayoutMismatchError(`KV layout: ${k} must be a positive integer (got ${String(v)})`, [k]);
    }
  }
  if (!isKvDtype(fields.dtype)) {
    throw new KvLayoutMismatchError(`KV layout: dtype must be one of ${KV_DTYPES.join(", ")} (got ${String(fields.dtype)})`, ["dtype"]);
  }
  const out = {} as Record<string, unknown>;
  for (const k of KV_LAYOUT_FIELDS) out[k] = fields[k];
  return out as unknown as KvLayout;
}

/**
 * The layout of an executor's KV cache, from `ex.kvLayout()` of @trtd/trtllm (structurally typed so that this
 * package does not depend on the executor): its fingerprint and fields, without where the memory lives.
 */
export function layoutFromExecutor(kv: KvLayout): KvLayout {
  return describeKvLayout(kv);
}

/** Throws KvLayoutMismatchError naming every differing field unless `remote` is exchangeable with `local`. */
export function assertLayoutCompatible(local: KvLayout, remote: KvLayout): void {
  const diffs = KV_LAYOUT_FIELDS.filter((k) => local[k] !== remote[k]);
  if (diffs.length > 0) {
    const detail = diffs.map((k) => `${k}: local ${String(local[k])} vs remote ${String(remote[k])}`).join("; ");
    throw new KvLayoutMismatchError(`incompatible KV layout (${detail})`, [...diffs]);
  }
}
