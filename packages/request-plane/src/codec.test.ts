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

  it("binary: packs int32 arrays (4 bytes per token), rejects truncation and unknown tags", () => {
    const tokens = Array.from({ length: 4096 }, (_, i) => i);
    const bytes = binaryCodec.encode({ tokens });
    expect(bytes.byteLength).toBeLessThan(4096 * 4 + 32);
    expect(() => binaryCodec.decode(bytes.subarray(0, bytes.length - 1))).toThrow(CodecError);
    expect(() => binaryCodec.decode(new Uint8Array([0xb1, 99]))).toThrow(/unknown tag/);
    expect(() => binaryCodec.encode({ f: () => 1 })).toThrow(CodecError);
    expect(Object.is(binaryCodec.decode(binaryCodec.encode(-0)), -0)).toBe(true);
  });
});
