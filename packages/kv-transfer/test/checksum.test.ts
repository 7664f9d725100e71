import { randomFillSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { checksumImplementation } from "../src/index.js";
import { copyWithCrc32c, crc32c, crc32cJs } from "../src/checksum.js";

describe("CRC-32C", () => {
  it("matches the standard check value in both implementations", () => {
    const v = new TextEncoder().encode("123456789");
    expect(crc32cJs(0, v)).toBe(0xe3069283);
    expect(crc32c(0, v)).toBe(0xe3069283);
  });

  it("native helper is built and agrees with the JavaScript fallback, chained and on odd offsets", () => {
    expect(checksumImplementation()).toMatch(/^native/);
    const data = randomFillSync(new Uint8Array(1 << 20));
    for (const [from, to] of [[0, 1 << 20], [3, 1001], [7, 8], [13, 70_001]] as const) {
      const part = data.subarray(from, to);
      expect(crc32c(0, part)).toBe(crc32cJs(0, part));
    }
    const whole = crc32c(0, data);
    expect(crc32c(crc32c(0, data.subarray(0, 12345)), data.subarray(12345))).toBe(whole);
    const dst = new Uint8Array(data.length + 16);
    expect(copyWithCrc32c(dst.subarray(5, 5 + data.length), data, 0)).toBe(whole);
    expect(Buffer.compare(dst.subarray(5, 5 + data.length), data)).toBe(0);
    expect(dst[4]).toBe(0);
    expect(dst[5 + data.length]).toBe(0);
  });

  it("native three-lane blocks (3 x 4096 bytes) agree with the JavaScript table at and around block edges", () => {
    const data = randomFillSync(new Uint8Array(5 * 12_288 + 64));
    for (const n of [12_287, 12_288, 12_289, 24_576, 24_583, 36_864 + 31, 5 * 12_288 + 64]) {
      for (const from of [0, 1, 7]) {
        const part = data.subarray(from, Math.min(data.length, from + n));
        const js = crc32cJs(0, part);
        expect(crc32c(0, part)).toBe(js);
        expect(crc32c(crc32c(0, part.subarray(0, 5000)), part.subarray(5000))).toBe(js); // chained across a block
        const dst = new Uint8Array(part.length);
        expect(copyWithCrc32c(dst, part, 0)).toBe(js);
        expect(Buffer.compare(dst, part)).toBe(0);
      }
    }
    const flipped = data.slice();
    flipped[12_288 + 4096 + 3]! ^= 0x10; // a bit in the second lane of the first block
    expect(crc32c(0, flipped)).not.toBe(crc32cJs(0, data));
  });

  it("the folded path (VPCLMULQDQ, 256-byte steps, buffers from 512 bytes) agrees with the JavaScript table", () => {
    // Runs the folded code where the CPU has it (kvx_crc32c_hardware() = 2, "native-vpclmulqdq"), else the same
    // checks cover the crc32-instruction path.
    const data = randomFillSync(new Uint8Array(3 * 65_536 + 300));
    const lengths = [511, 512, 513, 767, 768, 1023, 1024, 1279, 4099, 65_536, 65_536 + 255, 3 * 65_536 + 300 - 13];
    for (const n of lengths) {
      for (const from of [0, 3, 13]) {
        const part = data.subarray(from, Math.min(data.length, from + n));
        const js = crc32cJs(0, part);
        expect(crc32c(0, part), `n=${n} from=${from}`).toBe(js);
        const seed = crc32cJs(0, data.subarray(0, 77)); // a CRC continued from earlier bytes enters the first lane
        expect(crc32c(seed, part)).toBe(crc32cJs(seed, part));
        const dst = new Uint8Array(part.length + 2);
        expect(copyWithCrc32c(dst.subarray(1, 1 + part.length), part, seed)).toBe(crc32cJs(seed, part));
        expect(Buffer.compare(dst.subarray(1, 1 + part.length), part)).toBe(0);
        expect([dst[0], dst[1 + part.length]]).toEqual([0, 0]);
      }
    }
    for (const at of [0, 3, 255, 256, 4000, 65_535]) {
      const flipped = data.slice(0, 65_536);
      flipped[at]! ^= 0x01; // a bit in the first, a middle and the last lanes
      expect(crc32c(0, flipped)).not.toBe(crc32cJs(0, data.subarray(0, 65_536)));
    }
  });

  it("detects a single flipped bit", () => {
    const data = randomFillSync(new Uint8Array(4096));
    const before = crc32c(0, data);
    data[2000]! ^= 0x04;
    expect(crc32c(0, data)).not.toBe(before);
  });
});
