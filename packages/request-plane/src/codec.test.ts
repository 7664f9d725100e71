import { describe, expect, it } from "vitest";
import { binaryCodec } from "./codec-binary.js";
import { jsonCodec } from "./codec.js";
import { CodecError } from "./errors.js";

const samples: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  2147483647,
  -2147483648,
  2147483648, // beyond int32: float64 path
  1.5,
  -0.25,
  "",
  "héllo ✓ 𝄞",
  "x".repeat(200), // varint length > 127
  "ü".repeat(50), // non-ASCII, 100 bytes
  "é".repeat(43), // the first length that takes the byteLength path
  255,
  256,
  -7,
  [],
  [1, 2, 3],
  [1, 2.5, 3], // mixed: not packed
  [1, "a", null, [2]],
  { tokens: Array.from({ length: 1000 }, (_, i) => i * 97), final: false, finishReason: "length" },
  { nested: { deep: { bytes: new Uint8Array([0, 1, 254, 255]) } }, empty: {} },
];

describe("codecs", () => {
  for (const codec of [jsonCodec, binaryCodec]) {
    it(`${codec.name}: round-trips every sample`, () => {
      for (const v of samples) expect(codec.decode(codec.encode(v))).toEqual(v);
    });
    it(`${codec.name}: drops undefined object fields and rejects garbage with CodecError`, () => {
      expect(codec.decode(codec.encode({ a: 1, b: undefined }))).toEqual({ a: 1 });
      expect(() => codec.decode(new Uint8Array([0xff, 0x00, 0x13]))).toThrow(CodecError);
    });
  }

  it("binary: 2,000 random nested values round-trip (seeded)", () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const gen = (depth: number): unknown => {
      const r = rnd();
      if (depth > 3 || r < 0.3) {
        const k = Math.floor(rnd() * 7);
        if (k === 0) return Math.floor(rnd() * 2 ** 31) * (rnd() < 0.5 ? -1 : 1);
        if (k === 1) return rnd() * 1e6;
        if (k === 2) return String.fromCharCode(...Array.from({ length: Math.floor(rnd() * 80) }, () => 32 + Math.floor(rnd() * 2000)));
        if (k === 3) return rnd() < 0.5;
        if (k === 4) return null;
        if (k === 5) return Uint8Array.from({ length: Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256));
        return Math.floor(rnd() * 300);
      }
      if (r < 0.5) return Array.from({ length: Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 200_000) - 1000);
      if (r < 0.75) return Array.from({ length: Math.floor(rnd() * 6) }, () => gen(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 6) }, (_, i) => [`k${i}${"x".repeat(Math.floor(rnd() * 40))}`, gen(depth + 1)]));
    };
    for (let i = 0; i < 2000; i++) {
      const v = gen(0);
      expect(binaryCodec.decode(binaryCodec.encode(v))).toEqual(v);
    }
  });

  it("binary: packs int32 arrays (4 bytes per token), rejects truncation and unknown tags", () => {
    const tokens = Array.from({ length: 4096 }, (_, i) => i);
    const bytes = binaryCodec.encode({ tokens });
    expect(bytes.byteLength).toBeLessThan(4096 * 4 + 32);
    expect(() => binaryCodec.decode(bytes.subarray(0, bytes.length - 1))).toThrow(CodecError);
    expect(() => binaryCodec.decode(new Uint8Array([0xb2, 99]))).toThrow(/unknown tag/);
    expect(() => binaryCodec.encode({ f: () => 1 })).toThrow(CodecError);
    expect(Object.is(binaryCodec.decode(binaryCodec.encode(-0)), -0)).toBe(true);
  });
});
