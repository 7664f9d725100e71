import { describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  bf16BitsToFloat32,
  decodeSafetensors,
  encodeSafetensors,
  f16BitsToFloat32,
  float32ToBf16Bits,
  float32ToF16Bits,
  MalformedSafetensorsError,
  parseSafetensorsHeader,
  readSafetensors,
  readSafetensorsHeader,
  SafetensorsFile,
  UnsupportedDtypeError,
  writeSafetensors,
  type SafetensorsDtype,
} from "@trtd/model";
import { tempDirs } from "./helpers.js";

const tmp = tempDirs();

const EDGE = [0, -0, 1, -1, 0.5, 1 / 3, 65504, -65504, 65520, 1e6, 2 ** -14, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 1e-30, 3.4e38, Infinity, -Infinity, NaN, 1 + 2 ** -11, 1 + 3 * 2 ** -11];

/** Builds a safetensors image by hand (independent of the writer). */
function handImage(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe("16-bit conversions", () => {
  it("every f16 bit pattern survives decode → encode (NaNs stay NaN)", () => {
    for (let h = 0; h < 65536; h++) {
      const x = f16BitsToFloat32(h);
      const back = float32ToF16Bits(x);
      if (Number.isNaN(x)) expect(Number.isNaN(f16BitsToFloat32(back))).toBe(true);
      else expect(back).toBe(h);
    }
  });
  it("every bf16 bit pattern survives decode → encode", () => {
    for (let h = 0; h < 65536; h++) {
      const x = bf16BitsToFloat32(h);
      const back = float32ToBf16Bits(x);
      if (Number.isNaN(x)) expect(Number.isNaN(bf16BitsToFloat32(back))).toBe(true);
      else expect(back).toBe(h);
    }
  });
  it("rounds to nearest, ties to even, saturates and flushes like IEEE", () => {
    expect(f16BitsToFloat32(float32ToF16Bits(1 + 2 ** -11))).toBe(1); // tie → even (down)
    expect(f16BitsToFloat32(float32ToF16Bits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9); // tie → even (up)
    expect(f16BitsToFloat32(float32ToF16Bits(65520))).toBe(Infinity); // halfway past max rounds up to Inf
    expect(f16BitsToFloat32(float32ToF16Bits(65519))).toBe(65504);
    expect(f16BitsToFloat32(float32ToF16Bits(2 ** -25))).toBe(0); // tie between 0 and min subnormal → 0
    expect(f16BitsToFloat32(float32ToF16Bits(3 * 2 ** -26))).toBe(2 ** -24);
    expect(Object.is(f16BitsToFloat32(float32ToF16Bits(-0)), -0)).toBe(true);
    expect(bf16BitsToFloat32(float32ToBf16Bits(1 + 2 ** -8))).toBe(1); // tie → even
    expect(bf16BitsToFloat32(float32ToBf16Bits(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6);
    expect(bf16BitsToFloat32(float32ToBf16Bits(3.4e38))).toBe(Infinity);
  });
  it("encodes random float32 values to the nearest representable value", () => {
    let s = 12345;
    for (let n = 0; n < 20000; n++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const x = Math.fround(((s / 2 ** 32) - 0.5) * 2 ** ((n % 36) - 26)); // magnitudes from f16 subnormals to 2^9
      for (const [enc, dec] of [[float32ToF16Bits, f16BitsToFloat32], [float32ToBf16Bits, bf16BitsToFloat32]] as const) {
        const h = enc(x);
        const err = Math.abs(dec(h) - x);
        expect(err).toBeLessThanOrEqual(Math.abs(dec(h + 1) - x));
        if ((h & 0x7fff) !== 0) expect(err).toBeLessThanOrEqual(Math.abs(dec(h - 1) - x));
      }
    }
  });
});

describe("safetensors write and read", () => {
  for (const dtype of ["F32", "F16", "BF16"] as SafetensorsDtype[]) {
    it(`round trips ${dtype} including edge values`, () => {
      const edge = new Float32Array(EDGE);
      const ramp = new Float32Array(24).map((_, i) => (i - 12) / 7);
      const dir = tmp();
      const path = join(dir, "t.safetensors");
      writeSafetensors(path, { "b.edge": { shape: [EDGE.length], data: edge }, "a.ramp": { shape: [4, 6], data: ramp } }, { dtype, metadata: { format: "pt" } });
      const got = readSafetensors(path);
      const enc = dtype === "F16" ? (x: number) => f16BitsToFloat32(float32ToF16Bits(x)) : dtype === "BF16" ? (x: number) => bf16BitsToFloat32(float32ToBf16Bits(x)) : (x: number) => Math.fround(x);
      expect(got.get("a.ramp")!.shape).toEqual([4, 6]);
      expect(got.get("a.ramp")!.dtype).toBe(dtype);
      expect(Array.from(got.get("a.ramp")!.data)).toEqual(Array.from(ramp, enc));
      const e = got.get("b.edge")!.data;
      for (let i = 0; i < EDGE.length; i++) {
        if (Number.isNaN(EDGE[i])) expect(Number.isNaN(e[i])).toBe(true);
        else expect(Object.is(e[i], enc(EDGE[i]))).toBe(true);
      }
      expect(readSafetensorsHeader(path).metadata).toEqual({ format: "pt" });
      // The streaming writer and the in-memory encoder produce the same bytes.
      const image = encodeSafetensors({ "a.ramp": { shape: [4, 6], data: ramp }, "b.edge": { shape: [EDGE.length], data: edge } }, { dtype, metadata: { format: "pt" } });
      expect(Buffer.compare(readFileSync(path), Buffer.from(image))).toBe(0);
    });
  }

  it("writes an 8-byte aligned header, tensors sorted by name with contiguous offsets", () => {
    const image = encodeSafetensors(
      new Map([
        ["z", { shape: [3], data: new Float32Array(3) }],
        ["a", { shape: [1, 5], data: new Float32Array(5) }],
        ["m", { shape: [], data: new Float32Array(1) }],
      ]),
      { dtype: "F16" },
    );
    const n = Number(new DataView(image.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(image.subarray(8, 8 + n)));
    expect(Object.keys(header)).toEqual(["a", "m", "z"]);
    expect(header.a.data_offsets).toEqual([0, 10]);
    expect(header.m).toEqual({ dtype: "F16", shape: [], data_offsets: [10, 12] });
    expect(header.z.data_offsets).toEqual([12, 18]);
    expect(image.length).toBe(8 + n + 18);
    expect(decodeSafetensors(image).tensors.get("m")!.shape).toEqual([]);
  });

  it("reads a hand-built file with unsorted offsets and an unaligned header", () => {
    const data = new Uint8Array(12);
    const dv = new DataView(data.buffer);
    dv.setFloat32(0, 2.5, true); // tensor "late" lives first
    dv.setUint16(4, 0x3c00, true); // f16 1.0
    dv.setUint16(6, 0xc000, true); // f16 -2.0
    dv.setUint16(8, 0x3f80, true); // bf16 1.0
    dv.setUint16(10, 0x4040, true); // bf16 3.0
    const image = handImage({ h: { dtype: "F16", shape: [2], data_offsets: [4, 8] }, late: { dtype: "F32", shape: [1], data_offsets: [0, 4] }, b: { dtype: "BF16", shape: [2, 1], data_offsets: [8, 12] } }, data);
    const { tensors } = decodeSafetensors(image);
    expect(Array.from(tensors.get("late")!.data)).toEqual([2.5]);
    expect(Array.from(tensors.get("h")!.data)).toEqual([1, -2]);
    expect(Array.from(tensors.get("b")!.data)).toEqual([1, 3]);
  });

  it("SafetensorsFile reads one tensor at a time and closes", () => {
    const dir = tmp();
    const path = join(dir, "x.safetensors");
    writeSafetensors(path, { w: { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) } });
    const f = SafetensorsFile.open(path);
    expect(f.tensorNames).toEqual(["w"]);
    expect(Array.from(f.read("w").data)).toEqual([1, 2, 3, 4]);
    f.close();
    expect(() => f.read("w")).toThrow(/closed/);
  });

  it("rejects malformed files with clear errors", () => {
    const bad = (image: Uint8Array): Error => {
      try {
        parseSafetensorsHeader(image, image.length, "bad.safetensors");
      } catch (e) {
        return e as Error;
      }
      throw new Error("no error");
    };
    const short = bad(new Uint8Array(5));
    expect(short).toBeInstanceOf(MalformedSafetensorsError);
    expect(short.message).toMatch(/too short/);
    const long = new Uint8Array(16);
    new DataView(long.buffer).setBigUint64(0, 1000n, true);
    expect(bad(long).message).toMatch(/header length 1000 runs past the end/);
    const notJson = handImage({});
    notJson.set(new TextEncoder().encode("{x"), 8);
    expect(bad(notJson).message).toMatch(/not valid UTF-8 JSON/);
    expect(bad(handImage([1, 2])).message).toMatch(/not a JSON object/);
    const i64 = bad(handImage({ t: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)));
    expect(i64).toBeInstanceOf(UnsupportedDtypeError);
    expect(i64.message).toMatch(/tensor t has dtype I64/);
    expect(bad(handImage({ t: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8))).message).toMatch(/tensor t: data_offsets span 8 bytes.*needs 12/);
    expect(bad(handImage({ t: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8))).message).toMatch(/past the data section/);
    expect(bad(handImage({ t: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4))).message).toMatch(/shape/);
    expect(bad(handImage({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8))).message).toMatch(/overlap/);
    expect(bad(handImage({ __metadata__: { n: 1 } })).message).toMatch(/__metadata__.n is not a string/);
    expect(bad(long)).toHaveProperty("code", "MALFORMED_SAFETENSORS");
  });

  it("SafetensorsFile.open reports truncated files with the path", () => {
    const dir = tmp();
    const path = join(dir, "trunc.safetensors");
    const image = encodeSafetensors({ w: { shape: [4], data: new Float32Array(4) } });
    writeFileSync(path, image.subarray(0, image.length - 4));
    expect(() => SafetensorsFile.open(path)).toThrow(MalformedSafetensorsError);
    expect(() => SafetensorsFile.open(path)).toThrow(new RegExp(`${path}: tensor w: data ends at 16, past the data section of 12 bytes`));
  });
});
