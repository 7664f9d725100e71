import { describe, expect, it } from "vitest";
import { arrivalTimes, InvalidOptionError } from "../src/index.js";

describe("arrivals", () => {
  it("poisson: mean rate within 5% over 20000 arrivals with a fixed seed, exponential gaps", () => {
    const t = arrivalTimes({ rate: 4, count: 20_000, process: "poisson", seed: 42 });
    expect(t[0]).toBe(0);
    const gaps = t.slice(1).map((v, i) => v - t[i]);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    expect(1 / mean).toBeGreaterThan(4 * 0.95);
    expect(1 / mean).toBeLessThan(4 * 1.05);
    // Exponential: coefficient of variation ~1, P(gap > mean) = e^-1 ~ 0.368.
    const sd = Math.sqrt(gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / gaps.length);
    expect(sd / mean).toBeGreaterThan(0.9);
    expect(sd / mean).toBeLessThan(1.1);
    const above = gaps.filter((g) => g > mean).length / gaps.length;
    expect(above).toBeGreaterThan(0.34);
    expect(above).toBeLessThan(0.4);
    expect(gaps.every((g) => g >= 0)).toBe(true);
  });

  it("poisson: same seed gives the same schedule, another seed another", () => {
    const a = arrivalTimes({ rate: 2, count: 50, seed: 7 });
    expect(arrivalTimes({ rate: 2, count: 50, seed: 7 })).toEqual(a);
    expect(arrivalTimes({ rate: 2, count: 50, seed: 8 })).not.toEqual(a);
  });

  it("fixed rate: evenly spaced at 1/rate", () => {
    const t = arrivalTimes({ rate: 8, count: 5, process: "fixed" });
    expect(t).toEqual([0, 0.125, 0.25, 0.375, 0.5]);
  });

  it("rejects a bad rate, count or process with InvalidOptionError", () => {
    expect(() => arrivalTimes({ rate: 0, count: 3 })).toThrow(InvalidOptionError);
    expect(() => arrivalTimes({ rate: -1, count: 3 })).toThrow(/positive/);
    expect(() => arrivalTimes({ rate: NaN, count: 3 })).toThrow(InvalidOptionError);
    expect(() => arrivalTimes({ rate: 1, count: 1.5 })).toThrow(/count/);
    expect(() => arrivalTimes({ rate: 1, count: 3, process: "bursty" as never })).toThrow(/unknown arrival/);
  });
});
