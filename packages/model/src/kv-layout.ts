/**
 * The names of a KV cache's layout, owned here for every package: the executor binding (@trtd/trtllm) reports
 * layouts in these terms, and @trtd/kv-transfer moves KV between two sides whose layouts are equal.
 */

/** Element types of a KV cache, in the order of the executor ABI's `trtd_kv_dtype` (index = enum value). */
export const KV_DTYPES = ["float32", "float16", "bfloat16", "fp8_e4m3"] as const;
export type KvDtype = (typeof KV_DTYPES)[number];

export function isKvDtype(v: unknown): v is KvDtype {
  return typeof v === "string" && (KV_DTYPES as readonly string[]).includes(v);
}

/**
 * The identity of a KV layout: two sides exchange KV byte for byte only when all of it is equal. `fingerprint` is
 * the executor's layout fingerprint (`trtd_executor_kv_layout`: a digest of the model's fingerprint and the fields
 * below), computed there once and carried verbatim by everyone else.
 */
export interface KvLayout {
  fingerprint: string;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  dtype: KvDtype;
  tokensPerBlock: number;
  /** Bytes of one block (all layers' K and V for tokensPerBlock tokens). */
  bytesPerBlock: number;
}

/** The fields of a {@link KvLayout}, in the order they are compared and reported. */
export const KV_LAYOUT_FIELDS = ["fingerprint", "numLayers", "numKvHeads", "headDim", "dtype", "tokensPerBlock", "bytesPerBlock"] as const satisfies readonly (keyof KvLayout)[];
