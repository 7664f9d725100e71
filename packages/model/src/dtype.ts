// Conversions between float32 and the 16- and 8-bit float formats stored in safetensors files.
// 16-bit encoding rounds to nearest, ties to even, keeps NaN a NaN (quiet) and saturates to ±Inf like IEEE casts;
// F8_E4M3 (no infinities) saturates to ±448 instead.

/**
 * Tensor element types this package reads and writes (safetensors spelling). F8_E4M3 is OCP FP8 E4M3 ("e4m3fn":
 * no infinities, S.1111.111 is NaN), the weights of FP8 checkpoints.
 */
export type SafetensorsDtype = "F32" | "F16" | "BF16" | "F8_E4M3";
/** torch_dtype spelling used in config.json and on the CLI. */
export type TorchDtype = "float32" | "float16" | "bfloat16";

export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1 };

const TORCH_TO_ST: Readonly<Record<TorchDtype, SafetensorsDtype>> = { float32: "F32", float16: "F16", bfloat16: "BF16" };
const ST_TO_TORCH: Readonly<Record<SafetensorsDtype, TorchDtype | "float8_e4m3fn">> = { F32: "float32", F16: "float16", BF16: "bfloat16", F8_E4M3: "float8_e4m3fn" };

export function isSafetensorsDtype(v: unknown): v is SafetensorsDtype {
  return v === "F32" || v === "F16" || v === "BF16" || v === "F8_E4M3";
}
export function isTorchDtype(v: unknown): v is TorchDtype {
  return v === "float32" || v === "float16" || v === "bfloat16";
}
export function torchToSafetensorsDtype(d: TorchDtype): SafetensorsDtype {
  return TORCH_TO_ST[d];
}
/** torch's name for a stored dtype (float8_e4m3fn for F8_E4M3, which is never a model's torch_dtype). */
export function safetensorsToTorchDtype(d: SafetensorsDtype): TorchDtype | "float8_e4m3fn" {
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

/** The largest finite F8_E4M3 value (S.1111.110). */
export const FP8_E4M3_MAX = 448;

/** F8_E4M3 bits → float, exactly: normals (1 + man/8)·2^(exp-7), subnormals man/8·2^-6, S.1111.111 NaN. */
export function e4m3BitsToFloat32(b: number): number {
  const exp = (b >>> 3) & 15;
  const man = b & 7;
  const v = exp === 15 && man === 7 ? NaN : exp === 0 ? man * 2 ** -9 : (1 + man / 8) * 2 ** (exp - 7);
  return b & 0x80 ? -v : v;
}

const E4M3_TABLE = Float32Array.from({ length: 256 }, (_, b) => e4m3BitsToFloat32(b));

/**
 * float → F8_E4M3 bits: round to nearest, ties to even; magnitudes past 448 saturate to ±448 (as llm-compressor
 * clamps before casting: the format has no infinity); NaN → 0x7f.
 */
export function float32ToE4m3Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(x);
  if (a >= FP8_E4M3_MAX) return sign | 0x7e;
  // Codes 0..0x7e are monotonic in value, and within a binade they step by one quantum: quantum 2^-9 below 2^-6
  // (subnormals, and the first normal binade has the same quantum), 2^(e-3) in the binade [2^e, 2^(e+1)).
  let e = Math.max(-6, Math.floor(Math.log2(a)));
  if (2 ** e > a && e > -6) e -= 1; // log2 rounding near a power of two
  if (2 ** (e + 1) <= a) e += 1;
  const q = 2 ** (e - 3);
  const units = a / q; // exact: a power-of-two division
  let m = Math.floor(units);
  const rem = units - m;
  if (rem > 0.5 || (rem === 0.5 && (m & 1) === 1)) m += 1;
  // m units of q: the code is (exp << 3 | man) = (e + 7) * 8 + (m - 8), and m = 16 carries into the next binade;
  // for e = -6 this is m itself (subnormals, then the first normal binade).
  return sign | Math.min(((e + 7) << 3) + (m - 8), 0x7e);
}

/** Decodes little-endian tensor bytes into a fresh Float32Array (or a zero-copy view for aligned F32). */
export function bytesToFloat32(bytes: Uint8Array, dtype: SafetensorsDtype): Float32Array {
  if (dtype === "F8_E4M3") return Float32Array.from(bytes, (b) => E4M3_TABLE[b]);
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
  if (dtype === "F8_E4M3") return Uint8Array.from(data, float32ToE4m3Bits);
  const out = new Uint8Array(data.length * 2);
  const enc = dtype === "BF16" ? float32ToBf16Bits : float32ToF16Bits;
  for (let i = 0; i < data.length; i++) {
    const h = enc(data[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}
