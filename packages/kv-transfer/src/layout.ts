import { createHash } from "node:crypto";
import { KvLayoutMismatchError } from "./errors.js";

/** Element types a KV cache may hold. */
export type KvDtype = "float32" | "float16" | "bfloat16" | "fp8" | "int8";

/** What identifies a KV layout: two sides can exchange KV only when all of it matches. */
export interface KvLayoutFields {
  /** Model identity (e.g. the executor's model fingerprint: weights, config). */
  model: string;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  dtype: KvDtype | string;
  tokensPerBlock: number;
  /** Bytes of one block (all layers' K and V for tokensPerBlock tokens). */
  bytesPerBlock: number;
}

/** A layout descriptor with its fingerprint (sha-256 over the fields, hex, 32 chars). */
export interface KvLayout extends KvLayoutFields {
  fingerprint: string;
}

const FIELDS = ["model", "numLayers", "numKvHeads", "headDim", "dtype", "tokensPerBlock", "bytesPerBlock"] as const;

/** Builds a layout descriptor and computes its fingerprint. Validates the fields. */
export function describeKvLayout(fields: KvLayoutFields): KvLayout {
  if (typeof fields.model !== "string" || fields.model.length === 0) {
    throw new KvLayoutMismatchError("KV layout: model identity must be a non-empty string", ["model"]);
  }
  for (const k of ["numLayers", "numKvHeads", "headDim", "tokensPerBlock", "bytesPerBlock"] as const) {
    const v = fields[k];
    if (!Number.isSafeInteger(v) || v <= 0) {
      throw new KvLayoutMismatchError(`KV layout: ${k} must be a positive integer (got ${String(v)})`, [k]);
    }
  }
  if (typeof fields.dtype !== "string" || fields.dtype.length === 0) {
    throw new KvLayoutMismatchError("KV layout: dtype must be a non-empty string", ["dtype"]);
  }
  const canonical = FIELDS.map((k) => `${k}=${String(fields[k])}`).join(";");
  const fingerprint = createHash("sha256").update(`trtd-kv-layout/v1;${canonical}`).digest("hex").slice(0, 32);
  const out: KvLayout = { fingerprint } as KvLayout;
  for (const k of FIELDS) (out as unknown as Record<string, unknown>)[k] = fields[k];
  return out;
}

/**
 * Layout of an executor's KV cache, from `ex.kvLayout()` of @trtd/trtllm (structurally typed so that this
 * package does not depend on the executor). The executor's own fingerprint is kept as the model identity.
 */
export function layoutFromExecutor(kv: {
  fingerprint: string;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  dtype: string;
  tokensPerBlock: number;
  bytesPerBlock: number;
}): KvLayout {
  return describeKvLayout({
    model: kv.fingerprint,
    numLayers: kv.numLayers,
    numKvHeads: kv.numKvHeads,
    headDim: kv.headDim,
    dtype: kv.dtype,
    tokensPerBlock: kv.tokensPerBlock,
    bytesPerBlock: kv.bytesPerBlock,
  });
}

/** Throws KvLayoutMismatchError naming every differing field unless `remote` is exchangeable with `local`. */
export function assertLayoutCompatible(local: KvLayout, remote: KvLayout): void {
  const diffs: string[] = [];
  for (const k of FIELDS) if (local[k] !== remote[k]) diffs.push(k);
  if (diffs.length === 0 && local.fingerprint !== remote.fingerprint) diffs.push("fingerprint");
  if (diffs.length > 0) {
    const detail = diffs
      .map((k) => `${k}: local ${String(local[k as keyof KvLayout])} vs remote ${String(remote[k as keyof KvLayout])}`)
      .join("; ");
    throw new KvLayoutMismatchError(`incompatible KV layout (${detail})`, diffs);
  }
}
