// Conversions between float32 and the 16-bit float formats stored in safetensors files.
// Encoding rounds to nearest, ties to even, keeps NaN a NaN (quiet) and saturates to ±Inf like IEEE casts.

/** Tensor element types this package reads and writes (safetensors spelling). */
export type SafetensorsDtype = "F32" | "F16" | "BF16";
/** torch_dtype spelling used in config.json and on the CLI. */
export type TorchDtype = "float32" | "float16" | "bfloat16";

export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = { F32: 4, F16: 2, BF16: 2 };

const TORCH_TO_ST: Readonly<Record<TorchDtype, SafetensorsDtype>> = { float32: "F32", float16: "F16", bfloat16: "BF16" };
const ST_TO_TORCH: Readonly<Record<SafetensorsDtype, TorchDtype>> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

export function isSafetensorsDtype(v: unknown): v is SafetensorsDtype {
  return v === "F32" || v === "F16" || v === "BF16";
}
export function isTorchDtype(v: unknown): v is TorchDtype {
  return v === "float32" || v === "float16" || v === "bfloat16";
}
export function torchToSafetensorsDtype(d: TorchDtype): SafetensorsDtype {
  return TORCH_TO_ST[d];
}
export function safetensorsToTorchDtype(d: SafetensorsDtype): TorchDtype {
  return ST_TO_TORCH[d];
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 bits → bfloat16 bits (round to nearest even). */
export function float32ToBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return ((bits >>> 16) | 0x0040) & 0xffff; // NaN
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

export function bf16BitsToFloat32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/** float32 → IEEE half bits (round to nearest even, overflow → Inf, underflow through subnormals to ±0). */
export function float32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15; // rebias
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal
    mant |= 0x800000; // implicit bit
    const shift = 14 - e; // 13 + (1 - e)
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rem > half || (rem === half && (m & 1) === 1)) m += 1; // may carry into the smallest normal: correct
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h += 1; // carry into exponent gives Inf at the top: correct
  return sign | h;
}

export function f16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Decodes little-endian tensor bytes into a fresh Float32Array (or a zero-copy view for aligned F32). */
export function bytesToFloat32(bytes: Uint8Array, dtype: SafetensorsDtype): Float32Array {
  if (dtype === "F32") {
    if (bytes.byteLength % 4 !== 0) throw new RangeError(`F32 data of ${bytes.byteLength} bytes`);
    if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    return new Float32Array(bytes.slice().buffer);
  }
  if (bytes.byteLength % 2 !== 0) throw new RangeError(`${dtype} data of ${bytes.byteLength} bytes`);
  const n = bytes.byteLength / 2;
  const out = new Float32Array(n);
  if (dtype === "BF16") {
    const o32 = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) o32[i] = (bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16;
  } else {
    for (let i = 0; i < n; i++) out[i] = f16BitsToFloat32(bytes[2 * i] | (bytes[2 * i + 1] << 8));
  }
  return out;
}

/** Encodes float32 values as little-endian bytes of `dtype` (a fresh buffer). */
export function float32ToBytes(data: Float32Array, dtype: SafetensorsDtype): Uint8Array {
  if (dtype === "F32") return new Uint8Array(data.slice().buffer);
  const out = new Uint8Array(data.length * 2);
  const enc = dtype === "BF16" ? float32ToBf16Bits : float32ToF16Bits;
  for (let i = 0; i < data.length; i++) {
    const h = enc(data[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}
